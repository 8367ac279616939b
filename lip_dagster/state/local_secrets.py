"""The embedded default secret store: environment variables, then a JSON file.

A secret named ``okta/api-token`` is read from ``LIP_SECRET_OKTA_API_TOKEN`` (upper
case, every character other than a letter or digit becomes ``_``), else from the key
``okta/api-token`` of the JSON object in ``$LIP_HOME/secrets.json``. The environment
wins so a container platform's secret injection overrides a file left on disk. Names
that differ only in punctuation (``okta/api-token``, ``okta.api.token``) share one
variable; the file still tells them apart.

Errors name the secret, the variable and the file, never a value: a malformed file is
reported by position only, because the text around a JSON error is usually a secret.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from lip_dagster.errors import ConfigError, SecretNotFound
from lip_dagster.state.base import SecretStore

__all__ = ["EnvFileSecretStore", "secret_env_var"]

log = logging.getLogger(__name__)

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def secret_env_var(name: str, prefix: str = "LIP_SECRET_") -> str:
    """The environment variable that holds secret ``name``."""
    return prefix + _NOT_ALNUM.sub("_", name).upper()


class _Environment:
    """The variables to read, behind a repr that shows none of them: a debugger or a
    framework dumping the store's attributes must not print every secret."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = mapping

    def get(self, key: str) -> str | None:
        return self._mapping.get(key)

    def __repr__(self) -> str:
        return "<environment>"


class EnvFileSecretStore(SecretStore):
    """Secrets from ``LIP_SECRET_*`` variables, falling back to a JSON file.

    ``path`` is normally ``$LIP_HOME/secrets.json``; it may be absent (secrets then
    come only from the environment). An empty value counts as unset, in the
    environment and in the file alike: ``VAR=`` in a compose file means "not
    configured", and an empty credential would only fail later, less clearly.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        ttl_seconds: float = 300.0,
        environ: Mapping[str, str] | None = None,
        env_prefix: str = "LIP_SECRET_",
    ) -> None:
        super().__init__(ttl_seconds)
        self.path = None if path is None else Path(path)
        self._environ = _Environment(os.environ if environ is None else environ)
        self._env_prefix = env_prefix

    def __repr__(self) -> str:
        where = "no file" if self.path is None else repr(str(self.path))
        return f"EnvFileSecretStore({where}, env_prefix={self._env_prefix!r})"

    def _fetch(self, name: str) -> str:
        var = secret_env_var(name, self._env_prefix)
        value = self._environ.get(var)
        if value:
            return value or None
        from_file = self._from_file(name)
        if from_file is not None:
            return from_file
        file_txt = "no secrets file configured" if self.path is None else str(self.path)
        raise SecretNotFound(
            f"secret {name!r} not found: set the environment variable {var} or add the "
            f"key {name!r} to the JSON secrets file ({file_txt})"
        )

    def _from_file(self, name: str) -> str | None:
        if self.path is None:
            return None
        try:
            text = self.path.read_text(encoding="utf-8")
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else "it is not UTF-8"
            raise ConfigError(f"secrets file {str(self.path)!r} cannot be read: {reason}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "secrets file %s is readable by other users (mode %o); chmod 600 it",
                self.path,
                stat.S_IMODE(mode),
            )
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            # err.msg/lineno/colno only: str(err) is fine today, but the document
            # itself must never reach a log.
            raise ConfigError(
                f"secrets file {str(self.path)!r} is not valid JSON ({err.msg} at line "
                f"{err.lineno} column {err.colno})"
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"secrets file {str(self.path)!r} must hold a JSON object of name -> value"
            )
        if name not in data:
            return None
        value = data[name]
        if not isinstance(value, str):
            raise ConfigError(
                f"secrets file {str(self.path)!r}: the value of {name!r} must be a string"
            )
        return value or None
