"""ai-console.yaml: one test per class of mistake, each checking file, field path and allowed."""

from __future__ import annotations

import copy
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gpu_fraction.errors import AllocationRefused
from hub_config.loader import EXAMPLE, ConfigError, derive_slug, load_config, parse_config
from hub_config.schema import SCHEMA

EXAMPLE_DATA: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())


def example() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE_DATA)


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "ai-console.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def errors_of(tmp_path: Path, data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    message = str(info.value)
    # Every line names the file, so each can be read on its own.
    for line in message.splitlines():
        assert line.startswith(str(tmp_path / "ai-console.yaml") + ": "), line
    return message


def profile_index(data: dict, slug: str) -> int:
    return next(i for i, p in enumerate(data["profiles"]) if p.get("slug") == slug)


# --- the example ------------------------------------------------------------------------------


def test_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert set(config.projects) == {"cs101", "vision-lab"}
    assert config.platform_admins == {"admin"}
    assert config.settings.allocator_policy == "binpack"
    cs101 = config.projects["cs101"]
    assert cs101.gpu_quota == 2 and cs101.admins == {"teacher"} and cs101.kind == "course"
    assert config.projects["vision-lab"].kind == "lab"
    quarter = config.profile("pytorch-quarter-3090")
    assert quarter is not None and quarter.default
    assert quarter.gpu is not None and quarter.gpu.fraction == Fraction(1, 4)
    assert quarter.image.image == "quay.io/jupyter/pytorch-notebook:cuda12-latest"
    cpu = config.profile("cpu-only")
    assert cpu is not None and cpu.gpu is None and cpu.projects is None
    tf = config.profile("tensorflow-quarter-3090")
    assert tf is not None and tf.gpu is not None and tf.gpu.fraction == Fraction(1, 4)  # 0.25
    a100 = config.profile("pytorch-a100")
    assert a100 is not None and a100.projects == ("vision-lab",)
    # Several GPU types, or any with a least amount of memory (a choice of the profile).
    anyone = config.profile("pytorch-any-gpu")
    assert anyone is not None and anyone.gpu.gpu_types == ("RTX3090", "A100")
    large = anyone.gpu_for({"size": "large-memory"})
    assert large.gpu_types is None and large.min_memory_mib == 40 * 1024
    flavor = config.flavor("8C-32G-1/2GPU-40G")
    assert flavor.gpu.gpu_types is None and flavor.gpu.min_memory_mib == 40 * 1024


def test_example_matches_schema_and_every_property_is_documented() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(EXAMPLE_DATA, SCHEMA)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and node.get("additionalProperties") is not False:
                # Only maps keyed by name and the pass-through dicts may take any key.
                assert (
                    where.endswith(
                        ("images", "projects", "kubespawner_override", "profile_options", "]")
                    )
                    or "profile_options" in where
                ), where
            for name, prop in node.get("properties", {}).items():
                assert prop.get("description"), f"{where}.{name} has no description"
                walk(prop, f"{where}.{name}")
            for key in ("items", "additionalProperties"):
                if isinstance(node.get(key), dict):
                    walk(node[key], f"{where}[]")

    walk(SCHEMA, "")


def test_slice_request_from_profile() -> None:
    config = load_config(EXAMPLE)
    quarter = config.profile("pytorch-quarter-3090")
    assert quarter is not None
    request = quarter.slice_request()
    assert request is not None
    assert (request.gpu_type, request.fraction, request.memory_mib) == (
        "RTX3090",
        Fraction(1, 4),
        6144,
    )
    assert (request.compute_min, request.compute_max) == (25, 100)
    assert request.cpu_millis == 1000 and request.host_memory_mib == 2048
    assert quarter.gpu is not None
    assert quarter.gpu.slice_request(node="gpu-01").node == "gpu-01"
    cpu_only = config.profile("cpu-only")
    assert cpu_only is not None and cpu_only.slice_request() is None


def test_derived_slug() -> None:
    data = example()
    del data["profiles"][1]["slug"]
    config = parse_config(data, "x.yaml")
    assert config.profiles[1].slug == "pytorch-1-4-rtx-3090"
    assert derive_slug("  PyTorch, 1/4 RTX 3090!! ") == "pytorch-1-4-rtx-3090"


def test_kubernetes_memory_spelling_is_normalised_for_kubespawner() -> None:
    data = example()
    data["profiles"][0]["memory"] = {"guarantee": "1Gi", "limit": 4294967296}
    config = parse_config(data)
    assert (config.profiles[0].mem_guarantee, config.profiles[0].mem_limit) == ("1G", 4294967296)


# --- file-level mistakes ----------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: file not found; create it"):
        load_config(tmp_path / "nowhere.yaml")


def test_empty_file(tmp_path: Path) -> None:
    message = errors_of(tmp_path, "# only a comment\n")
    assert "the file is empty" in message and "images, projects and profiles" in message


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    message = errors_of(tmp_path, "- a\n- b\n")
    assert "the top level must be a mapping" in message and "got list" in message


def test_yaml_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    text = "images:\n  pytorch:\n    display_name: [unclosed\nprofiles: []\n"
    message = errors_of(tmp_path, text)
    assert "YAML syntax error" in message
    assert "line 4, column 9" in message


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("  vision-lab:", "  cs101:")
    message = errors_of(tmp_path, text)
    assert "duplicate key 'cs101'" in message and "line " in message


# --- schema mistakes --------------------------------------------------------------------------


def test_unknown_profile_key_is_a_warning_with_the_key_meant(tmp_path: Path) -> None:
    data = example()
    data["profiles"][1]["gpus"] = 1
    data["profiles"][2]["x_owner"] = "alice"
    config = load_config(write(tmp_path, data))
    where = f"{tmp_path / 'ai-console.yaml'}: profiles"
    assert f"{where}[1].gpus: ignored (not a profile setting); did you mean gpu?" in (
        config.warnings
    )
    (owner,) = [w for w in config.warnings if "x_owner" in w]
    assert "known keys: display_name, slug, description" in owner


def test_unknown_top_level_key(tmp_path: Path) -> None:
    data = example()
    data["profile"] = []
    message = errors_of(tmp_path, data)
    assert ": profile: unknown key; allowed keys here are: platform_admins, settings" in message


def test_wrong_type(tmp_path: Path) -> None:
    data = example()
    data["projects"]["cs101"]["members"]["users"] = "student1"
    data["profiles"][0]["default"] = "yes"
    message = errors_of(tmp_path, data)
    assert "projects.cs101.members.users: expected a list of user names, got 'student1'" in message
    assert "profiles[0].default: expected true or false, got 'yes'" in message


def test_missing_required_field(tmp_path: Path) -> None:
    data = example()
    del data["profiles"][2]["display_name"]
    del data["images"]["scipy"]["display_name"]
    message = errors_of(tmp_path, data)
    assert "profiles[2].display_name: missing required field; expected a non-empty" in message
    assert "images.scipy.display_name: missing required field" in message


def test_bad_enum_and_slug(tmp_path: Path) -> None:
    data = example()
    data["projects"]["cs101"]["kind"] = "class"
    data["settings"]["allocator_policy"] = "random"
    data["projects"]["Vision_Lab"] = data["projects"].pop("vision-lab")
    message = errors_of(tmp_path, data)
    assert "projects.cs101.kind: expected one of course, lab, got 'class'" in message
    assert "settings.allocator_policy: expected one of binpack, spread, got 'random'" in message
    assert "projects.Vision_Lab: not a valid key: expected a lowercase name" in message


# --- gpu block --------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", ["5/4", "0", "-1/4", 9, "quarter", 1.5])
def test_bad_fraction(tmp_path: Path, fraction: Any) -> None:
    data = example()
    data["profiles"][2]["gpu"]["fraction"] = fraction
    message = errors_of(tmp_path, data)
    assert (
        f"ai-console.yaml: profiles[2].gpu.fraction: expected a fraction like 1/4 or 0.25, "
        f"or a whole number 1..8, got {fraction!r}" in message
    )


def test_bad_gpu_type(tmp_path: Path) -> None:
    data = example()
    data["profiles"][1]["gpu"]["type"] = "RTX 3090"
    message = errors_of(tmp_path, data)
    assert "profiles[1].gpu.type: a GPU type is 1-63 letters, digits, '.', '_' or '-'" in message
    assert "'RTX 3090'" in message


def test_gpu_numbers(tmp_path: Path) -> None:
    data = example()
    data["profiles"][1]["gpu"]["compute_max"] = 150
    data["profiles"][2]["gpu"].update(compute_min=60, compute_max=50)
    i = profile_index(data, "pytorch-a100")
    data["profiles"][i]["gpu"]["memory_mib"] = 40000  # whole GPUs get all their memory
    message = errors_of(tmp_path, data)
    assert "profiles[1].gpu.compute_max: expected a whole percentage 1..100, got 150" in message
    assert "profiles[2].gpu.compute_min: guaranteed compute 60% is above the burst maximum" in (
        message
    )
    assert f"profiles[{i}].gpu.memory_mib: whole-GPU requests get all of each GPU's memory" in (
        message
    )


def test_gpu_blocks_accept_several_types_or_any_with_a_minimum_of_memory(tmp_path: Path) -> None:
    data = example()
    data["profiles"][1]["gpu"] = {"fraction": "1/4", "types": ["V100", "A10"]}
    data["profiles"][2]["gpu"] = {"fraction": "1/4", "type": "any", "min_memory": "16GiB"}
    i = profile_index(data, "pytorch-a100")
    choices = data["profiles"][i]["profile_options"]["storage"]["choices"]
    choices["large"]["gpu"] = {"fraction": 1, "type": "any"}
    config = load_config(write(tmp_path, data))
    several, anything = config.profiles[1].gpu, config.profiles[2].gpu
    assert several is not None and several.gpu_types == ("V100", "A10")
    assert several.gpu_type is None and several.min_memory_mib is None
    request = config.profiles[1].slice_request()
    assert request is not None and request.gpu_type is None
    assert request.allowed_types == {"V100", "A10"}
    assert anything is not None and anything.gpu_types is None
    assert anything.min_memory_mib == 16 * 1024
    assert config.profiles[i].gpu_choices["storage"]["large"].gpu_types is None
    # One type, as before.
    assert config.profile("pytorch-a100").gpu.gpu_types == ("A100",)
    # min_memory is resolved against the GPUs the allocator knows when the request is made.
    memory = {"T4": 15360, "V100": 16384, "A10": 24576}
    assert anything.slice_request(memory).allowed_types == {"V100", "A10"}
    assert anything.slice_request({"T4": 15360, "A10": 24576}).gpu_type == "A10"
    with pytest.raises(ValueError, match="needs the GPU inventory"):
        anything.slice_request()
    with pytest.raises(AllocationRefused) as info:
        anything.slice_request({"T4": 15360})
    assert info.value.reason == (
        "This needs 1/4 of any GPU (16 GiB or more), and this hub has no such GPU (its GPUs: "
        "T4 15 GiB); pick another profile, or ask a platform admin."
    )
    assert str(several.describe()) == "1/4 of V100 or A10"
    assert as_dicts(config) == [
        {"fraction": "1/4", "types": ["V100", "A10"]},
        {"fraction": "1/4", "type": "any", "min_memory_mib": 16384},
    ]


def as_dicts(config: Any) -> list[dict]:
    return [config.profiles[1].gpu.as_dict(), config.profiles[2].gpu.as_dict()]


@pytest.mark.parametrize("spelling", ["16GiB", "16Gi", "16G", "16GB", "16384M", 16 << 30])
def test_min_memory_spellings(tmp_path: Path, spelling: Any) -> None:
    data = example()
    data["profiles"][1]["gpu"] = {"fraction": "1/4", "type": "any", "min_memory": spelling}
    assert load_config(write(tmp_path, data)).profiles[1].gpu.min_memory_mib == 16384


@pytest.mark.parametrize(
    ("gpu", "where", "words"),
    [
        ({"fraction": "1/4", "types": []}, "gpu.types", "a non-empty list of GPU types"),
        (
            {"fraction": "1/4", "types": ["V100", "A10", "V100"]},
            "gpu.types[2]",
            "V100 is already listed as types[0]; list each once",
        ),
        (
            {"fraction": "1/4", "type": "V100", "types": ["A10"]},
            "gpu",
            "not both and not neither",
        ),
        ({"fraction": "1/4"}, "gpu", "not both and not neither"),
        ({"fraction": "1/4", "types": ["any"]}, "gpu.types[0]", "write type: any"),
        ({"fraction": "1/4", "types": ["V 100"]}, "gpu.types[0]", "a GPU type is 1-63"),
        ({"fraction": "1/4", "types": "V100"}, "gpu.types", "a non-empty list of GPU types"),
        ({"fraction": "1/4", "type": "any", "min_memory": "lots"}, "gpu.min_memory", "16GiB"),
        ({"fraction": "1/4", "type": "any", "min_memory": "0.1K"}, "gpu.min_memory", "1Mi"),
        ({"fraction": "1/4", "type": "any", "min_memory": "4Ti"}, "gpu.min_memory", "2Ti"),
        ({"fraction": "1/4", "type": "any", "min_mem": "16Gi"}, "gpu.min_mem", "unknown key"),
        (
            {"fraction": "1/4", "type": "any", "min_memory": "16GiB", "memory_mib": 20000},
            "gpu.memory_mib",
            "20000 MiB is more than min_memory (16384 MiB)",
        ),
    ],
)
def test_gpu_type_mistakes_name_the_field(
    tmp_path: Path, gpu: dict, where: str, words: str
) -> None:
    data = example()
    data["profiles"][1]["gpu"] = gpu
    message = errors_of(tmp_path, data)
    assert f": profiles[1].{where}: " in message and words in message, message
    # The same rules in a flavor's gpu block.
    data = example()
    data["flavors"][2]["gpu"] = gpu
    message = errors_of(tmp_path, data)
    assert f": flavors[2].{where}: " in message and words in message, message


def test_a_whole_gpu_of_any_type_with_min_memory_loads(tmp_path: Path) -> None:
    data = example()
    data["profiles"][1]["gpu"] = {"fraction": 1, "type": "any", "min_memory": "16GiB"}
    assert load_config(write(tmp_path, data)).profiles[1].gpu.min_memory_mib == 16384


# --- references between sections -------------------------------------------------------------


def test_undefined_image(tmp_path: Path) -> None:
    data = example()
    data["profiles"][0]["image"] = "julia"
    data["projects"]["cs101"]["images"][1] = "tensorflw"
    message = errors_of(tmp_path, data)
    assert (
        "profiles[0].image: unknown image 'julia'; defined images: pytorch, tensorflow, scipy"
        in message
    )
    assert "projects.cs101.images[1]: unknown image 'tensorflw'; defined images: pytorch" in (
        message
    )


def test_undefined_project(tmp_path: Path) -> None:
    data = example()
    data["profiles"][2]["projects"] = ["cs101", "cs102"]
    data["settings"]["default_project"] = "cs999"
    message = errors_of(tmp_path, data)
    assert (
        "profiles[2].projects[1]: unknown project 'cs102'; defined projects: cs101, vision-lab"
        in message
    )
    assert "settings.default_project: unknown project 'cs999'" in message


def test_image_not_allowed_for_project(tmp_path: Path) -> None:
    data = example()
    i = profile_index(data, "tensorflow-quarter-3090")
    data["profiles"][i]["projects"] = ["cs101", "vision-lab"]
    message = errors_of(tmp_path, data)
    assert (
        f"profiles[{i}].projects[1]: project vision-lab does not allow image 'tensorflow' "
        "(its images: pytorch, scipy); add tensorflow to projects.vision-lab.images or remove "
        "vision-lab from this profile" in message
    )


def test_duplicate_slug(tmp_path: Path) -> None:
    data = example()
    data["profiles"][3]["slug"] = "pytorch-half-3090"
    data["profiles"][4].pop("slug")
    data["profiles"][4]["display_name"] = "CPU only"  # derives cpu-only, taken by profiles[0]
    message = errors_of(tmp_path, data)
    assert "profiles[3].slug: slug 'pytorch-half-3090' is already used by profiles[2]" in message
    assert (
        "profiles[4].slug: slug 'cpu-only' (derived from display_name) is already used by "
        "profiles[0]; give each profile its own slug" in message
    )


def test_two_defaults(tmp_path: Path) -> None:
    data = example()
    data["profiles"][3]["default"] = True
    message = errors_of(tmp_path, data)
    assert "profiles[3].default: profiles[1] is already the default; only one profile" in message


@pytest.mark.parametrize("quota", [-1, "-1/2", "lots", True])
def test_bad_quota(tmp_path: Path, quota: Any) -> None:
    data = example()
    data["projects"]["cs101"]["gpu_quota"] = quota
    message = errors_of(tmp_path, data)
    assert (
        "projects.cs101.gpu_quota: expected a number of GPUs >= 0 like 2, 0.5 or 3/2, or null "
        "for unlimited" in message
    )
    assert repr(quota) in message


def test_quota_spellings() -> None:
    data = example()
    for text, expected in (("3/2", Fraction(3, 2)), (0.5, Fraction(1, 2)), (0, 0), (None, None)):
        data["projects"]["cs101"]["gpu_quota"] = text
        assert parse_config(data).projects["cs101"].gpu_quota == expected


def test_guarantee_above_limit(tmp_path: Path) -> None:
    data = example()
    data["profiles"][1]["cpu"] = {"guarantee": 8, "limit": 4}
    data["profiles"][1]["memory"] = {"guarantee": "16G", "limit": "8Gi"}
    message = errors_of(tmp_path, data)
    assert "profiles[1].cpu.guarantee: the guarantee 8 is above the limit 4" in message
    assert "profiles[1].memory.guarantee: the guarantee 16G is above the limit 8Gi" in message


def test_bad_memory_size(tmp_path: Path) -> None:
    data = example()
    data["profiles"][1]["memory"]["limit"] = "8GB"
    message = errors_of(tmp_path, data)
    assert "profiles[1].memory.limit: expected a size like 512M, 2G or 8Gi" in message


# --- overrides that would undo the slice ------------------------------------------------------


def test_forbidden_override_keys(tmp_path: Path) -> None:
    data = example()
    data["profiles"][1]["kubespawner_override"] = {
        "extra_resource_limits": {"nvidia.com/gpu": "1"},
        "environment": {"NVIDIA_VISIBLE_DEVICES": "all", "LANG": "C.UTF-8"},
        "cpu_limit": 8,
    }
    message = errors_of(tmp_path, data)
    where = "profiles[1].kubespawner_override"
    assert f'{where}.extra_resource_limits["nvidia.com/gpu"]: not allowed on a profile with a ' in (
        message
    )
    assert f"{where}.environment.NVIDIA_VISIBLE_DEVICES: not allowed here" in message
    assert "forbidden: NVIDIA_VISIBLE_DEVICES, CUDA_VISIBLE_DEVICES" in message
    assert f"{where}.cpu_limit: also set by cpu.limit; keep only cpu.limit" in message
    assert "LANG" not in message


def test_forbidden_key_in_profile_option_choice(tmp_path: Path) -> None:
    data = example()
    i = profile_index(data, "pytorch-a100")
    choice = data["profiles"][i]["profile_options"]["storage"]["choices"]["large"]
    choice["kubespawner_override"]["privileged"] = True
    message = errors_of(tmp_path, data)
    assert (
        f"profiles[{i}].profile_options.storage.choices.large.kubespawner_override."
        "privileged: not allowed here; user pods never run privileged" in message
    )


# --- all at once ------------------------------------------------------------------------------


def test_multiple_errors_reported_together(tmp_path: Path) -> None:
    data = example()
    data["platform_admins"] = "admin"
    data["projects"]["cs101"]["gpu_quota"] = -2
    data["profiles"][1]["gpu"]["fraction"] = "5/4"
    data["profiles"][2]["image"] = "jax"
    data["profiles"][3]["slug"] = "no spaces"
    message = errors_of(tmp_path, data)
    lines = message.splitlines()
    assert len(lines) == 5, message
    # In file order: platform_admins, projects, then profiles by index.
    assert [line.split(": ")[1] for line in lines] == [
        "platform_admins",
        "projects.cs101.gpu_quota",
        "profiles[1].gpu.fraction",
        "profiles[2].image",
        "profiles[3].slug",
    ]
