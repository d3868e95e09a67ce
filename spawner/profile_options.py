"""KubeSpawner's ``profile_options`` rules that the hub and the spawners share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def chosen(profile_options: Mapping[str, Any], option: str, user_options: Mapping[str, Any]) -> Any:
    """The choice of ``option`` a spawn with ``user_options`` gets: none when the user typed
    in a value (``<option>--unlisted-choice``), else the user's, else the one marked default,
    else the first (KubeSpawner's rules)."""
    if user_options.get(f"{option}--unlisted-choice"):
        return None
    if user_options.get(option):
        return user_options[option]
    choices = (profile_options.get(option) or {}).get("choices") or {}
    marked = [key for key, choice in choices.items() if (choice or {}).get("default")]
    return marked[0] if marked else next(iter(choices), None)
