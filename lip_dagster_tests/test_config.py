"""Configuration is read once; a bad value stops the load and names the variable."""

from __future__ import annotations

import pytest

from lip_dagster.config import Settings
from lip_dagster.errors import ConfigError
from lip_dagster.resources import AwsBackend, EmbeddedBackend, backend_from_settings


def test_defaults_are_the_embedded_backend(tmp_path) -> None:
    s = Settings.from_env({"LIP_HOME": str(tmp_path)})
    assert s.backend == "embedded" and s.lake_dir == tmp_path / "lake"
    assert s.max_object_bytes == 5_000_000 and s.max_object_events == 100_000
    assert isinstance(backend_from_settings(s), EmbeddedBackend)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"LIP_BACKEND": "azure"}, "LIP_BACKEND"),
        ({"LIP_MAX_OBJECT_BYTES": "5MB"}, "LIP_MAX_OBJECT_BYTES"),
        ({"LIP_MAX_OBJECT_EVENTS": "0"}, "LIP_MAX_OBJECT_EVENTS"),
        ({"LIP_DEDUPE_TTL_DAYS": "-1"}, "LIP_DEDUPE_TTL_DAYS"),
        ({"LIP_RUN_LOG_DAYS": "0"}, "LIP_RUN_LOG_DAYS"),
        ({"LIP_BACKEND": "aws", "LIP_AWS_REGION": "eu-west-1"}, "LIP_S3_BUCKET"),
        ({"LIP_BACKEND": "aws", "LIP_S3_BUCKET": "b"}, "LIP_AWS_REGION"),
        (
            {"LIP_BACKEND": "aws", "LIP_AWS_REGION": "x", "LIP_S3_BUCKET": "b-{bucket}"},
            "LIP_S3_BUCKET",
        ),
        # templates that can never make a bucket S3 accepts, or render something else
        *(
            (
                {"LIP_BACKEND": "aws", "LIP_AWS_REGION": "x", "LIP_S3_BUCKET": bucket},
                "LIP_S3_BUCKET",
            )
            for bucket in (
                "s3://acme-lip-{source}",
                "Acme_LIP_{source}",
                "acme-lip-{source.upper}",
                "acme-lip-{source!r}",
                "acme-lip-{source:>9}",
            )
        ),
        (
            {
                "LIP_BACKEND": "aws",
                "LIP_AWS_REGION": "x",
                "LIP_S3_BUCKET": "acme-{source}",
                "LIP_AWS_RESOURCE_PREFIX": "lip/prod/",
            },
            "LIP_AWS_RESOURCE_PREFIX",
        ),
        # the deployed sensors may read notifier secrets under alerts/ and nowhere else
        *(
            ({var: name}, f"{var}.*'alerts/'")
            for var in (
                "LIP_ALERT_WEBHOOK_SECRET",
                "LIP_ALERT_SLACK_SECRET",
                "LIP_ALERT_GITHUB_TOKEN_SECRET",
            )
            for name in ("slack-webhook-url", "okta/api-token", "alerts", "alerts/", "/alerts/x")
        ),
        ({"LIP_SAM_ROLE_ARN": "sam-reader"}, "LIP_SAM_ROLE_ARN"),
        ({"LIP_SAM_ROLE_ARN": "arn:aws:iam::123456789012:user/sam"}, "LIP_SAM_ROLE_ARN"),
        ({"LIP_SAM_QUEUE_ARN": "https://sqs.us-east-1.amazonaws.com/1/q"}, "LIP_SAM_QUEUE_ARN"),
        # one bucket or one key for every source: DESIGN gives each source its own
        (
            {"LIP_BACKEND": "aws", "LIP_AWS_REGION": "x", "LIP_S3_BUCKET": "acme-lake"},
            "LIP_S3_BUCKET",
        ),
        (
            {
                "LIP_BACKEND": "aws",
                "LIP_AWS_REGION": "x",
                "LIP_S3_BUCKET": "acme-{source}",
                "LIP_KMS_KEY": "alias/lip-shared",
            },
            "LIP_KMS_KEY",
        ),
        (
            {
                "LIP_BACKEND": "aws",
                "LIP_AWS_REGION": "x",
                "LIP_S3_BUCKET": "b",
                "LIP_AWS_ENDPOINT_URL": "localhost:5000",
            },
            "LIP_AWS_ENDPOINT_URL",
        ),
        (
            {
                "LIP_BACKEND": "aws",
                "LIP_AWS_REGION": "x",
                "LIP_S3_BUCKET": "b",
                "LIP_S3_LAKE_PREFIX": "lake/",
                "LIP_S3_QUARANTINE_PREFIX": "lake/quarantine/",
            },
            "LIP_S3_QUARANTINE_PREFIX",
        ),
        *(
            (
                {
                    "LIP_BACKEND": "aws",
                    "LIP_AWS_REGION": "x",
                    "LIP_S3_BUCKET": "b",
                    "LIP_S3_LAKE_PREFIX": lake,
                    "LIP_S3_QUARANTINE_PREFIX": quarantine,
                },
                name,
            )
            for lake, quarantine, name in [
                # the bucket root as the lake: quarantine would be inside it
                ("", "quarantine/", "LIP_S3_LAKE_PREFIX"),
                ("", "", "LIP_S3_LAKE_PREFIX"),
                # keys would read lakesource=okta/...: outside the layout
                ("lake", "quarantine/", "LIP_S3_LAKE_PREFIX"),
                ("lake/", "", "LIP_S3_QUARANTINE_PREFIX"),
                # the lake inside quarantine is no better
                ("quarantine/lake/", "quarantine/", "LIP_S3_QUARANTINE_PREFIX"),
            ]
        ),
    ],
)
def test_bad_settings_fail_at_load_naming_the_variable(env: dict, names: str, tmp_path) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env({"LIP_HOME": str(tmp_path), **env})


def test_aws_backend_is_chosen_by_one_variable(tmp_path) -> None:
    s = Settings.from_env(
        {
            "LIP_HOME": str(tmp_path),
            "LIP_BACKEND": "aws",
            "LIP_AWS_REGION": "eu-west-1",
            "LIP_S3_BUCKET": "acme-lip-{source}",
        }
    )
    b = backend_from_settings(s)
    assert isinstance(b, AwsBackend)
    assert s.aws is not None and s.aws.bucket("okta") == "acme-lip-okta"
    assert s.aws.kms_key("okta") == "alias/lip-okta"
    assert "acme-lip-{source}" in repr(b)


def test_well_formed_sam_arns_and_templates_load(tmp_path) -> None:
    s = Settings.from_env(
        {
            "LIP_HOME": str(tmp_path),
            "LIP_BACKEND": "aws",
            "LIP_AWS_REGION": "us-east-1",
            "LIP_S3_BUCKET": "acme.lip-{source}",
            "LIP_AWS_RESOURCE_PREFIX": "acme_lip-",
            "LIP_SAM_ROLE_ARN": "arn:aws:iam::123456789012:role/sam-reader",
            "LIP_SAM_QUEUE_ARN": "arn:aws:sqs:us-east-1:123456789012:sam-intake",
        }
    )
    assert s.aws is not None and s.aws.bucket("google_workspace") == "acme.lip-google-workspace"
    assert s.sam.role_arn == "arn:aws:iam::123456789012:role/sam-reader"


ROLE = "arn:aws:iam::123456789012:role/lip-run"


@pytest.mark.parametrize(
    "value",
    [
        ROLE,  # which process runs as it?
        f"run={ROLE.replace(':role/', ':user/')}",
        "run=lip-run",
        "run=",
        f"daemon={ROLE}",
        f"provision={ROLE}",
        f"run={ROLE},run=arn:aws:iam::123456789012:role/other",
        f"run={ROLE},sensors=arn:aws:iam::999999999999:role/lip-code",
    ],
)
def test_a_malformed_role_list_fails_at_load_naming_the_variable(value: str, tmp_path) -> None:
    with pytest.raises(ConfigError, match="LIP_ROLE_ARNS"):
        Settings.from_env({"LIP_HOME": str(tmp_path), "LIP_ROLE_ARNS": value})


def test_the_role_list_names_each_process_role(tmp_path) -> None:
    code = "arn:aws:iam::123456789012:role/lip-code"
    s = Settings.from_env(
        {
            "LIP_HOME": str(tmp_path),
            "LIP_ROLE_ARNS": f" run={ROLE}, sensors={code},receiver={ROLE} ",
        }
    )
    assert s.sam.lip_roles == (("run", ROLE), ("sensors", code), ("receiver", ROLE))
    assert Settings.from_env({"LIP_HOME": str(tmp_path)}).sam.lip_roles == ()
