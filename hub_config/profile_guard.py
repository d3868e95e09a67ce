"""Stop the hub at start when Python config replaces the profiles of ``ai-console.yaml``.

A z2jh admin's ``hub.extraConfig`` (or a line added to ``jupyterhub_config.py``) that sets
``c.KubeSpawner.profile_list`` after :func:`hub_config.hub.configure` would silently replace the
per-user list the YAML builds: spawns would then be refused by the hub's check, or a GPU profile
would start with no GPU. The config sections holding our list are swapped for ones that refuse
any other ``profile_list`` while the config file is being read, so the hub stops with a message
saying where the list belongs.
"""

from __future__ import annotations

import sys
from typing import Any

from traitlets.config import Config

#: Set on the profile_list callables :func:`hub_config.hub.make_profile_list` builds.
MARK = "_ai_console_profile_list"

MESSAGE = (
    "c.{section}.profile_list is set after AI Console's configure(c) (in hub.extraConfig or "
    "jupyterhub_config.py); it would replace the profiles of ai-console.yaml, and spawns would "
    "be refused or GPU profiles start without a GPU. Move the list under profiles: in "
    "ai-console.yaml (AI_CONSOLE_CONFIG), where a z2jh profileList loads unchanged (README: "
    "Coming from z2jh)."
)


def mark(profile_list: Any) -> Any:
    """Mark a profile_list callable as the one built from the YAML."""
    setattr(profile_list, MARK, True)
    return profile_list


class _GuardedSection(Config):
    """A config section whose ``profile_list`` may only be ours."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "profile_list" and not getattr(value, MARK, False):
            sys.exit(MESSAGE.format(section=getattr(self, "_section", "KubeSpawner")))
        super().__setitem__(key, value)


def guard(c: Config, *sections: str) -> None:
    """From now on, refuse a profile_list in ``sections`` of ``c`` that is not ours."""
    for name in sections:
        guarded = _GuardedSection()
        dict.update(guarded, c[name])  # keep what is there, without re-checking it
        # An attribute, not a key: every key of a section is read as a setting.
        object.__setattr__(guarded, "_section", name)
        c[name] = guarded
