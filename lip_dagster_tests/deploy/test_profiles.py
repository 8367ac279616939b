"""The deployment files agree with each other and with the code: the CloudFormation
template passes cfn-lint and launches runs from the task definition and container
the instance configuration names; every profile keeps one run per source; the image
copies files that exist and serves the code location the workspace points at."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import decode_str

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TEMPLATE = DEPLOY / "ecs" / "lip-dagster.cfn.yaml"
ONE_RUN_PER_SOURCE = {"key": "lip/source", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}


def template() -> Any:
    tpl, errors = decode_str(TEMPLATE.read_text())
    assert not errors, errors
    return tpl


def cfn_lint(text: str) -> list[str]:
    # every rule; one region keeps it to a second (the template is region-agnostic)
    return [str(m) for m in lint(text, config=ManualArgs(regions=["us-east-1"]))]


def test_the_cloudformation_template_passes_cfn_lint() -> None:
    text = TEMPLATE.read_text()
    assert cfn_lint(text) == []
    # the linter is live: a Fargate task with a CPU size Fargate does not offer fails
    assert any("E3047" in m for m in cfn_lint(text.replace('Cpu: "512"', 'Cpu: "513"', 1)))


def test_runs_launch_from_the_task_definition_and_container_the_instance_names() -> None:
    profile = yaml.safe_load((DEPLOY / "ecs" / "dagster.yaml").read_text())
    launcher = profile["run_launcher"]
    assert launcher["class"] == "EcsRunLauncher"
    env_name = launcher["config"]["task_definition"]["env"]
    resources = template()["Resources"]
    run = resources["RunTaskDefinition"]["Properties"]
    assert [c["Name"] for c in run["ContainerDefinitions"]] == [
        launcher["config"]["container_name"]
    ]
    assert run["TaskRoleArn"] == {"Fn::GetAtt": ["RunTaskRole", "Arn"]}
    for name in ("CodeServerTaskDefinition", "DaemonTaskDefinition", "WebserverTaskDefinition"):
        (container,) = resources[name]["Properties"]["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        assert env[env_name] == run["Family"], name  # the family: its latest revision
        secrets = [s["Name"] for s in container["Secrets"]]
        assert secrets == ["DAGSTER_PG_PASSWORD"], name  # injected by ECS, never a value
    # the daemon may pass only the run roles, and run only the run task definition
    daemon = resources["DaemonTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    statements = {s["Sid"]: s for s in daemon["Statement"]}
    assert statements["PassOnlyTheRunRoles"]["Resource"] == [
        {"Fn::GetAtt": ["RunTaskRole", "Arn"]},
        {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
    ]
    assert statements["RunTheRunTaskDefinitionOnly"]["Resource"]["Fn::Sub"].endswith(
        "task-definition/${AWS::StackName}-run:*"
    )


def test_there_is_never_a_second_daemon_not_even_during_a_deployment() -> None:
    daemon = template()["Resources"]["DaemonService"]["Properties"]
    assert daemon["DesiredCount"] == 1
    assert daemon["DeploymentConfiguration"]["MaximumPercent"] == 100


def test_every_profile_keeps_one_run_per_source() -> None:
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    ecs = yaml.safe_load((DEPLOY / "ecs" / "dagster.yaml").read_text())
    k8s = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    assert ONE_RUN_PER_SOURCE in local["concurrency"]["runs"]["tag_concurrency_limits"]
    assert ONE_RUN_PER_SOURCE in ecs["concurrency"]["runs"]["tag_concurrency_limits"]
    assert ONE_RUN_PER_SOURCE in k8s["concurrency"]["runs"]["tagConcurrencyLimits"]
    assert ecs["concurrency"]["pools"]["default_limit"] == 1
    assert k8s["concurrency"]["pools"]["defaultLimit"] == 1
    # both production profiles store the instance in PostgreSQL through psycopg2
    assert ecs["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert k8s["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert (
        k8s["postgresql"]["enabled"] is False and k8s["generatePostgresqlPasswordSecret"] is False
    )


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping. PyYAML (and the daemon,
    and the Helm chart's renderer) silently keep the last one, so a second
    ``retention:`` block overrides the first without a word: what an operator
    reads first is not what runs."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            assert key not in seen, f"key {key!r} twice, line {key_node.start_mark.line + 1}"
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# CloudFormation's short forms (!Ref, !Sub, ...): any tag, read as its plain value
_StrictLoader.add_multi_constructor(
    "!",
    lambda loader, _tag, node: (
        loader.construct_scalar(node)
        if isinstance(node, yaml.ScalarNode)
        else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node)
    ),
)


def _yaml_files() -> list[Path]:
    return sorted(
        p
        for pattern in ("*.yaml", "*.yml")
        for p in REPO.rglob(pattern)
        if not {".venv", ".git", ".lip", "node_modules"} & set(p.relative_to(REPO).parts)
    )


def test_no_configuration_file_gives_a_key_twice() -> None:
    files = _yaml_files()
    assert DEPLOY / "ecs" / "dagster.yaml" in files and REPO / "dagster.yaml" in files
    for path in files:
        try:
            yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
        except AssertionError as err:
            raise AssertionError(f"{path.relative_to(REPO)}: {err}") from None
    # the check is live: a repeated section is refused
    try:
        yaml.load("retention: {a: 1}\nretention: {a: 2}\n", Loader=_StrictLoader)  # noqa: S506
    except AssertionError:
        pass
    else:
        raise AssertionError("a repeated key was accepted")


def _snake(values: Any) -> Any:
    """The Helm chart's camelCase keys as the instance file's snake_case ones."""
    if not isinstance(values, dict):
        return values
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): _snake(v) for k, v in values.items()}


def test_every_production_profile_deletes_old_ticks_at_the_same_ages() -> None:
    """Without a retention section the daemon keeps ticks for ever; the Helm chart
    renders it into the instance only when ``retention.enabled`` is true."""
    ecs = yaml.safe_load((DEPLOY / "ecs" / "dagster.yaml").read_text())
    k8s = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    chart = dict(k8s["retention"])
    assert chart.pop("enabled") is True
    assert _snake(chart) == ecs["retention"]


def test_the_image_copies_what_exists_and_serves_the_workspace_location() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.M):
        for source in sources.split():
            assert (REPO / source).exists(), source
            assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), (
                f"{source} is excluded from the build context by Dockerfile.dockerignore"
            )
    workspace = yaml.safe_load((DEPLOY / "ecs" / "workspace.yaml").read_text())
    (server,) = [entry["grpc_server"] for entry in workspace["load_from"]]
    code_stage = dockerfile.split("FROM runtime AS code\n", 1)[1].split("\nFROM ", 1)[0]
    code_cmd = re.search(r"^CMD (\[[^\]]*\])", code_stage, flags=re.M)
    assert code_cmd is not None
    command = yaml.safe_load(code_cmd.group(1).replace("\\\n", " "))
    assert command[command.index("-p") + 1] == str(server["port"])
    assert command[command.index("--location-name") + 1] == server["location_name"] == "lip"
    assert command[command.index("-m") + 1] == "lip_dagster.definitions"


def _grants(role: str) -> list[dict[str, Any]]:
    """The Allow statements of a role's inline policies, conditional ones included."""
    out = []
    for policy in template()["Resources"][role]["Properties"]["Policies"]:
        for stmt in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in stmt:
                stmt = stmt["Fn::If"][1]
            if isinstance(stmt, dict) and stmt.get("Effect") == "Allow":
                out.append(stmt)
    return out


def _allows(role: str, action: str, resource_part: str) -> bool:
    for stmt in _grants(role):
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        if action in actions and resource_part in str(stmt["Resource"]):
            return True
    return False


def test_the_sensors_role_can_do_what_s3_source_sensors_do() -> None:
    """Sensors run in the code server: an S3 source in listing mode reads and commits
    its cursor there, and quarantines bad notifications and given-up objects (an
    SSE-KMS put). Without these the source stops on AccessDenied."""
    role = "CodeServerTaskRole"
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"):
        assert _allows(role, action, "-cursor"), action
    assert _allows(role, "s3:PutObject", "${QuarantinePrefix}")
    assert _allows(role, "kms:GenerateDataKey", "*")
    # and vendor objects under the vendor's own key, where the deployment names it
    assert _allows("RunTaskRole", "kms:Decrypt", "VendorKmsKeyArns")


def test_the_receiver_can_be_held_to_the_webhook_secrets() -> None:
    (stmt,) = [s for s in _grants("ReceiverRole") if s["Sid"] == "WebhookSecrets"]
    assert stmt["Resource"]["Fn::If"][:2] == ["HasWebhookSecretArns", {"Ref": "WebhookSecretArns"}]
