"""S3 event notifications as they arrive on SQS: decode them into object keys.

S3 URL-encodes the key in a notification (a space arrives as ``+``, a ``+`` as
``%2B``), so keys are decoded with ``unquote_plus``; a key used undecoded names an
object that does not exist. The ``s3:TestEvent`` S3 sends when notifications are
configured carries no object and is acknowledged without action. Notifications that
reach SQS through SNS arrive wrapped in an SNS envelope and are unwrapped once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

import orjson

from lip_dagster.lake.envelope import parse_timestamp


@dataclass(frozen=True)
class Arrival:
    """One object announced by a notification."""

    bucket: str
    key: str
    size: int | None
    event_time: datetime | None
    event_name: str


@dataclass
class Notification:
    """What one queue message said: objects created, a test event, other events
    (deletions, ...) that need no action, or why it could not be read."""

    arrivals: list[Arrival] = field(default_factory=list)
    test_event: bool = False
    other_events: int = 0
    problem: str | None = None


def parse_notification(body: bytes) -> Notification:
    try:
        msg = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Notification(problem="message body is not JSON")
    if isinstance(msg, dict) and msg.get("Type") == "Notification" and "Message" in msg:
        inner = msg.get("Message")
        if not isinstance(inner, str):
            return Notification(problem="SNS envelope without a Message string")
        try:
            msg = orjson.loads(inner)
        except orjson.JSONDecodeError:
            return Notification(problem="SNS message is not JSON")
    if not isinstance(msg, dict):
        return Notification(problem="message is not a JSON object")
    if msg.get("Event") == "s3:TestEvent":
        return Notification(test_event=True)
    records = msg.get("Records")
    if not isinstance(records, list):
        return Notification(problem="not an S3 event notification (no Records)")
    out = Notification()
    for rec in records:
        arrival = _arrival(rec)
        if isinstance(arrival, Arrival):
            out.arrivals.append(arrival)
        elif arrival == "other":
            out.other_events += 1
        else:
            out.problem = arrival
    return out


def _arrival(rec: Any) -> Arrival | str:
    if not isinstance(rec, dict) or rec.get("eventSource") != "aws:s3":
        return "a record that is not an S3 event"
    name = str(rec.get("eventName", ""))
    if not name.startswith("ObjectCreated:"):
        return "other"
    s3 = rec.get("s3")
    try:
        bucket = str(s3["bucket"]["name"])
        raw_key = s3["object"]["key"]
    except (KeyError, TypeError):
        return "an S3 event without bucket name or object key"
    if not isinstance(raw_key, str) or not raw_key:
        return "an S3 event with an empty object key"
    size = s3["object"].get("size")
    return Arrival(
        bucket=bucket,
        key=unquote_plus(raw_key),
        size=size if isinstance(size, int) else None,
        event_time=parse_timestamp(rec.get("eventTime")),
        event_name=name,
    )
