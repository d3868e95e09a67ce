"""The slice a profile entry asks for when no hub policy decides (spawner.slices): one GPU
type, several, or any with a minimum of memory, as kubespawner_profile_list writes them."""

from __future__ import annotations

from fractions import Fraction

import pytest

from hub_config.access import kubespawner_profile_list
from hub_config.loader import load_config
from hub_config.model import GpuBlock
from spawner.slices import SliceRefused, decision_from_profile

from ..hub_config.test_loader import example, profile_index, write
from ..hub_config.test_spawn_form import CONFIG, QUARTER, several_types_config

MEMORY = {"T4": 15360, "V100": 16384, "A10": 24576}


def entry(gpu: GpuBlock) -> dict:
    config = several_types_config(gpu)
    return next(e for e in kubespawner_profile_list(config.profiles) if e["slug"] == QUARTER)


def test_one_type_as_before() -> None:
    [quarter] = [e for e in kubespawner_profile_list(CONFIG.profiles) if e["slug"] == QUARTER]
    request = decision_from_profile(quarter).request
    assert (request.gpu_type, request.fraction) == ("RTX3090", Fraction(1, 4))


def test_several_types_and_any() -> None:
    several = decision_from_profile(entry(GpuBlock(Fraction(1, 4), ("V100", "A10")))).request
    assert several.gpu_type is None and several.allowed_types == {"V100", "A10"}
    anything = decision_from_profile(entry(GpuBlock(Fraction(1, 2), None))).request
    assert anything.gpu_type is None and anything.allowed_types is None


def test_min_memory_keeps_the_types_with_enough() -> None:
    profile = entry(GpuBlock(Fraction(1, 4), None, min_memory_mib=16384))
    request = decision_from_profile(profile, {}, MEMORY).request
    assert request.allowed_types == {"V100", "A10"}
    one = decision_from_profile(
        entry(GpuBlock(Fraction(1, 4), ("T4", "A10"), min_memory_mib=16384)), {}, MEMORY
    )
    assert one.request.gpu_type == "A10"
    with pytest.raises(SliceRefused) as info:
        decision_from_profile(profile, {}, {"T4": 15360})
    assert "needs any GPU with 16 GiB or more" in str(info.value)


def test_a_choice_may_accept_any_type(tmp_path) -> None:
    data = example()
    i = profile_index(data, "pytorch-a100")
    choices = data["profiles"][i]["profile_options"]["storage"]["choices"]
    choices["large"]["gpu"] = {"fraction": 1, "types": ["A100", "H100"]}
    config = load_config(write(tmp_path, data))
    [a100] = [e for e in kubespawner_profile_list(config.profiles) if e["slug"] == "pytorch-a100"]
    assert decision_from_profile(a100, {"storage": "small"}).request.gpu_type == "A100"
    large = decision_from_profile(a100, {"storage": "large"}).request
    assert large.allowed_types == {"A100", "H100"}
