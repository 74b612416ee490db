from pathlib import Path

import dagster as dg

# Imported first: it silences the beta warnings of the APIs the platform chose on purpose,
# the automation sensor's among them.
import geo_platform.defs  # noqa: F401

# Declared here so that it runs from the first `dagster dev`: it keeps
# collection_summary current as items land.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(sensors=[automation_sensor]),
    )
