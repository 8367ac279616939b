"""One Dagster Component per pattern: a source is one YAML block."""

from lip_dagster.components.polling import PollingSource

__all__ = ["PollingSource"]
