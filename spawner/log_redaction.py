"""Keep secrets out of the hub's log.

KubeSpawner logs the whole pod when the API server refuses it (``Failed for {...}``), and the
pod's environment holds the server's hub token: anyone who reads the hub's log could act as
that user. This filter blanks the value of every environment variable whose name says it is
a secret, in any message, before a handler sees it.
"""

from __future__ import annotations

import logging
import re

#: Variable names whose values are secrets.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY", re.IGNORECASE)
#: ``'name': 'X', 'value': '...'`` as a pod's repr (pprint of to_dict) or JSON writes an env var.
_ENV_PAIR = re.compile(
    r"""(?P<head>['"]name['"]:\s*['"](?P<name>[^'"]+)['"],\s*['"]value['"]:\s*)"""
    r"""(?P<quote>['"])(?P<value>(?:(?!(?P=quote)).)*)(?P=quote)""",
    re.DOTALL,
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the values of secret-named environment variables replaced."""

    def blank(match: re.Match) -> str:
        if not SECRET_NAME.search(match["name"]) or not match["value"]:
            return match[0]
        return f"{match['head']}{match['quote']}{REDACTED}{match['quote']}"

    return _ENV_PAIR.sub(blank, text)


class RedactSecrets(logging.Filter):
    """A logger filter that rewrites records whose message carries a secret value."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot format is not ours to fix
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install(logger: logging.Logger | logging.LoggerAdapter) -> None:
    """Add the filter to ``logger`` once (spawners share the hub's logger)."""
    target = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
    if not any(isinstance(f, RedactSecrets) for f in target.filters):
        target.addFilter(RedactSecrets())
