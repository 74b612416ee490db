"""dagster.yaml templates of the two profiles; ``geo_platform.instance`` writes them."""
