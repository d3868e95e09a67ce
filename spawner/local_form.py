"""The single-machine hub's spawn form: the same profiles as on Kubernetes, as radio buttons."""

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
      <input type="radio" name="profile" value="{slug}"{checked}>
      <strong>{name}</strong>{description}
    </label>
  </div>"""


def render_profile_form(profiles: list[dict], selected: str | None = None) -> str:
    """HTML for JupyterHub's spawn page; ``selected`` (a slug) or the default is pre-checked."""
    if not profiles:
        return ""
    chosen = selected if any(p["slug"] == selected for p in profiles) else None
    if chosen is None:
        chosen = next((p["slug"] for p in profiles if p.get("default")), profiles[0]["slug"])
    items = []
    for profile in profiles:
        description = profile.get("description") or ""
        items.append(
            ITEM_TEMPLATE.format(
                slug=escape(profile["slug"], quote=True),
                checked=" checked" if profile["slug"] == chosen else "",
                name=escape(profile.get("display_name") or profile["slug"]),
                description=f"<br><span>{escape(description)}</span>" if description else "",
            )
        )
    return FORM_TEMPLATE.format(items="\n".join(items))


def profile_from_form(formdata: dict[str, list[str]]) -> dict[str, str]:
    """``user_options`` from the submitted form: just the chosen profile's slug."""
    values = formdata.get("profile") or []
    return {"profile": values[0]} if values and values[0] else {}
