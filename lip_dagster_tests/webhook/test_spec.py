"""The receiver reads the same YAML blocks Dagster loads, the same way, and refuses
blocks that cannot work, naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lip_dagster.components.webhook import WebhookSource
from lip_dagster.errors import ConfigError
from lip_dagster.webhook.spec import COMPONENT_TYPE, DEFS_DIR, load_specs


def write_block(root: Path, folder: str, attributes: dict) -> Path:
    path = root / folder / "defs.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"type": COMPONENT_TYPE, "attributes": attributes}))
    return path


def test_the_declared_webhook_sources() -> None:
    specs = load_specs()
    assert {"okta_hooks", "github", "jamf"} <= set(specs)
    assert specs["okta_hooks"].auth["type"] == "okta_event_hook"
    assert specs["github"].vendor == "github" and specs["jamf"].auth["type"] == "header_map"


def test_the_receiver_and_dagster_read_every_block_alike(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIP_TEST_HOOK_HEADER", "X-Okta-Key")
    monkeypatch.delenv("LIP_TEST_UNSET", raising=False)
    attrs = {
        "name": "templated",
        "vendor": "okta_event_hook",
        "auth": {
            "type": "okta_event_hook",
            "header": "{{ env.LIP_TEST_HOOK_HEADER }}",
            "secret": "{{ env.LIP_TEST_UNSET or 'okta-hooks/other' }}",
        },
        "description": "{{ env('LIP_TEST_UNSET', 'fallback text') }}",
    }
    write_block(tmp_path, "templated", attrs)
    for folder in ("okta_hooks", "github", "jamf"):
        doc = yaml.safe_load((DEFS_DIR / folder / "defs.yaml").read_text())
        write_block(tmp_path, folder, doc["attributes"])
    mine = load_specs(tmp_path)
    assert mine["templated"].auth == {
        "type": "okta_event_hook",
        "header": "X-Okta-Key",
        "secret": "okta-hooks/other",
    }
    for name, spec in mine.items():
        doc = yaml.safe_load((tmp_path / name / "defs.yaml").read_text())
        dagsters = WebhookSource.resolve_from_dict(doc["attributes"]).spec()
        assert dagsters == spec, name


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"name": "Bad Name"}, "source name"),
        ({"vendor": "pagerduty"}, "vendor must be one of"),
        ({"auth": {"type": "magic", "secret": "x"}}, "auth.type"),
        ({"auth": {"type": "github"}}, "auth.secret"),
        ({"start_date": "2026-01-01"}, "start_date"),
        ({"visibility_timeout_seconds": 30, "sensor_interval_seconds": 30}, "visibility"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_invalid_blocks_are_refused_naming_the_file(
    tmp_path: Path, change: dict, words: str
) -> None:
    attrs = {"name": "ok", "vendor": "github", "auth": {"type": "github", "secret": "s"}}
    path = write_block(tmp_path, "ok", {**attrs, **change})
    with pytest.raises(ConfigError) as info:
        load_specs(tmp_path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_a_name_declared_twice_is_refused(tmp_path: Path) -> None:
    attrs = {"name": "twin", "vendor": "github", "auth": {"type": "github", "secret": "s"}}
    write_block(tmp_path, "a", attrs)
    write_block(tmp_path, "b", attrs)
    with pytest.raises(ConfigError, match="declared twice"):
        load_specs(tmp_path)


def test_other_components_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "okta" / "defs.yaml"
    path.parent.mkdir()
    path.write_text("type: lip_dagster.components.PollingSource\nattributes: {name: okta}\n")
    assert load_specs(tmp_path) == {}


@pytest.mark.parametrize(
    ("auth", "words"),
    [
        # a misspelt option was ignored: the replay window stayed 300 s
        ({"type": "hmac", "secret": "s", "tolerance": 30}, "auth.tolerance"),
        # the receiver could not start (every source down) while the definitions loaded
        ({"type": "hmac", "secret": "s", "tolerance_seconds": 0}, "tolerance_seconds"),
        ({"type": "hmac", "secret": "s", "tolerance_seconds": "5m"}, "tolerance_seconds"),
        # an option of another type: the header checked stayed Authorization
        ({"type": "github", "secret": "s", "header": "X-Key"}, "auth.header"),
        ({"type": "header", "secret": "s", "header": ""}, "auth.header"),
    ],
)
def test_an_auth_block_the_receiver_cannot_use_is_refused_at_load(
    tmp_path: Path, auth: dict, words: str
) -> None:
    attrs = {"name": "my_app", "vendor": "generic", "auth": auth}
    path = write_block(tmp_path, "my_app", attrs)
    with pytest.raises(ConfigError) as info:
        load_specs(tmp_path)
    assert str(path) in str(info.value) and words in str(info.value)
    # Dagster loads the same block with the same verdict (`dagster definitions validate`)
    with pytest.raises(Exception, match=words.replace(".", r"\.")):
        WebhookSource.resolve_from_dict(attrs)


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "hmac", "secret": "s", "tolerance_seconds": 60},
        {"type": "hmac", "secret": "s", "signature_header": "X-Sig", "timestamp_header": "X-Ts"},
        {"type": "header", "secret": "s", "header": "X-Api-Key"},
        {"type": "okta_event_hook", "secret": "s", "header": "Authorization"},
        {"type": "basic", "secret": "s"},
    ],
)
def test_every_documented_auth_option_is_accepted(tmp_path: Path, auth: dict) -> None:
    write_block(tmp_path, "my_app", {"name": "my_app", "vendor": "generic", "auth": auth})
    assert load_specs(tmp_path)["my_app"].auth == auth


@pytest.mark.parametrize("vendor", ["okta_event_hook", "github", "jamf"])
@pytest.mark.parametrize(
    "change",
    [{"events_path": "data.items"}, {"id_fields": ["eventId"]}, {"time_field": "when"}],
)
def test_a_generic_setting_on_a_vendor_that_ignores_it_is_refused_at_load(
    tmp_path: Path, vendor: str, change: dict
) -> None:
    """okta_event_hook, github and jamf find events, ids and times themselves: an
    events_path, id_fields or time_field there was ignored, so the events were
    identified and filed as the vendor's code does, not as the block said."""
    (field,) = change
    auth_type = {"okta_event_hook": "okta_event_hook", "github": "github", "jamf": "header_map"}
    attrs = {
        "name": "my_hooks",
        "vendor": vendor,
        "auth": {"type": auth_type[vendor], "secret": "s"},
        **change,
    }
    path = write_block(tmp_path, "my_hooks", attrs)
    with pytest.raises(ConfigError) as info:
        load_specs(tmp_path)
    assert str(path) in str(info.value) and field in str(info.value)
    assert vendor in str(info.value)
    with pytest.raises(Exception, match=field):
        WebhookSource.resolve_from_dict(attrs)
    # the same setting on a generic source is read
    generic = {**attrs, "vendor": "generic", "auth": {"type": "header", "secret": "s"}}
    write_block(tmp_path, "generic", {**generic, "name": "generic"})
    (tmp_path / "my_hooks" / "defs.yaml").unlink()
    assert load_specs(tmp_path)["generic"].model_dump()[field] == change[field]
