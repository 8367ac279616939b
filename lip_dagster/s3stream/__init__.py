"""S3 streaming: vendors that write objects into a bucket themselves.

objects        where vendor objects are read from (landing directory | S3), SQS intake
notifications  S3 event notifications -> decoded object keys
arrivals       new objects: notifications, or listing after a stored key
pending        what the arrival sensor waits for before it acknowledges objects
streams        streaming gunzip, NDJSON and JSON-array readers (bounded memory)
formats        CloudTrail, GitHub audit-log streaming, Cloudflare Logpush
transcode      vendor object -> lake objects through the one writer; quarantine
producer_lake  a lake-layout producer's objects, read by the SAM content checks
"""

from lip_dagster.s3stream.arrivals import ArrivalFinder, ListingState, plan_objects
from lip_dagster.s3stream.formats import FORMAT_NAMES, VendorFormat, vendor_format
from lip_dagster.s3stream.objects import (
    ArrivalQueue,
    LocalObjectSource,
    ObjectInfo,
    ObjectLocation,
    ObjectReadError,
    ObjectSource,
    S3ObjectSource,
    SqsArrivalQueue,
)
from lip_dagster.s3stream.pending import RunOutcome, SensorState
from lip_dagster.s3stream.transcode import (
    ObjectOutcome,
    ObjectsNotRead,
    Transcoder,
    TranscodeReport,
)

__all__ = [
    "FORMAT_NAMES",
    "ArrivalFinder",
    "ArrivalQueue",
    "ListingState",
    "LocalObjectSource",
    "ObjectInfo",
    "ObjectLocation",
    "ObjectOutcome",
    "ObjectReadError",
    "ObjectSource",
    "ObjectsNotRead",
    "RunOutcome",
    "S3ObjectSource",
    "SensorState",
    "SqsArrivalQueue",
    "TranscodeReport",
    "Transcoder",
    "VendorFormat",
    "plan_objects",
    "vendor_format",
]
