"""Secrets never reach the hub's log, in the shapes KubeSpawner logs pods in."""

from __future__ import annotations

import json
import logging
import pprint

from spawner.log_redaction import REDACTED, RedactSecrets, redact

ENV = [
    {"name": "JUPYTERHUB_API_TOKEN", "value": "4f1c2b9e8d7a", "value_from": None},
    {"name": "JPY_API_TOKEN", "value": "4f1c2b9e8d7a", "value_from": None},
    {"name": "MY_DB_PASSWORD", "value": "hunter2", "value_from": None},
    {"name": "JUPYTERHUB_USER", "value": "alice", "value_from": None},
]


def test_secret_values_are_blanked_in_a_pods_repr_and_in_json():
    for text in (pprint.pformat({"spec": {"env": ENV}}, width=60), json.dumps(ENV)):
        cleaned = redact(text)
        assert "4f1c2b9e8d7a" not in cleaned and "hunter2" not in cleaned
        assert cleaned.count(REDACTED) == 3
        assert "alice" in cleaned  # not a secret: left alone


def test_the_filter_rewrites_records_before_any_handler(caplog):
    logger = logging.getLogger("test-redaction")
    logger.addFilter(RedactSecrets())
    with caplog.at_level(logging.INFO, logger="test-redaction"):
        logger.error("Failed for %s", pprint.pformat({"env": ENV}))
    assert "4f1c2b9e8d7a" not in caplog.text and REDACTED in caplog.text
