"""Declared sources come from the loaded Dagster definitions, in one place: a source
is an asset tagged ``lip/pattern``; webhook sources are the buffered ones."""

from __future__ import annotations

import dagster as dg
import pytest

from lip_dagster.errors import LipError
from lip_dagster.sam.sources import DeclaredSource, declared_sources, select


def test_the_real_definitions_declare_okta_as_a_polling_source(lip_home: object) -> None:
    sources = declared_sources()
    by_name = {s.name: s for s in sources}
    assert by_name["okta"].pattern == "polling" and not by_name["okta"].buffered
    assert [s.name for s in sources] == sorted(by_name)
    assert {s.pattern for s in sources} <= {"polling", "webhook", "s3"}
    assert all(s.buffered == (s.pattern == "webhook") for s in sources)


def test_secrets_are_read_from_the_asset_metadata() -> None:
    @dg.asset(
        name="jamf",
        tags={"lip/pattern": "webhook"},
        metadata={"lip/secrets": ["jamf/webhook-user", "jamf/webhook-password"]},
    )
    def _jamf() -> None: ...

    @dg.asset(name="not_a_source")
    def _other() -> None: ...

    found = declared_sources(dg.Definitions(assets=[_jamf, _other]))
    assert found == [
        DeclaredSource("jamf", "webhook", ("jamf/webhook-password", "jamf/webhook-user"))
    ]
    assert found[0].buffered


def test_select_keeps_the_order_asked_and_names_unknown_sources() -> None:
    sources = [DeclaredSource("okta", "polling"), DeclaredSource("slack", "polling")]
    assert select(sources, None) == sources
    assert [s.name for s in select(sources, ["slack", "okta", "slack"])] == ["slack", "okta"]
    with pytest.raises(LipError, match="no source named 'jira'; declared: okta, slack"):
        select(sources, ["jira"])
