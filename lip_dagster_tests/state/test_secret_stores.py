"""Secret stores: the environment/file store and AWS Secrets Manager on the local moto
server. Values must never show up in a repr, a str or an error message."""

from __future__ import annotations

import base64
import json
import logging
import traceback
import uuid
from pathlib import Path

import boto3
import pytest

from lip_dagster.errors import ConfigError, SecretNotFound, StateError
from lip_dagster.state.aws import AwsSecretsManagerStore
from lip_dagster.state.local_secrets import EnvFileSecretStore, secret_env_var

VALUE = "s3cr3t-VALUE-never-print-me"
OTHER = "an0ther-SECRET-never-print-me"


def assert_hidden(*texts: object) -> None:
    for text in texts:
        assert VALUE not in str(text) and OTHER not in str(text)
        assert VALUE not in repr(text) and OTHER not in repr(text)


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"okta/api-token": VALUE, "slack/signing": OTHER}))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("name", "var"),
    [
        ("okta/api-token", "LIP_SECRET_OKTA_API_TOKEN"),
        ("github.app_key", "LIP_SECRET_GITHUB_APP_KEY"),
        ("1password/Events API", "LIP_SECRET_1PASSWORD_EVENTS_API"),
    ],
)
def test_secret_names_map_to_environment_variables(name: str, var: str) -> None:
    assert secret_env_var(name) == var
    store = EnvFileSecretStore(environ={var: VALUE})
    assert store.get(name).reveal() == VALUE


def test_the_environment_wins_over_the_file(secrets_file: Path) -> None:
    store = EnvFileSecretStore(secrets_file, environ={"LIP_SECRET_OKTA_API_TOKEN": "from-env"})
    assert store.get("okta/api-token").reveal() == "from-env"


def test_the_file_is_the_fallback(secrets_file: Path) -> None:
    store = EnvFileSecretStore(secrets_file, environ={"LIP_SECRET_OKTA_API_TOKEN": ""})
    assert store.get("okta/api-token").reveal() == VALUE
    assert store.get("slack/signing").reveal() == OTHER


def test_the_real_environment_is_read_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LIP_SECRET_JAMF_CLIENT_SECRET", VALUE)
    store = EnvFileSecretStore(tmp_path / "absent.json")
    assert store.get("jamf/client-secret").reveal() == VALUE


def test_a_missing_secret_names_both_places_and_no_value(secrets_file: Path) -> None:
    store = EnvFileSecretStore(secrets_file, environ={"LIP_SECRET_SLACK_SIGNING": VALUE})
    with pytest.raises(SecretNotFound) as caught:
        store.get("github/token")
    message = str(caught.value)
    assert "github/token" in message
    assert "LIP_SECRET_GITHUB_TOKEN" in message
    assert str(secrets_file) in message
    assert_hidden(message, caught.value)


def test_an_empty_value_counts_as_unset(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"okta/api-token": ""}))
    store = EnvFileSecretStore(path, environ={"LIP_SECRET_OKTA_API_TOKEN": ""})
    with pytest.raises(SecretNotFound):
        store.get("okta/api-token")


def test_a_missing_file_is_fine(tmp_path: Path) -> None:
    store = EnvFileSecretStore(tmp_path / "nope.json", environ={})
    with pytest.raises(SecretNotFound):
        store.get("okta/api-token")
    with pytest.raises(SecretNotFound, match="no secrets file configured"):
        EnvFileSecretStore(None, environ={}).get("okta/api-token")


@pytest.mark.parametrize(
    "content",
    [
        '{"okta/api-token": "' + VALUE + '", oops}',
        '["' + VALUE + '"]',
        '{"okta/api-token": ["' + VALUE + '"]}',
    ],
)
def test_a_malformed_file_is_a_config_error_that_shows_no_content(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(content)
    store = EnvFileSecretStore(path, environ={})
    with pytest.raises(ConfigError) as caught:
        store.get("okta/api-token")
    assert str(path) in str(caught.value)
    assert_hidden(caught.value)
    # What a log handler would print, chained exceptions included.
    assert_hidden("".join(traceback.format_exception(caught.value)))


def test_values_are_cached_until_the_ttl_or_invalidate() -> None:
    env = {"LIP_SECRET_OKTA_API_TOKEN": "v1"}
    store = EnvFileSecretStore(environ=env, ttl_seconds=300)
    assert store.get("okta/api-token").reveal() == "v1"
    env["LIP_SECRET_OKTA_API_TOKEN"] = "v2"  # rotated
    assert store.get("okta/api-token").reveal() == "v1"
    store.invalidate("okta/api-token")
    assert store.get("okta/api-token").reveal() == "v2"
    env["LIP_SECRET_OKTA_API_TOKEN"] = "v3"
    store.invalidate()
    assert store.get("okta/api-token").reveal() == "v3"

    uncached = EnvFileSecretStore(environ=env, ttl_seconds=0)
    assert uncached.get("okta/api-token").reveal() == "v3"
    env["LIP_SECRET_OKTA_API_TOKEN"] = "v4"
    assert uncached.get("okta/api-token").reveal() == "v4"


def test_no_value_in_any_repr(secrets_file: Path) -> None:
    store = EnvFileSecretStore(secrets_file, environ={"LIP_SECRET_SLACK_SIGNING": OTHER})
    a, b = store.get("okta/api-token"), store.get("slack/signing")
    assert_hidden(store, a, b, f"{a}", f"{b!r}", vars(store), [a, b])


# ------------------------------------------------------------------ Secrets Manager


@pytest.fixture
def aws_store(boto_session: boto3.session.Session, moto_endpoint: str) -> AwsSecretsManagerStore:
    return AwsSecretsManagerStore(session=boto_session, endpoint_url=moto_endpoint, prefix="lip/")


def put_secret(session: boto3.session.Session, endpoint: str, name: str, value: str) -> None:
    client = session.client("secretsmanager", endpoint_url=endpoint)
    try:
        client.create_secret(Name=name, SecretString=value)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=value)


def test_secrets_manager_reads_prefixed_names(
    aws_store: AwsSecretsManagerStore, boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    name = f"okta-{uuid.uuid4().hex[:8]}/api-token"
    put_secret(boto_session, moto_endpoint, f"lip/{name}", VALUE)
    secret = aws_store.get(name)
    assert secret.reveal() == VALUE
    assert_hidden(aws_store, secret, vars(aws_store))


def test_secrets_manager_rotation_is_seen_after_invalidate(
    aws_store: AwsSecretsManagerStore, boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    name = f"slack-{uuid.uuid4().hex[:8]}/token"
    put_secret(boto_session, moto_endpoint, f"lip/{name}", "old")
    assert aws_store.get(name).reveal() == "old"
    put_secret(boto_session, moto_endpoint, f"lip/{name}", "new")
    assert aws_store.get(name).reveal() == "old"
    aws_store.invalidate(name)
    assert aws_store.get(name).reveal() == "new"


@pytest.mark.parametrize("kind", ["SecretString", "SecretBinary"])
def test_secrets_manager_values_never_reach_a_debug_log(
    aws_store: AwsSecretsManagerStore,
    boto_session: boto3.session.Session,
    moto_endpoint: str,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    # `lip -v` logs at DEBUG, where botocore prints every response body it parses.
    name = f"okta-{uuid.uuid4().hex[:8]}/api-token"
    client = boto_session.client("secretsmanager", endpoint_url=moto_endpoint)
    value: object = VALUE if kind == "SecretString" else VALUE.encode()
    client.create_secret(Name=f"lip/{name}", **{kind: value})
    with caplog.at_level(logging.DEBUG):
        assert aws_store.get(name).reveal() == VALUE
    bodies = [r for r in caplog.records if r.getMessage().startswith("Response body")]
    assert bodies, "botocore logged no response body: the test no longer shows anything"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert VALUE not in logged
    assert base64.b64encode(VALUE.encode()).decode() not in logged
    # other responses are still logged as they were
    assert any("Response headers" in r.getMessage() for r in caplog.records)


def test_secrets_manager_missing_secret(aws_store: AwsSecretsManagerStore) -> None:
    with pytest.raises(SecretNotFound) as caught:
        aws_store.get("nobody/here")
    assert "nobody/here" in str(caught.value) and "lip/nobody/here" in str(caught.value)


def test_a_placeholder_without_a_value_says_to_set_it(
    aws_store: AwsSecretsManagerStore, boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    """`lip provision` creates each secret as a placeholder without a value; a run
    before it is set must say so, not that a secret which exists is not found."""
    name = f"okta-{uuid.uuid4().hex[:8]}/api-token"
    client = boto_session.client("secretsmanager", endpoint_url=moto_endpoint)
    client.create_secret(Name=f"lip/{name}", Description="placeholder until set")
    with pytest.raises(SecretNotFound) as caught:
        aws_store.get(name)
    message = str(caught.value)
    assert "no value yet" in message and "not found" not in message
    assert f"put-secret-value --secret-id lip/{name}" in message


def test_secrets_manager_unreachable_is_a_state_error(aws_env: str) -> None:
    # Nothing listens on port 9 of localhost: the bounded retries give up quickly.
    store = AwsSecretsManagerStore(
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        connect_timeout=0.5,
        read_timeout=0.5,
        max_attempts=1,
    )
    with pytest.raises(StateError, match="okta/api-token"):
        store.get("okta/api-token")


def test_names_differing_only_in_punctuation_share_one_variable(secrets_file: Path) -> None:
    # Documented consequence of the naming rule: both names read LIP_SECRET_OKTA_API_TOKEN,
    # while the file still tells them apart.
    store = EnvFileSecretStore(secrets_file, environ={"LIP_SECRET_OKTA_API_TOKEN": "env"})
    assert store.get("okta.api.token").reveal() == "env"
    assert store.get("okta/api-token").reveal() == "env"
    bare = EnvFileSecretStore(secrets_file, environ={"LIP_HOME": "/x"})
    assert bare.get("okta/api-token").reveal() == VALUE
    with pytest.raises(SecretNotFound):
        bare.get("okta.api.token")
