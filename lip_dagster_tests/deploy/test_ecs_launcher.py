"""``deploy/ecs/dagster.yaml`` exactly as shipped: PostgreSQL storage and the ECS run
launcher, against PostgreSQL and the AWS API (the moto server). A scheduled run
leaves the queue as one Fargate task of the run task definition, in the daemon's own
subnets and security groups, and the database password never travels with it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from lip_dagster.simulator import VendorSimulator

from .conftest import Daemon, code_location, repository
from .postgres import PostgresServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ecs"
REGION = "us-east-1"


class TaskMetadataEndpoint:
    """The ECS agent's task metadata endpoint (v4) as a Fargate task sees it: the
    launcher asks it which task and cluster it runs in."""

    def __init__(self, task_arn: str, cluster_arn: str) -> None:
        task = json.loads((FIXTURES / "task_metadata_v4.json").read_text())
        task["TaskARN"], task["Cluster"] = task_arn, cluster_arn
        container = json.loads((FIXTURES / "container_metadata_v4.json").read_text())
        bodies = {"/v4/meta": container, "/v4/meta/task": task}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = bodies.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/v4/meta"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def task_definition(ecs: Any, family: str, container: str) -> str:
    """What the template registers (deploy/ecs/lip-dagster.cfn.yaml), reduced to what
    the launcher reads: Fargate, awsvpc, the container's name and image."""
    return ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="512",
        memory="1024",
        containerDefinitions=[
            {
                "name": container,
                "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/lip:2026.11.27",
                "essential": True,
                "cpu": 512,
                "memory": 1024,
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]


@pytest.fixture
def ecs_world(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A VPC, the cluster, the two task definitions and the daemon's running task."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)  # the launcher's boto3 clients
    session = boto3.session.Session(region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=aws_env)
    ecs = session.client("ecs", endpoint_url=aws_env)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # private DNS names in the VPC: Cloud Map and the interface endpoints need them
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName=f"lip-dagster-{vpc}", Description="LIP Dagster tasks", VpcId=vpc
    )["GroupId"]
    cluster = ecs.create_cluster(clusterName="lip")["cluster"]["clusterArn"]
    daemon_td = task_definition(ecs, "lip-daemon", "daemon")
    run_td = task_definition(ecs, "lip-run", "run")
    (daemon_task,) = ecs.run_task(
        cluster="lip",
        taskDefinition=daemon_td,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}
        },
    )["tasks"]
    metadata = TaskMetadataEndpoint(daemon_task["taskArn"], cluster)
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", metadata.uri)
    monkeypatch.setenv("LIP_RUN_TASK_DEFINITION", "lip-run")
    yield {
        "cluster": cluster,
        "subnet": subnet,
        "security_group": group,
        "run_task_definition": run_td,
        "daemon_task": daemon_task["taskArn"],
    }
    metadata.close()


def test_a_scheduled_run_is_launched_as_one_fargate_task_of_the_run_definition(
    demo_world: VendorSimulator,
    ecs_world: dict[str, str],
    make_instance,
    postgres: PostgresServer,
    pg_db: str,
    aws_env: str,
) -> None:
    instance = make_instance()  # the shipped file, launcher included
    assert type(instance.run_launcher).__name__ == "EcsRunLauncher"
    now = datetime.now(UTC)
    tick = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    with code_location(instance) as context:
        daemon = Daemon(context)
        with dg._core.test_utils.freeze_time(tick - timedelta(seconds=30)):
            instance.start_schedule(repository(context).get_schedule("okta_every_5m"))
        daemon.schedules(tick + timedelta(seconds=10))
        daemon.queue()

    (run,) = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.STARTING  # handed to ECS; the task runs it
    assert run.tags["ecs/cluster"] == ecs_world["cluster"]
    ecs = boto3.session.Session(region_name=REGION).client("ecs", endpoint_url=aws_env)
    (task,) = ecs.describe_tasks(cluster="lip", tasks=[run.tags["ecs/task_arn"]], include=["TAGS"])[
        "tasks"
    ]
    assert task["taskDefinitionArn"] == ecs_world["run_task_definition"]
    assert task["launchType"] == "FARGATE"
    (override,) = task["overrides"]["containerOverrides"]
    assert override["name"] == "run"
    assert override["command"][:3] == ["dagster", "api", "execute_run"]
    assert run.run_id in override["command"][3]
    # the daemon's subnet and security group (use_current_ecs_task_config)
    (attachment,) = task["attachments"]
    details = {d["name"]: d["value"] for d in attachment["details"]}
    assert details["subnetId"] == ecs_world["subnet"]
    eni = boto3.session.Session(region_name=REGION).client("ec2", endpoint_url=aws_env)
    (interface,) = eni.describe_network_interfaces(
        NetworkInterfaceIds=[details["networkInterfaceId"]]
    )["NetworkInterfaces"]
    assert [g["GroupId"] for g in interface["Groups"]] == [ecs_world["security_group"]]
    tags = {t["key"]: t["value"] for t in task.get("tags", [])}
    assert tags["lip/source"] == "okta" and tags["dagster/run_id"] == run.run_id
    # the instance reference in the command names the password's variable, not its value
    assert postgres.password not in json.dumps(task)
    assert "DAGSTER_PG_PASSWORD" in override["command"][3]
    rows = postgres.query(pg_db, "SELECT status FROM runs WHERE run_id = %s", [run.run_id])
    assert rows == [("STARTING",)]
