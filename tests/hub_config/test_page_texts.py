"""Every text of the hub pages we add has its zh-TW translation, with the same placeholders."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest

from hub_config import spawn_texts
from hub_config.access import SpawnRefused, check_spawn
from hub_config.loader import EXAMPLE, load_config
from hub_config.page_texts import catalogues, language_of, translator

TEMPLATES = Path(__file__).resolve().parents[2] / "hub_config" / "templates"
#: An element marked for translation, and its (English) text.
MARKED = re.compile(r"<(\w+)[^>]*\bdata-i18n\b[^>]*>([^<]*)</\1>")
#: A script's call of the translator with a literal text.
CALLED = re.compile(r"""\bt\(\s*(["'])((?:(?!\1).)+)\1""", re.S)
PLACEHOLDER = re.compile(r"\{(\w+)(?:![rs])?\}")


def english_texts() -> set[str]:
    """The texts the templates mark or translate."""
    found: set[str] = set()
    for template in TEMPLATES.rglob("*.html"):
        source = template.read_text(encoding="utf-8")
        for _, text in MARKED.findall(source):
            text = text.strip()
            if "{{" in text:  # a Jinja expression: its values are listed in it
                found.update(re.findall(r'"([^"]+)"', text))
            elif text:
                found.add(text)
        found.update(text for _, text in CALLED.findall(source))
    # Owner kinds the console script translates by value; the texts the hub translates.
    return (
        found | {"notebook", "job"} | set(spawn_texts.FORM_TEXTS) | set(spawn_texts.REFUSAL_TEXTS)
    )


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


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("zh-TW,zh;q=0.9,en-US;q=0.8", "zh-TW"),
        ("zh-Hant-HK", "zh-TW"),
        ("en-US,zh-TW;q=0.9", "en"),
        ("fr-FR,zh-TW;q=0.5", "zh-TW"),  # no French: the next we have
        ("en;q=0.1,zh-HK;q=0.8", "zh-TW"),  # by quality, not by order
        ("zh-CN,zh;q=0.9", "en"),  # Simplified Chinese is not offered Traditional
        ("zh-TW;q=0", "en"),
        ("", "en"),
        (None, "en"),
        ("zh-TW;q=oops", "en"),
    ],
)
def test_the_language_follows_the_browsers_preferences(header, language) -> None:
    assert language_of(header) == language


def test_the_spawn_forms_reasons_are_said_in_the_readers_language() -> None:
    reason = spawn_texts.quota_reason("course", Fraction(1, 2), Fraction(1, 2), Fraction(1, 4))
    note = spawn_texts.free_note(0, reason)
    assert note == "none free now: course quota used: 1/2 of 1/2 GPU"
    assert note.render(translator("zh-TW")) == "目前無可用：課程配額已用 1/2 GPU 中的 1/2"
    taken = spawn_texts.hardware_reason(Fraction(1), "A100", known_type=True)
    several = spawn_texts.each_project([("CS 101", reason), ("Vision Lab", taken)])
    assert several.render(translator("zh-TW")) == (
        "CS 101：課程配額已用 1/2 GPU 中的 1/2; Vision Lab：所有 A100 GPU 都已被使用"
    )
    assert str(several).endswith("; Vision Lab: all A100 GPUs are taken")


def test_a_refusal_is_said_in_the_readers_language() -> None:
    config = load_config(EXAMPLE)
    with pytest.raises(SpawnRefused) as refused:
        check_spawn(config, "student1", [], "pytorch-quarter-3090", None, lambda _: Fraction(2))
    english = refused.value.reason
    assert english.startswith("Intro to Deep Learning already uses 2 of its 2 GPUs; ")
    assert spawn_texts.say(english, translator("zh-TW")) == (
        "Intro to Deep Learning 已使用其 2 GPU 中的 2；"
        "請停止您的一個伺服器或工作，或向其課程管理員申請更多配額。"
    )
