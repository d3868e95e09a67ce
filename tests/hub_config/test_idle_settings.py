"""settings.idle_after_minutes and stop_idle_after_minutes: loaded, checked, and configured
into the hub (the culler service and its one scope only when stopping is on)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from hub_config.hub import configure
from hub_config.idle_culler import CULLER_ROLE, CULLER_SERVICE
from hub_config.loader import EXAMPLE, ConfigError, load_config


def written(tmp_path: Path, **settings: object) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["settings"].update(settings)
    path = tmp_path / "ai-console.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_defaults_flag_after_30_minutes_and_never_stop() -> None:
    settings = load_config(EXAMPLE).settings
    assert (settings.idle_after_minutes, settings.stop_idle_after_minutes) == (30, None)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"idle_after_minutes": 30, "stop_idle_after_minutes": 10},
            "settings.stop_idle_after_minutes: expected at least idle_after_minutes (30)",
        ),
        ({"idle_after_minutes": 0}, "settings.idle_after_minutes: expected a number of minutes"),
        ({"stop_idle_after_minutes": "soon"}, "settings.stop_idle_after_minutes: expected minutes"),
    ],
)
def test_bad_idle_settings_are_refused(tmp_path: Path, settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(written(tmp_path, **settings))


def configured(monkeypatch: pytest.MonkeyPatch, path: Path) -> Config:
    monkeypatch.setenv("AI_CONSOLE_CONFIG", str(path))
    monkeypatch.setenv("AI_CONSOLE_MODE", "kubernetes")
    c = Config()
    configure(c)
    return c


def test_stopping_registers_a_culler_that_may_only_stop_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = written(tmp_path, idle_after_minutes=20, stop_idle_after_minutes=45)
    c = configured(monkeypatch, path)
    assert (c.AgentSamples.idle_minutes, c.AgentSamples.cull_after_minutes) == (20, 45)
    [service] = [s for s in c.JupyterHub.services if s["name"] == CULLER_SERVICE]
    assert len(service["api_token"]) == 64 and "url" not in service and "command" not in service
    [role] = [r for r in c.JupyterHub.load_roles if r["name"] == CULLER_ROLE]
    assert role["scopes"] == ["servers", "read:users:name"]
    assert role["services"] == [CULLER_SERVICE]
    assert callable(c.AgentSamples.stop_server)


def test_without_stopping_there_is_no_culler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    c = configured(monkeypatch, written(tmp_path, idle_after_minutes=20))
    assert c.AgentSamples.idle_minutes == 20 and "cull_after_minutes" not in c.AgentSamples
    services = c.JupyterHub.get("services", [])
    assert all(s["name"] != CULLER_SERVICE for s in services)
    assert all(r["name"] != CULLER_ROLE for r in c.JupyterHub.load_roles)
