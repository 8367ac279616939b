"""The webhook pattern: vendors push, the receiver buffers, a drain run lands.

    vendor --POST--> receiver (ASGI: size, type, auth, parse, dedupe, buffer, 2xx)
                        |  durable buffer per source (SQLite | SQS + DLQ)
    arrival sensor --(depth or age past threshold)--> drain run --> LakeWriter --> lake

``spec`` (the YAML schema), ``verifiers``, ``vendors`` (events and ids per vendor),
``message`` (what is buffered), ``intake`` (group commit), ``receiver`` (the app),
``lambda_handler`` (API Gateway), ``drain``, ``arrival`` (when to drain), ``server``
(uvicorn), ``cli`` and ``demo``.
"""

from lip_dagster.webhook.arrival import ArrivalState, Thresholds, decide
from lip_dagster.webhook.drain import DrainConfig, Drainer, DrainReport, replay
from lip_dagster.webhook.errors import PoisonMessage, WebhookRejected
from lip_dagster.webhook.receiver import SourceRoute, WebhookReceiver, app_for_backend, create_app
from lip_dagster.webhook.spec import WebhookSourceSpec, load_specs
from lip_dagster.webhook.vendors import Extractor, build_extractor
from lip_dagster.webhook.verifiers import Verifier, build_verifier

__all__ = [
    "ArrivalState",
    "DrainConfig",
    "DrainReport",
    "Drainer",
    "Extractor",
    "PoisonMessage",
    "SourceRoute",
    "Thresholds",
    "Verifier",
    "WebhookReceiver",
    "WebhookRejected",
    "WebhookSourceSpec",
    "app_for_backend",
    "build_extractor",
    "build_verifier",
    "create_app",
    "decide",
    "load_specs",
    "replay",
]
