"""Which Dagster instance the command line records runs in: ``DAGSTER_HOME`` when set
(a deployment), else the demo's under ``$LIP_HOME/dagster`` once it exists, so that
``lip run`` and ``lip status`` see the same runs as the UI."""

from __future__ import annotations

import os

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from lip_dagster.config import Settings


def open_instance(settings: Settings) -> tuple[dg.DagsterInstance, str]:
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get(), os.environ["DAGSTER_HOME"]
    demo_home = settings.home / "dagster"
    if (demo_home / "dagster.yaml").exists():
        return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(demo_home))), str(demo_home)
    return dg.DagsterInstance.ephemeral(), "none (set DAGSTER_HOME)"
