"""The single-machine hub's spawn form fields, and a plain form for a spawner without the hub
configuration (which renders the full form: hub_config.spawn_form)."""

from __future__ import annotations

from html import escape

FORM_TEMPLATE = """
<div class="ai-console-profiles">
  <p>Choose what your server runs on:</p>
{items}
</div>
"""
ITEM_TEMPLATE = """  <div class="radio">
    <label>
      <input type="radio" name="profile" value="{slug}"{checked}{disabled}>
      <strong>{name}</strong>{description}
    </label>
  </div>"""


def project_field(profile_slug: str) -> str:
    """The form field naming the project a profile is charged to. KubeSpawner's name for a
    profile option, so its own form parser puts the choice into ``user_options["project"]``
    as it does for any option (and ignores it when applying options: no such option exists)."""
    return f"profile-option-{profile_slug}--project"


def _none_free(profile: dict) -> bool:
    return (profile.get("ai_console") or {}).get("free_now") == 0


def render_profile_form(profiles: list[dict], selected: str | None = None) -> str:
    """HTML for JupyterHub's spawn page; ``selected`` (a slug) or the default is pre-checked.
    A GPU profile with none free now is shown but cannot be chosen."""
    if not profiles:
        return ""
    open_ = [p for p in profiles if not _none_free(p)]
    chosen = selected if any(p["slug"] == selected for p in open_) else None
    if chosen is None and open_:
        chosen = next((p["slug"] for p in open_ if p.get("default")), open_[0]["slug"])
    items = []
    for profile in profiles:
        description = profile.get("description") or ""
        items.append(
            ITEM_TEMPLATE.format(
                slug=escape(profile["slug"], quote=True),
                checked=" checked" if profile["slug"] == chosen else "",
                disabled=" disabled" if _none_free(profile) else "",
                name=escape(profile.get("display_name") or profile["slug"]),
                description=f"<br><span>{escape(description)}</span>" if description else "",
            )
        )
    return FORM_TEMPLATE.format(items="\n".join(items))


def profile_from_form(formdata: dict[str, list[str]]) -> dict[str, str]:
    """``user_options`` from the submitted form (or ``/hub/spawn?profile=...`` query): the
    chosen profile's slug and, when given, the project to charge it to."""
    values = formdata.get("profile") or []
    if not values or not values[0]:
        return {}
    slug = values[0]
    options = {"profile": slug}
    project = (formdata.get(project_field(slug)) or formdata.get("project") or [""])[0]
    if project:
        options["project"] = project
    return options
