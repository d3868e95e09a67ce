"""Translations of the hub pages' own texts (the AI Console page, the home page's slices, the
navigation links and the spawn form), chosen by the browser's preferred languages.

JupyterHub renders its pages without a language of its own and passes templates only the user,
so the catalogues go to every page (``c.JupyterHub.template_vars``) and ``page.html``'s script
translates: elements marked ``data-i18n`` by their English text, scripts through
``aiConsoleT(text, values)``. Texts the hub writes for one request (the spawn form, its counts
and reasons, spawn refusals) are translated on the hub instead, by the request's
``Accept-Language`` (:func:`translator`). The English text is the key (as gettext's msgid), so
a missing translation shows English, never a key. ``locale/<language>.json`` holds one
catalogue each.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

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


def language_of(accept_language: str | None) -> str:
    """The language to answer in for an ``Accept-Language`` header, by the rule page.html's
    script applies to the browser's languages: the first preferred that is Traditional
    Chinese (``zh-TW``, ``zh-HK``, ``zh-MO``, ``zh-Hant``) or English; English otherwise."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, position, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag.startswith(("zh-tw", "zh-hk", "zh-mo", "zh-hant")) and "zh-TW" in catalogues():
            return "zh-TW"
        if tag.startswith("en"):
            break
    return "en"


def translator(accept_language: str | None) -> Callable[[str], str]:
    """English text -> the text in the language :func:`language_of` picks (English where the
    catalogue has none)."""
    texts = catalogues().get(language_of(accept_language), {})
    return lambda english: texts.get(english, english)


def request_translator(handler: Any) -> Callable[[str], str]:
    """:func:`translator` for the request a handler serves (None, or no request: English).
    JupyterHub hands spawners the handler of the spawn page and of the spawn itself."""
    request = getattr(handler, "request", None)
    headers = getattr(request, "headers", None) or {}
    return translator(headers.get("Accept-Language"))
