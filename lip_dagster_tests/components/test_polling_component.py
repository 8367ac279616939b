"""The PollingSource component through Dagster itself: definitions, schedule ticks,
runs, backfills, metadata, and secrets kept out of all of it."""

from __future__ import annotations

import gzip
import re
from datetime import UTC, datetime, timedelta

import dagster as dg
import httpx
import orjson
import pytest

from lip_dagster.config import Settings
from lip_dagster.definitions import defs
from lip_dagster.polling.http import HttpClient, RetryPolicy
from lip_dagster.simulator import VendorSimulator

POLLING = {"okta", "onepassword", "slack", "google_workspace"}


def load() -> dg.Definitions:
    return defs()


def live_poll(
    component: object, job: str, instance: dg.DagsterInstance | None = None
) -> dg.ExecuteInProcessResult:
    """One scheduled poll of a component built here (not from the YAML), as the
    schedule would launch it, without step retries in the way."""
    d = dg.Definitions.merge(
        component.build_defs(None),  # type: ignore[attr-defined]
        dg.Definitions(resources={"lip": load().resources["lip"]}),
    )
    return d.resolve_job_def(job).execute_in_process(
        partition_key=datetime.now(UTC).strftime("%Y-%m-%d-%H:00"),
        tags={"lip/mode": "poll"},
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_definitions_load_with_every_polling_source(demo_world) -> None:
    d = load()
    keys = {k.to_user_string() for k in d.resolve_asset_graph().get_all_asset_keys()}
    assert POLLING <= keys
    for name in POLLING:
        node = d.resolve_asset_graph().get(dg.AssetKey(name))
        assert node.partitions_def is not None
        assert node.freshness_policy is not None
        assert d.resolve_job_def(f"{name}_poll").tags["lip/source"] == name


def test_schedule_tick_at_0325_targets_the_0300_partition(demo_world) -> None:
    d = load()
    sched = d.resolve_schedule_def("okta_every_5m")
    assert sched.cron_schedule == "*/5 * * * *"
    ctx = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 3, 1, 3, 25, tzinfo=UTC),
        repository_def=d.get_repository_def(),
    )
    data = sched.evaluate_tick(ctx)
    (req,) = data.run_requests
    assert req.partition_key == "2026-03-01-03:00"
    assert req.tags["lip/mode"] == "poll" and req.tags["lip/source"] == "okta"
    assert req.run_key == "okta-20260301T0325"


def lake_ids(source: str, hour_path: str | None = None) -> set[str]:
    root = Settings.from_env().lake_dir / f"source={source}"
    ids = set()
    for p in root.rglob("*.ndjson.gz"):
        if hour_path and hour_path not in p.as_posix():
            continue
        ids |= {orjson.loads(x)["_lip"]["id"] for x in gzip.decompress(p.read_bytes()).splitlines()}
    return ids


def test_a_scheduled_run_materializes_every_hour_it_wrote(demo_world: VendorSimulator) -> None:
    d = load()
    job = d.resolve_job_def("okta_poll")
    now_hour = datetime.now(UTC).strftime("%Y-%m-%d-%H:00")
    result = job.execute_in_process(
        partition_key=now_hour,
        tags={"lip/mode": "poll", "lip/source": "okta"},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    mats = result.asset_materializations_for_node("okta")
    partitions = {m.partition for m in mats}
    assert len(partitions) >= 3  # three hours of history plus the current hour
    target = next(m for m in mats if m.partition == now_hour)
    md = target.metadata
    assert md["events_total"].value == len(demo_world.events("okta", "logs"))
    for key in (
        "duplicates_dropped",
        "objects",
        "bytes_raw",
        "bytes_gzip",
        "lag_seconds",
        "cursor_before/logs",
        "cursor_after/logs",
    ):
        assert key in md
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)


def test_a_backfill_of_a_past_hour_lands_exactly_that_hour(demo_world: VendorSimulator) -> None:
    d = load()
    events = demo_world.events("okta", "logs")
    t = datetime.fromisoformat(events[len(events) // 2]["published"])
    hour = t.replace(minute=0, second=0, microsecond=0)
    partition = hour.strftime("%Y-%m-%d-%H:00")
    result = d.resolve_job_def("okta_poll").execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    expected = {
        e["uuid"]
        for e in events
        if hour <= datetime.fromisoformat(e["published"]) < hour + timedelta(hours=1)
    }
    assert lake_ids("okta") == expected
    (mat,) = result.asset_materializations_for_node("okta")
    assert mat.partition == partition and mat.metadata["mode"].value == "backfill"
    # run again: lands only what is not already landed (nothing)
    again = d.resolve_job_def("okta_poll").execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.ephemeral()
    )
    assert again.asset_materializations_for_node("okta")[0].metadata["events_total"].value == 0


def test_a_backfill_older_than_the_vendor_keeps_fails_instead_of_turning_green(
    demo_world: VendorSimulator,
) -> None:
    """Okta returns 90 days (VENDORS.md §1). A UI backfill of an older hour used to
    get an empty window back and materialize the hour with 0 events, the look of a
    quiet hour that was collected; it now fails at once, without step retries, and
    says why."""
    from lip_dagster.cli import failure_message

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=100)
    partition = hour.strftime("%Y-%m-%d-%H:00")
    result = (
        load()
        .resolve_job_def("okta_poll")
        .execute_in_process(
            partition_key=partition,
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    )
    assert not result.success
    assert not result.asset_materializations_for_node("okta")
    assert "90 days" in failure_message(result)
    restarts = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not restarts


def test_a_failed_collection_fails_the_run_naming_source_endpoint_status(
    demo_world: VendorSimulator,
) -> None:
    from lip_dagster.components.polling import PollingSource

    demo_world.script("slack", [500] * 6)
    component = PollingSource(
        name="slack", adapter="slack", base_url_env="LIP_SLACK_BASE_URL", step_retries=0
    )
    result = live_poll(component, "slack_poll")
    assert not result.success
    from lip_dagster.cli import failure_message

    msg = failure_message(result)
    assert "'slack'" in msg and "'logs'" in msg and "HTTP 500" in msg


def test_secrets_never_reach_logs_metadata_or_errors(
    demo_world: VendorSimulator, capfd: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("LIP_OKTA_AUTH", "oauth")
    d = load()
    instance = dg.DagsterInstance.ephemeral()
    results = [
        d.resolve_job_def(f"{s}_poll").execute_in_process(
            partition_key=datetime.now(UTC).strftime("%Y-%m-%d-%H:00"),
            tags={"lip/mode": "poll"},
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "DEBUG"}}}},
        )
        for s in sorted(POLLING)
    ]
    assert all(r.success for r in results)
    # a refused credential, too
    monkeypatch.setenv("LIP_SECRET_SLACK_TOKEN", "xoxp-this-is-a-wrong-but-secret-token")
    bad = (
        load()
        .resolve_job_def("slack_poll")
        .execute_in_process(
            partition_key=datetime.now(UTC).strftime("%Y-%m-%d-%H:00"),
            tags={"lip/mode": "poll"},
            instance=instance,
            raise_on_error=False,
        )
    )
    assert not bad.success
    out = capfd.readouterr()
    texts = [out.out, out.err]
    for r in [*results, bad]:
        for ev in r.all_events:
            texts.append(str(ev.message))
            texts.append(repr(ev.event_specific_data))
    blob = "\n".join(texts)
    secrets = [*demo_world.credentials().values(), "xoxp-this-is-a-wrong-but-secret-token"]
    for value in secrets:
        for line in value.splitlines():
            if len(line) >= 16 and "BEGIN" not in line and "END" not in line:
                assert line not in blob, "a secret reached Dagster's logs, metadata or errors"


class DeadItemUsages(httpx.HTTPTransport):
    """1Password's ``itemusages`` endpoint is unreachable; the others answer."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/itemusages"):
            raise httpx.ConnectError("connection refused", request=request)
        return super().handle_request(request)


def test_an_endpoint_that_is_down_fails_the_run_after_the_others_landed(
    demo_world: VendorSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run fails (so the run-failure alert fires) naming the broken endpoint and
    why; the healthy endpoints were still collected in that run."""
    from lip_dagster.cli import failure_message
    from lip_dagster.components import polling as polling_component
    from lip_dagster.components.polling import PollingSource

    monkeypatch.setattr(
        polling_component,
        "HttpClient",
        lambda **kw: HttpClient(
            transport=DeadItemUsages(), retry=RetryPolicy(max_attempts=2, base_delay=0.01), **kw
        ),
    )
    component = PollingSource(
        name="onepassword",
        adapter="onepassword",
        base_url_env="LIP_ONEPASSWORD_BASE_URL",
        endpoints=["auditevents", "itemusages", "signinattempts"],
        step_retries=0,
    )
    result = live_poll(component, "onepassword_poll")
    assert not result.success
    msg = failure_message(result)
    assert "'itemusages'" in msg and "connection failed (ConnectError)" in msg
    assert "collected: auditevents, signinattempts" in msg
    healthy = {
        e["uuid"]
        for ep in ("auditevents", "signinattempts")
        for e in demo_world.events("onepassword", ep)
    }
    landed = lake_ids("onepassword")
    assert healthy <= landed
    assert not {e["uuid"] for e in demo_world.events("onepassword", "itemusages")} & landed


@pytest.mark.parametrize("minutes", [7, 45, 90, 0])
def test_a_poll_interval_cron_cannot_keep_is_refused_when_the_yaml_loads(minutes: int) -> None:
    """cron's */45 fires at :00 and :45, */90 every hour: a schedule named
    every_45m would poll at other intervals than its name says."""
    from pydantic import ValidationError

    from lip_dagster.components.polling import PollingSource

    with pytest.raises(ValidationError, match="poll_minutes must divide 60"):
        PollingSource(name="okta", adapter="okta", base_url_env="X", poll_minutes=minutes)
    assert PollingSource(name="okta", adapter="okta", base_url_env="X", poll_minutes=15)


@pytest.mark.parametrize(
    ("field", "value"),
    [("page_size", 0), ("page_size", -5), ("time_budget_seconds", 0), ("time_budget_seconds", -1)],
)
def test_a_setting_that_would_collect_nothing_is_refused_when_the_yaml_loads(
    field: str, value: int
) -> None:
    """Okta takes ``limit=0`` and answers an empty page (with its endless ``next``),
    and a budget of 0 s ends every poll before its first request: either way each run
    would end green, with nothing collected and its hours called complete."""
    from pydantic import ValidationError

    from lip_dagster.components.polling import PollingSource

    with pytest.raises(ValidationError, match=field):
        PollingSource(name="okta", adapter="okta", base_url_env="X", **{field: value})
    assert PollingSource(name="okta", adapter="okta", base_url_env="X", **{field: 1})


@pytest.mark.parametrize("auth", ["OAuth", "oauth2", "token"])
def test_an_okta_auth_mode_it_does_not_know_is_refused_when_the_yaml_loads(auth: str) -> None:
    """LIP_OKTA_AUTH=OAuth used to select the API token silently: an operator who
    set up OAuth got told a token secret they never made was missing."""
    from lip_dagster.components.polling import PollingSource
    from lip_dagster.errors import ConfigError

    def okta(mode: str) -> PollingSource:
        return PollingSource(
            name="okta", adapter="okta", base_url_env="LIP_OKTA_BASE_URL", options={"auth": mode}
        )

    with pytest.raises(ConfigError, match=rf"LIP_OKTA_AUTH.*not '{auth}'"):
        okta(auth).build_defs(None)  # type: ignore[arg-type]
    for mode in ("ssws", "oauth"):
        assert okta(mode).build_defs(None)  # type: ignore[arg-type]


class FailsAfter(httpx.HTTPTransport):
    """1Password's ``auditevents`` answers ``ok`` pages, then only 502s (or, with
    ``interrupt``, the run is stopped during the next request, as Dagster stops a run
    terminated from the UI)."""

    def __init__(self, ok: int, interrupt: bool = False) -> None:
        super().__init__()
        self.ok = ok
        self.interrupt = interrupt
        # set: the run is terminated as from the UI (CANCELING, so it ends CANCELED)
        self.terminate_in: dg.DagsterInstance | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auditevents"):
            if self.ok <= 0:
                if self.interrupt:
                    if self.terminate_in is not None:
                        (run,) = self.terminate_in.get_runs(
                            dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
                        )
                        self.terminate_in.report_run_canceling(run)
                    raise dg.DagsterExecutionInterruptedError()
                return httpx.Response(502, request=request, content=b"bad gateway")
            self.ok -= 1
        return super().handle_request(request)


def onepassword_failing_after(
    ok: int, monkeypatch: pytest.MonkeyPatch, interrupt: bool = False
) -> tuple[FailsAfter, object]:
    """A 1Password source whose ``auditevents`` answers ``ok`` pages, then 502s (or
    is interrupted)."""
    from lip_dagster.components import polling as polling_component
    from lip_dagster.components.polling import PollingSource

    transport = FailsAfter(ok=ok, interrupt=interrupt)
    monkeypatch.setattr(
        polling_component,
        "HttpClient",
        lambda **kw: HttpClient(
            transport=transport, retry=RetryPolicy(max_attempts=2, base_delay=0.01), **kw
        ),
    )
    component = PollingSource(
        name="onepassword",
        adapter="onepassword",
        base_url_env="LIP_ONEPASSWORD_BASE_URL",
        page_size=40,
        endpoints=["auditevents"],
        step_retries=0,
    )
    return transport, component


@pytest.mark.parametrize("interrupt", [False, True], ids=["outage", "run-terminated"])
def test_a_run_that_fails_mid_poll_still_materializes_the_hours_it_landed(
    demo_world: VendorSimulator, monkeypatch: pytest.MonkeyPatch, interrupt: bool
) -> None:
    """The outage (or an operator terminating the run) turns the run red, but the
    pages before it are landed and the cursor is past them: their hours must show as
    materialized (with their counts), or no run ever will, and the next healthy run's
    coverage would pass over them."""
    _, component = onepassword_failing_after(6, monkeypatch, interrupt=interrupt)
    instance = dg.DagsterInstance.ephemeral()
    result = live_poll(component, "onepassword_poll", instance)
    assert not result.success
    landed: dict[str, int] = {}
    for record in instance.fetch_materializations(dg.AssetKey("onepassword"), limit=100).records:
        mat = record.asset_materialization
        assert mat is not None and mat.partition is not None
        landed[mat.partition] = mat.metadata["events"].value
        outcome = mat.metadata["run_outcome"].value
        assert ("DagsterExecutionInterruptedError" if interrupt else "HTTP 502") in outcome
    root = Settings.from_env().lake_dir / "source=onepassword"
    in_lake: dict[str, int] = {}
    for path in root.rglob("*.ndjson.gz"):
        parts = dict(x.split("=") for x in path.parent.as_posix().split("/") if "=" in x)
        hour = f"{parts['year']}-{parts['month']}-{parts['day']}-{parts['hour']}:00"
        in_lake[hour] = in_lake.get(hour, 0) + len(gzip.decompress(path.read_bytes()).splitlines())
    assert in_lake and landed == in_lake


@pytest.mark.parametrize("terminated", [False, True], ids=["outage", "run-terminated"])
def test_the_hours_a_failed_run_landed_are_checked_by_the_next_run(
    demo_world: VendorSimulator, monkeypatch: pytest.MonkeyPatch, terminated: bool
) -> None:
    """A check step does not run after its asset step failed, and no later run
    writes those hours again (the cursor is past them): the next run checks them.
    The same for a run terminated from the UI, which Dagster records as canceled."""
    transport, component = onepassword_failing_after(6, monkeypatch, interrupt=terminated)
    instance = dg.DagsterInstance.ephemeral()
    if terminated:
        transport.terminate_in = instance
    failed = live_poll(component, "onepassword_poll", instance)
    assert not failed.success
    if terminated:
        (stopped,) = instance.get_runs()
        assert stopped.status == dg.DagsterRunStatus.CANCELED
    landed = {
        r.asset_materialization.partition
        for r in instance.fetch_materializations(dg.AssetKey("onepassword"), limit=100).records
        if r.asset_materialization is not None
    }
    assert landed
    transport.ok = 10_000  # the vendor is back
    healthy = live_poll(component, "onepassword_poll", instance)
    assert healthy.success
    (content,) = [
        e.asset_check_evaluation_data
        for e in healthy.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "lake_content"
    ]
    assert content.passed
    checked = set(content.metadata["partitions_checked"].value)
    assert landed <= checked


def test_the_whole_request_limit_is_a_per_source_setting() -> None:
    from lip_dagster.components.polling import PollingSource

    default = PollingSource(name="okta", adapter="okta", base_url_env="LIP_OKTA_BASE_URL")
    assert default.http_client().total_timeout == 300.0
    slow = PollingSource(
        name="okta",
        adapter="okta",
        base_url_env="LIP_OKTA_BASE_URL",
        request_total_timeout_seconds=900,
    )
    assert slow.http_client().total_timeout == 900.0
    with pytest.raises(ValueError):
        PollingSource(
            name="okta",
            adapter="okta",
            base_url_env="LIP_OKTA_BASE_URL",
            request_total_timeout_seconds=0,
        )


@pytest.mark.parametrize(
    ("adapter", "endpoints", "typo"),
    [
        ("slack", [], "overlap"),  # meant overlap_minutes: the 5-minute default was kept
        ("slack", [], "token"),
        ("okta", [], "auth_mode"),
        ("onepassword", [], "tokn_secret"),  # the default secret name was read instead
        ("google_workspace", [], "overlap_minute"),
        ("google_workspace", [], "overlap_minutes_tokn"),
        # an application this source does not poll: the setting would do nothing
        ("google_workspace", ["login"], "overlap_minutes_drive"),
    ],
)
def test_an_option_the_adapter_does_not_read_is_refused_when_the_yaml_loads(
    adapter: str, endpoints: list[str], typo: str
) -> None:
    """A misspelt option used to be ignored: `overlap: 30` on Slack kept re-reading 5
    minutes while the operator believed 30. It fails at load, naming the option, the
    source and what the adapter does read."""
    from lip_dagster.components.polling import PollingSource
    from lip_dagster.errors import ConfigError

    source = PollingSource(
        name=f"my_{adapter}",
        adapter=adapter,
        base_url_env="X",
        endpoints=endpoints,
        options={typo: "30"},
    )
    with pytest.raises(ConfigError) as info:
        source.build_defs(None)  # type: ignore[arg-type]
    message = str(info.value)
    assert repr(typo) in message and f"my_{adapter}" in message
    assert "token_secret" in message or "service_account_secret" in message


@pytest.mark.parametrize(
    ("adapter", "endpoints", "options"),
    [
        ("slack", [], {"token_secret": "slack/other", "overlap_minutes": 30}),
        (
            "okta",
            [],
            {
                "auth": "oauth",
                "token_secret": "a",
                "client_id_secret": "b",
                "private_key_secret": "c",
            },
        ),
        ("onepassword", [], {"token_secret": "onepassword/other"}),
        (
            "google_workspace",
            ["login", "token"],
            {
                "service_account_secret": "a",
                "admin_email_secret": "b",
                "token_url": "https://oauth2.example/token",
                "overlap_minutes": 45,
                "overlap_minutes_token": 180,
            },
        ),
        # no endpoints listed: the adapter's default applications
        ("google_workspace", [], {"overlap_minutes_drive": 60}),
    ],
)
def test_every_option_an_adapter_reads_still_loads(
    adapter: str, endpoints: list[str], options: dict
) -> None:
    from lip_dagster.components.polling import PollingSource

    source = PollingSource(
        name=adapter, adapter=adapter, base_url_env="X", endpoints=endpoints, options=options
    )
    d = source.build_defs(None)  # type: ignore[arg-type]
    (asset,) = d.assets  # type: ignore[misc]
    meta = asset.metadata_by_key[dg.AssetKey(adapter)]  # type: ignore[union-attr]
    assert meta["lip/secrets"] == sorted(
        str(v) for k, v in options.items() if k.endswith("_secret")
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # a negative margin let a poll run past its budget, into the next one's slot
        ("safety_margin_seconds", -30),
        ("initial_lookback_hours", -1),  # the first poll asked for the future
        ("freshness_fail_minutes", 0),
        ("freshness_warn_minutes", 0),  # read as "no warning" while it says 0 minutes
        ("freshness_warn_minutes", 60),  # not before the 60-minute failure
        ("step_retries", -1),
        ("step_retry_delay_seconds", -30),
    ],
)
def test_a_number_that_makes_no_sense_is_refused_as_the_yaml_loads_naming_it(
    field: str, value: int
) -> None:
    from lip_dagster.components.polling import PollingSource

    block = {"name": "okta", "adapter": "okta", "base_url_env": "X"}
    with pytest.raises(Exception, match=field):
        PollingSource.resolve_from_dict({**block, field: value})
    assert PollingSource.resolve_from_dict(block)


@pytest.mark.parametrize(
    ("adapter", "option", "value"),
    [
        ("slack", "overlap_minutes", "30m"),
        ("slack", "overlap_minutes", -5),
        ("google_workspace", "overlap_minutes", "half an hour"),
        ("google_workspace", "overlap_minutes_token", 100_000),
    ],
)
def test_an_overlap_that_is_not_a_number_of_minutes_is_refused_when_the_yaml_loads(
    adapter: str, option: str, value: object
) -> None:
    """It used to load, then fail every poll of the source."""
    from lip_dagster.components.polling import PollingSource
    from lip_dagster.errors import ConfigError

    source = PollingSource(name=adapter, adapter=adapter, base_url_env="X", options={option: value})
    with pytest.raises(ConfigError, match=rf"'{adapter}'.*'{option}'"):
        source.build_defs(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("adapter", "endpoints", "said"),
    [
        ("okta", ["logs", "log"], "endpoint 'log' is not one its vendor has (logs)"),
        ("slack", ["audit"], "endpoint 'audit' is not one its vendor has (logs)"),
        ("onepassword", ["itemusage"], "endpoint 'itemusage' is not one its vendor has"),
        ("google_workspace", ["login", "login"], "endpoint 'login' is listed twice"),
    ],
)
def test_an_endpoint_the_vendor_does_not_have_is_refused_when_the_yaml_loads(
    adapter: str, endpoints: list[str], said: str
) -> None:
    """Okta and Slack ignore the endpoint's name: a typo polled the same log again
    under a second cursor. A misspelt 1Password endpoint failed every run instead."""
    from lip_dagster.components.polling import PollingSource
    from lip_dagster.errors import ConfigError

    source = PollingSource(name="src", adapter=adapter, base_url_env="X", endpoints=endpoints)
    with pytest.raises(ConfigError, match=re.escape(said)):
        source.build_defs(None)  # type: ignore[arg-type]
