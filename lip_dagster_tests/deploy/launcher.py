"""A run launcher for the PostgreSQL tests: executes a launched run in this process,
steps included, before ``launch_run`` returns.

Production launches each run as an ECS task or a Kubernetes job (``deploy/``; the ECS
launcher itself is tested against the AWS API in ``test_ecs_launcher.py``). What these
tests check is what the instance stores, and where: the same run, events,
materializations and checks reach PostgreSQL whichever process writes them, so the
run executes here, without the seconds each step subprocess would cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._core.execution.api import execute_run
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._serdes import ConfigurableClass
from dagster._serdes.config_class import ConfigurableClassData
from dagster._utils.hosted_user_process import recon_job_from_origin

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}

CONFIG = {
    "module": "lip_dagster_tests.deploy.launcher",
    "class": "InProcessRunLauncher",
}


class InProcessRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> InProcessRunLauncher:
        return cls(inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        job = recon_job_from_origin(context.job_code_origin)  # type: ignore[arg-type]
        run = context.dagster_run
        run = run._replace(run_config={**run.run_config, **IN_PROCESS})
        execute_run(job, run, self._instance)

    def terminate(self, run_id: str) -> bool:
        return False
