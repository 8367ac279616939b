"""One Dagster Component per pattern: a source is one YAML block."""

from lip_dagster.components.polling import PollingSource
from lip_dagster.components.s3 import S3Source
from lip_dagster.components.webhook import WebhookSource

__all__ = ["PollingSource", "S3Source", "WebhookSource"]
