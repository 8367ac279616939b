"""The Dagster entry point: every source component under ``defs/``, the alert sensor,
the state maintenance job, and the backend chosen once from the environment."""

from pathlib import Path

import dagster as dg

from lip_dagster.alerts.sensor import build_alert_sensor
from lip_dagster.maintenance import build_maintenance_defs
from lip_dagster.resources import backend_from_env


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        build_maintenance_defs(),
        dg.Definitions(resources={"lip": backend_from_env()}, sensors=[build_alert_sensor()]),
    )
