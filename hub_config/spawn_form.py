"""The spawn form of both spawners: each profile with what this user could start now.

One template (``templates/ai-console-spawn-form.html``, autoescaped) for the Kubernetes and the
single-machine hub. A GPU profile with none free now is shown, with the reason, but cannot be
chosen; a profile that fits several of the user's projects asks which one to charge; an inline
script refreshes the counts from ``GET /hub/api/ai-console/spawn-options``
(:mod:`hub_config.spawn_options_api`). The hub re-checks every spawn, so the form only guides.

The project choice is submitted as ``profile-option-<slug>--project``
(:func:`spawner.local_form.project_field`): KubeSpawner's form parser reads it into
``user_options["project"]`` as it does any profile option, and so does the local spawner's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader

from spawner.local_form import project_field
from spawner.manager import GPUSliceManager
from spawner.profile_options import chosen

from . import spawn_texts as texts
from .availability import ProfileAvailability, availability_for
from .model import AiConsoleConfig, Profile
from .page_texts import request_translator

TEMPLATES = Path(__file__).resolve().parent / "templates"
FORM_TEMPLATE = "ai-console-spawn-form.html"
#: How often an open spawn form asks for fresh counts.
POLL_SECONDS = 5
UNLISTED = "unlisted-choice"

_templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)


async def current_availability(
    config: AiConsoleConfig,
    user: str,
    groups: Iterable[str],
    manager: GPUSliceManager,
    chosen_options: Mapping[str, Any] | None = None,
) -> list[ProfileAvailability]:
    """:func:`~hub_config.availability.availability_for` with the hub's allocator now."""
    capacity = await manager.capacity()
    memory = await manager.memory_by_type()
    return availability_for(
        config, user, groups, capacity, manager.in_use_by_project, chosen_options, memory
    )


def checked_profile(
    spots: Sequence[ProfileAvailability], user_options: Mapping[str, Any]
) -> str | None:
    """The profile the form preselects: the user's last one, else the default, else the first,
    among those that can start now (none when none can)."""
    open_ = [s.profile for s in spots if not s.disabled]
    slugs = [p.slug for p in open_]
    if user_options.get("profile") in slugs:
        return user_options["profile"]
    default = next((p.slug for p in open_ if p.default), None)
    return default or (slugs[0] if slugs else None)


def render_spawn_form(
    spots: Sequence[ProfileAvailability],
    user: str,
    user_options: Mapping[str, Any] | None = None,
    with_options: bool = False,
    translate: texts.Translate = texts.english,
) -> str:
    """The form's HTML. ``with_options``: show the profiles' ``profile_options`` (KubeSpawner
    applies them; the local spawner does not); our texts said by ``translate``."""
    if not spots:
        return ""
    user_options = dict(user_options or {})

    def mine(profile: Profile) -> Mapping[str, Any]:
        return user_options if user_options.get("profile") == profile.slug else {}

    def option_choice(profile: Profile, key: str) -> Any:
        if mine(profile).get(f"{key}--{UNLISTED}"):
            return UNLISTED
        return chosen(profile.profile_options, key, mine(profile))

    def unlisted_value(profile: Profile, key: str) -> str:
        return str(mine(profile).get(f"{key}--{UNLISTED}") or "")

    return _templates.get_template(FORM_TEMPLATE).render(
        spots=spots,
        user=user,
        checked=checked_profile(spots, user_options),
        with_options=with_options,
        poll_seconds=POLL_SECONDS,
        texts=texts,
        t=translate,
        say=lambda text: texts.say(text, translate),
        project_field=project_field,
        option_choice=option_choice,
        unlisted_value=unlisted_value,
    )


def make_options_form(config: AiConsoleConfig, with_options: bool = False):
    """The spawner's ``options_form``: a callable JupyterHub awaits for each spawn page."""

    async def options_form(spawner: Any) -> str:
        groups = [group.name for group in spawner.user.groups]
        manager = GPUSliceManager.instance(config=spawner.config)
        options = spawner.user_options or {}
        spots = await current_availability(config, spawner.user.name, groups, manager, options)
        # In the language of the browser asking for the spawn page.
        translate = request_translator(getattr(spawner, "handler", None))
        return render_spawn_form(spots, spawner.user.name, options, with_options, translate)

    return options_form
