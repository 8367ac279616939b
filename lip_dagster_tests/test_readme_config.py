"""The README's configuration table is what users set LIP up from: every variable
LIP reads must be in it, and the defaults it quotes must be the code's."""

import re
from pathlib import Path

import pytest

from lip_dagster.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# names built at run time, not variables: the secret-variable prefix and constants
NOT_VARIABLES = {"LIP_SECRET_", "LIP_SECRET_OKTA_API_TOKEN", "LIP_KEYS", "LIP_PREFIX"}


def _table_rows() -> dict[str, str]:
    """README table rows by each variable they name (``_PREFIX`` shorthands expanded)."""
    rows: dict[str, str] = {}
    for line in README.splitlines():
        if not line.startswith("| `LIP_"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`(_?[A-Z][A-Z0-9_]*)`", cells[0])
        if not names:  # `LIP_SECRET_<NAME>`: a pattern, not a variable
            continue
        stem = names[0].rsplit("_", 1)[0]
        for n in names:
            rows[n if not n.startswith("_") else stem + n] = cells[1]
    return rows


def _variables_read() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "lip_dagster").rglob("*"):
        if path.suffix in (".py", ".yaml") and "simulator" not in path.parts:
            found |= set(re.findall(r"\bLIP_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    return found - NOT_VARIABLES


def test_every_variable_lip_reads_is_in_the_readme_table() -> None:
    missing = sorted(_variables_read() - set(_table_rows()) - {"LIP_SECRET_<NAME>"})
    assert missing == [], f"not in README's configuration table: {missing}"


@pytest.mark.parametrize(
    ("variable", "attribute"),
    [
        ("LIP_MAX_OBJECT_BYTES", "max_object_bytes"),
        ("LIP_MAX_OBJECT_EVENTS", "max_object_events"),
        ("LIP_DEDUPE_TTL_DAYS", "dedupe_ttl_days"),
        ("LIP_RUN_LOG_DAYS", "run_log_days"),
        ("LIP_BUFFER_MAX_RECEIVES", "buffer_max_receives"),
        ("LIP_SECRET_TTL_SECONDS", "secret_ttl_seconds"),
    ],
)
def test_readme_numeric_defaults_are_the_code_defaults(variable: str, attribute: str) -> None:
    quoted = _table_rows()[variable].strip("`")
    assert int(quoted) == getattr(Settings.from_env({}), attribute)


def test_readme_aws_and_alert_defaults_are_the_code_defaults() -> None:
    rows = _table_rows()
    s = Settings.from_env(
        {"LIP_BACKEND": "aws", "LIP_AWS_REGION": "eu-west-1", "LIP_S3_BUCKET": "acme-lip-{source}"}
    )
    assert s.aws is not None
    assert rows["LIP_KMS_KEY"] == f"`{s.aws.kms_key_template}`"
    assert rows["LIP_S3_LAKE_PREFIX"] == f"`{s.aws.lake_prefix}`"
    assert rows["LIP_S3_QUARANTINE_PREFIX"] == f"`{s.aws.quarantine_prefix}`"
    assert rows["LIP_AWS_RESOURCE_PREFIX"] == f"`{s.aws.resource_prefix}`"
    assert rows["LIP_SECRETS_PREFIX"] == f"`{s.aws.secrets_prefix}`"
    assert rows["LIP_ALERT_WEBHOOK_SECRET"] == f"`{s.alerts.webhook_secret}`"
    assert rows["LIP_ALERT_SLACK_SECRET"] == f"`{s.alerts.slack_secret}`"
    assert rows["LIP_ALERT_GITHUB_TOKEN_SECRET"] == f"`{s.alerts.github_token_secret}`"


def test_the_source_variables_read_at_load_are_the_ones_the_readme_says() -> None:
    """A source variable the shipped YAML reads through ``{{ env.NAME }}`` is read when
    the definitions load: a bad value stops every source and the alert sensor, not one
    source's runs as the README says of the others. The README must name each one."""
    templated: set[str] = set()
    for path in (ROOT / "lip_dagster" / "defs").rglob("*.yaml"):
        templated |= set(re.findall(r"env\.(LIP_[A-Z0-9_]+)", path.read_text(encoding="utf-8")))
    intro = README.split("## Configuration", 1)[1].split("| variable |", 1)[0]
    said = set(re.findall(r"`(LIP_[A-Z0-9_]+)`", intro.split("read at load", 1)[-1]))
    assert templated and templated <= said, f"not said to be read at load: {templated - said}"
