import dagster as dg

# One partition per vector file in the bronze container, keyed by its blob key.
VECTOR_PARTITIONS = "vector_sources"
vector_partitions = dg.DynamicPartitionsDefinition(name=VECTOR_PARTITIONS)
