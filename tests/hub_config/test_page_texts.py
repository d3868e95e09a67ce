"""Every text of the hub pages we add has its zh-TW translation, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

from hub_config import spawn_texts
from hub_config.page_texts import catalogues

TEMPLATES = Path(__file__).resolve().parents[2] / "hub_config" / "templates"
#: An element marked for translation, and its (English) text.
MARKED = re.compile(r"<(\w+)[^>]*\bdata-i18n\b[^>]*>([^<]*)</\1>")
#: A script's call of the translator with a literal text.
CALLED = re.compile(r"""\bt\(\s*(["'])((?:(?!\1).)+)\1""", re.S)
SPAWN_TEXT = re.compile(r"\{\{ texts\.(\w+) \}\}")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def english_texts() -> set[str]:
    """The texts the templates mark or translate."""
    found: set[str] = set()
    for template in TEMPLATES.rglob("*.html"):
        source = template.read_text(encoding="utf-8")
        for _, text in MARKED.findall(source):
            text = text.strip()
            constant = SPAWN_TEXT.fullmatch(text)
            if constant:  # the spawn form's texts, from hub_config.spawn_texts
                found.add(getattr(spawn_texts, constant.group(1)))
            elif "{{" in text:  # a Jinja expression: its values are listed in it
                found.update(re.findall(r'"([^"]+)"', text))
            elif text:
                found.add(text)
        found.update(text for _, text in CALLED.findall(source))
    # Owner kinds the console script translates by value.
    return found | {"notebook", "job"}


def test_every_marked_text_has_a_traditional_chinese_translation() -> None:
    zh = catalogues()["zh-TW"]
    texts = english_texts()
    assert len(texts) > 40  # the extraction finds the pages' texts, not nothing
    missing = sorted(texts - zh.keys())
    assert not missing, missing
    unused = sorted(zh.keys() - texts)
    assert not unused, unused


def test_translations_keep_their_placeholders() -> None:
    for english, chinese in catalogues()["zh-TW"].items():
        assert set(PLACEHOLDER.findall(english)) == set(PLACEHOLDER.findall(chinese)), english
        assert chinese.strip() and chinese != english, english
