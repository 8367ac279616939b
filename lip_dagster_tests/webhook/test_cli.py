"""``lip webhook status`` and ``lip webhook replay`` as an on-call engineer runs them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lip_dagster.config import Settings
from lip_dagster.errors import LipError
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.webhook.cli import register
from lip_dagster.webhook.message import encode


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lip")
    register(parser.add_subparsers(dest="cmd", required=True))
    return parser.parse_args(list(argv))


def test_status_shows_depth_and_dead_letters_then_replay_clears_them(
    backend: EmbeddedBackend, lip_home: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("LIP_BUFFER_MAX_RECEIVES", "1")
    buffer = EmbeddedBackend(Settings.from_env()).buffer  # max_receives=1
    buffer.send("jamf", encode("jamf", 1_780_000_000.0, [{"webhook": {"webhookEvent": "X"}}]))
    buffer.receive("jamf", 10, 0)
    buffer.receive("jamf", 10, 0)  # past max_receives: dead-lettered
    args = parse("webhook", "status")
    assert args.fn(args) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("jamf"))
    assert row.split()[1:5] == ["0", "0", "-", "1"]  # buffered, in flight, oldest, dead
    args = parse("webhook", "replay", "jamf")
    assert args.fn(args) == 0
    assert "1 dead-lettered messages moved back" in capsys.readouterr().out
    assert buffer.depth("jamf").messages == 1 and buffer.depth("jamf").dead_letters == 0
    buffer.receive("jamf", 10, 300)  # a drain holds it
    args = parse("webhook", "status")
    assert args.fn(args) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("jamf"))
    assert row.split()[1:3] == ["1", "1"]


def test_replay_of_an_undeclared_source_names_the_problem(lip_home: Path) -> None:
    args = parse("webhook", "replay", "nope")
    with pytest.raises(LipError, match="no webhook source named 'nope'"):
        args.fn(args)
