"""ai-console.yaml that is wrong in the ways the review found, or in random ways: always a
ConfigError naming the field, quickly; never a traceback, a hang or a late failure."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub_config.loader import EXAMPLE, MAX_DEPTH, ConfigError, load_config, parse_config

EXAMPLE_DATA: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
PROFILE = "profiles[1]"  # pytorch-quarter-3090, a profile with projects


def load_text(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ai-console.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.monotonic() - started < 5, "refusing a file must not take long"
    return str(info.value)


def with_profile(**changes: Any) -> str:
    data = copy.deepcopy(EXAMPLE_DATA)
    data["profiles"][1].update(changes)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"image": ["pytorch"]}, f"{PROFILE}.image", "got ['pytorch']"),
        ({"cpu": {"guarantee": math.inf}}, f"{PROFILE}.cpu.guarantee", "between 0 and 1024"),
        ({"cpu": {"guarantee": math.nan, "limit": 2}}, f"{PROFILE}.cpu.guarantee", "nan"),
        ({"memory": {"limit": "99999999999999T"}}, f"{PROFILE}.memory.limit", "at most 64Ti"),
        (
            {"gpu": {"fraction": "1/4", "type": "RTX3090", "memory_mib": 10**30}},
            f"{PROFILE}.gpu.memory_mib",
            "between 1 and",
        ),
        (
            {"profile_options": {"storage": {}}},
            f"{PROFILE}.profile_options.storage",
            "display_name",
        ),
        (
            {"profile_options": {'x" onclick="y': {"display_name": "X", "choices": {"a": {}}}}},
            f"{PROFILE}.profile_options",
            "",
        ),
    ],
)
def test_each_mistake_the_review_found_names_its_field(tmp_path, changes, field, words):
    message = load_text(tmp_path, with_profile(**changes))
    assert field in message and words in message, message


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ({"extra_container_config": {"image": "evil"}}, "extra_container_config", "image"),
        ({"extra_pod_config": {"hostPID": True}}, "extra_pod_config", "host's PIDs"),
        ({"privileged": True}, "privileged", "never run privileged"),
        ({"uid": 0}, "uid", "root"),
        ({"automount_service_account_token": True}, "automount_service_account_token", "no"),
        ({"service_account": "default"}, "service_account", "credentials"),
        (
            {"extra_containers": [{"name": "s", "env": [{"name": "NVIDIA_VISIBLE_DEVICES"}]}]},
            "extra_containers",
            "sidecar",
        ),
        ({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}, "volumes[0].hostPath", "host"),
        (
            {"extra_annotations": {"ai-console/allocation": "forged"}},
            'extra_annotations["ai-console/allocation"]',
            "ledger",
        ),
        ({"imagee": "typo"}, "imagee", "allowed: image, node_selector"),
    ],
)
def test_overrides_that_get_around_the_platform_are_refused_by_name(
    tmp_path, override, field, words
):
    message = load_text(tmp_path, with_profile(kubespawner_override=override))
    assert f"{PROFILE}.kubespawner_override.{field}: not allowed here" in message, message
    assert words in message, message


def test_the_same_rules_hold_in_a_choice_of_profile_options(tmp_path):
    option = {
        "display_name": "Mode",
        "choices": {"root": {"display_name": "Root", "kubespawner_override": {"uid": 0}}},
    }
    message = load_text(tmp_path, with_profile(profile_options={"mode": option}))
    assert f"{PROFILE}.profile_options.mode.choices.root.kubespawner_override.uid" in message


def test_deep_nesting_is_refused_by_depth_not_by_the_interpreter(tmp_path):
    message = load_text(tmp_path, "profiles: " + "[" * 1500 + "]" * 1500 + "\n")
    assert f"nested more than {MAX_DEPTH} levels deep" in message


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for name, prev in zip("bcdefgh", "abcdefg", strict=True):
        lines.append(f"x-{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    lines.append("profiles: [*h]")
    message = load_text(tmp_path, "\n".join(lines) + "\n")
    assert "expands to more than" in message


def test_merge_keys_merge_and_top_level_x_keys_hold_anchors(tmp_path):
    """`<<:` works as YAML says (later keys win), with anchors kept under x- keys."""
    data = copy.deepcopy(EXAMPLE_DATA)
    text = yaml.safe_dump(data, sort_keys=False)
    text = "x-common: &common {image: pytorch, projects: [cs101]}\n" + text.replace(
        "profiles:\n",
        "profiles:\n- <<: *common\n  display_name: Merged\n  slug: merged\n  image: scipy\n",
        1,
    )
    path = tmp_path / "ai-console.yaml"
    path.write_text(text)
    merged = next(p for p in load_config(path).profiles if p.slug == "merged")
    assert merged.image.key == "scipy" and merged.projects == ("cs101",)


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
PLACES = [
    ("profiles", 1, "image"),
    ("profiles", 1, "cpu"),
    ("profiles", 1, "memory"),
    ("profiles", 1, "gpu"),
    ("profiles", 1, "profile_options"),
    ("profiles", 1, "kubespawner_override"),
    ("projects", "cs101", "members"),
    ("projects", "cs101", "gpu_quota"),
    ("projects", "cs101", "images"),
    ("flavors", 0, "cpu"),
    ("flavors", 0, "gpu"),
    ("images", "pytorch"),
    ("settings",),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), value=values)
def test_any_value_anywhere_is_accepted_or_refused_cleanly(place, value):
    data = copy.deepcopy(EXAMPLE_DATA)
    target = data
    for key in place[:-1]:
        target = target[key]
    target[place[-1]] = value
    try:
        parse_config(data)
    except ConfigError as err:
        assert str(err)  # a message, naming something
