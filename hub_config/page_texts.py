"""Translations of the hub pages' own texts (the AI Console page, the home page's slices, the
navigation links and the spawn form), chosen in the browser by its preferred languages.

JupyterHub renders its pages without a language of its own and passes templates only the user,
so the catalogues go to every page (``c.JupyterHub.template_vars``) and ``page.html``'s script
translates: elements marked ``data-i18n`` by their English text, scripts through
``aiConsoleT(text, values)``. The English text is the key (as gettext's msgid), so a missing
translation shows English, never a key. ``locale/<language>.json`` holds one catalogue each.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LOCALE = Path(__file__).resolve().parent / "locale"
#: The template variable with the catalogues (c.JupyterHub.template_vars).
TEXTS_VAR = "ai_console_texts"


@cache
def catalogues() -> dict[str, dict[str, str]]:
    """Language tag (``zh-TW``) -> English text -> its translation."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(LOCALE.glob("*.json"))
    }
