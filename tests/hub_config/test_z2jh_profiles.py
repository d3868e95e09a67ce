"""A z2jh admin's profileList loads into ai-console.yaml unchanged and behaves as KubeSpawner.

``data/z2jh-profiles.yaml`` is written after the patterns of z2jh's and KubeSpawner's
documentation: no images: section, images in kubespawner_override and in profile_options
choices (with a typed-in image), lifecycle hooks, a node pool, a device-plugin GPU, a
non-ASCII and an over-long name, an explicit slug with capitals and '_', an empty description,
and one GPU profile written for the allocator with sizes as choices.
"""

from __future__ import annotations

import copy
import itertools
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubespawner import KubeSpawner
from slugify import slugify

from hub_config.access import kubespawner_profile_list
from hub_config.loader import ConfigError, load_config, parse_config
from spawner.kube import FractionalGPUKubeSpawner
from spawner.slices import decision_from_profile
from tests.control_plane.fixtures import point_clients_at, reset_client_caches
from tests.spawner.kube_setup import make_spawner, spawner_config

Z2JH = Path(__file__).parent / "data" / "z2jh-profiles.yaml"
RAW = yaml.safe_load(Z2JH.read_text())
DEFAULT_IMAGE = RAW["settings"]["default_image"]


def load(data: dict[str, Any], tmp_path: Path):
    path = tmp_path / "ai-console.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return load_config(path)


def errors(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def with_profile(**profile: Any) -> dict[str, Any]:
    data = copy.deepcopy(RAW)
    data["profiles"] = [profile]
    return data


# --- it loads, with KubeSpawner's slugs -----------------------------------------------------


def test_the_z2jh_list_loads_unchanged_with_kubespawners_slugs() -> None:
    config = load_config(Z2JH)
    assert len(config.profiles) == len(RAW["profiles"])
    for raw, profile in zip(RAW["profiles"], config.profiles, strict=True):
        # Derived as KubeSpawner derives them, so saved ?profile= links keep working.
        assert profile.slug == raw.get("slug", slugify(raw["display_name"]))
    slugs = [p.slug for p in config.profiles]
    assert "Spark_Env" in slugs and "pytorch_GPU" in slugs
    assert "ji-qi-xue-xi-gpu-ke-cheng" in slugs  # 機器學習 GPU 課程, transliterated
    assert max(map(len, slugs)) > 63  # long names are not cut short
    assert config.profile("Spark_Env").description == ""  # `description:` left empty


def test_images_come_from_overrides_and_the_default() -> None:
    config = load_config(Z2JH)
    minimal, datascience = config.profiles[0], config.profiles[1]
    assert minimal.image.image == DEFAULT_IMAGE  # z2jh's singleuser.image
    assert datascience.image.image == "quay.io/jupyter/datascience-notebook:2024-04-22"
    assert datascience.image.unlisted  # an image of its own: no images: entry names it


def test_an_override_image_listed_in_images_takes_that_entry_and_its_project_rules(
    tmp_path: Path,
) -> None:
    data = copy.deepcopy(RAW)
    data["images"] = {
        "scipy": {"display_name": "SciPy", "image": "quay.io/jupyter/scipy-notebook:2024-04-22"},
        "datascience": {
            "display_name": "Data science",
            "image": "quay.io/jupyter/datascience-notebook:2024-04-22",
        },
    }
    data["profiles"][1]["projects"] = ["cs101"]
    data["projects"]["cs101"]["images"] = ["scipy"]
    message = errors(data)
    assert (
        "profiles[1].projects[0]: project cs101 does not allow image 'datascience' (its images: "
        "scipy); add datascience to projects.cs101.images" in message
    )
    data["projects"]["cs101"]["images"] = ["scipy", "datascience"]
    data["profiles"][0]["projects"] = ["cs101"]  # the default image is not among cs101's
    message = errors(data)
    assert "profiles[0].projects[0]: project cs101 does not allow image" in message
    data["settings"]["default_image"] = "scipy"  # a key of images works as the default too
    config = load(data, tmp_path)
    assert config.profiles[0].image.key == "scipy"
    assert config.profiles[1].image.key == "datascience"


def test_an_image_of_its_own_is_refused_in_a_project_that_lists_images() -> None:
    data = copy.deepcopy(RAW)
    data["images"] = {"scipy": {"display_name": "SciPy", "image": "quay.io/jupyter/scipy:1"}}
    data["projects"]["cs101"]["images"] = ["scipy"]
    data["profiles"][2]["projects"] = ["cs101"]
    message = errors(data)
    assert (
        "profiles[2].projects[0]: project cs101 does not allow image "
        "'quay.io/jupyter/all-spark-notebook:2024-04-22' (its images: scipy); add it to images: "
        "under a key and that key to projects.cs101.images" in message
    )


def test_a_profile_with_no_image_anywhere_says_what_to_write() -> None:
    data = with_profile(display_name="Plain")
    del data["settings"]["default_image"]
    assert (
        "profiles[0].image: no image: name a key of images (defined: none defined), give "
        "kubespawner_override.image, or set settings.default_image" in errors(data)
    )
    data["images"] = {"pytorch": {"display_name": "PyTorch", "image": "quay.io/x/pytorch:1"}}
    data["profiles"][0]["image"] = "pytroch"
    assert "profiles[0].image: unknown image 'pytroch'; defined images: pytorch" in errors(data)


def test_image_given_twice_is_refused() -> None:
    data = with_profile(
        display_name="Twice", image="pytorch", kubespawner_override={"image": "quay.io/x/y:1"}
    )
    data["images"] = {"pytorch": {"display_name": "PyTorch", "image": "quay.io/x/pytorch:1"}}
    assert (
        "profiles[0].kubespawner_override.image: the profile already names image 'pytorch'; "
        "keep only one of image: and kubespawner_override.image" in errors(data)
    )


def test_a_typed_in_image_needs_a_validation_regex() -> None:
    data = copy.deepcopy(RAW)
    del data["profiles"][3]["profile_options"]["image"]["unlisted_choice"]["validation_regex"]
    assert (
        "profiles[3].profile_options.image.unlisted_choice.validation_regex: a typed-in image "
        "needs a validation_regex" in errors(data)
    )


def test_a_choice_image_follows_the_project_rules() -> None:
    data = copy.deepcopy(RAW)
    data["images"] = {
        "pytorch": {
            "display_name": "PyTorch",
            "image": "quay.io/jupyter/pytorch-notebook:2024-04-22",
        }
    }
    data["projects"]["cs101"]["images"] = ["pytorch"]
    data["settings"]["default_image"] = "pytorch"
    data["profiles"] = [data["profiles"][3]]
    data["profiles"][0]["projects"] = ["cs101"]
    del data["profiles"][0]["profile_options"]["image"]["unlisted_choice"]
    message = errors(data)
    where = "profiles[0].profile_options.image.choices"
    assert f"{where}.tf.kubespawner_override.image: project cs101 does not allow image" in message
    assert f"{where}.pytorch" not in message  # that one is cs101's


# --- GPU lines ------------------------------------------------------------------------------


def test_a_device_plugin_gpu_loads_with_a_warning_saying_what_to_write() -> None:
    config = load_config(Z2JH)
    (warning,) = [w for w in config.warnings if "nvidia.com/gpu" in w]
    assert 'profiles[5].kubespawner_override.extra_resource_limits["nvidia.com/gpu"]' in warning
    assert "write gpu: {fraction: 1, type: <one of: RTX3090>} instead" in warning
    assert config.profiles[5].gpu is None  # the device plugin's, not the allocator's


def test_nvidia_resources_on_a_gpu_profile_are_refused_saying_why() -> None:
    data = with_profile(
        display_name="Both",
        gpu={"fraction": "1/4", "type": "RTX3090"},
        kubespawner_override={"extra_resource_limits": {"nvidia.com/gpu": 1}},
    )
    assert (
        'profiles[0].kubespawner_override.extra_resource_limits["nvidia.com/gpu"]: not allowed '
        "on a profile with a gpu: block, which already gives the server its slice" in errors(data)
    )


def test_choices_set_the_slice_size() -> None:
    profile = load_config(Z2JH).profile("pytorch_GPU")
    assert profile.gpu_for({}).fraction == Fraction(1, 4)  # the default choice
    assert profile.gpu_for({"size": "half"}).fraction == Fraction(1, 2)
    assert profile.fraction_for({"size": "whole"}) == 1
    assert profile.offers_gpu
    # What the spawner reads from the hub's profile_list entry: the same choice, the same slice.
    (entry,) = kubespawner_profile_list([profile])
    assert "gpu" not in entry["profile_options"]["size"]["choices"]["half"]  # KubeSpawner's shape
    assert decision_from_profile(entry, {"size": "half"}).request.fraction == Fraction(1, 2)
    assert decision_from_profile(entry, {}).request.fraction == Fraction(1, 4)


def test_a_bad_gpu_block_in_a_choice_names_the_choice() -> None:
    data = copy.deepcopy(RAW)
    choice = data["profiles"][8]["profile_options"]["size"]["choices"]["half"]
    choice["gpu"]["fraction"] = "3/2"
    assert "profiles[8].profile_options.size.choices.half.gpu.fraction:" in errors(data)


def test_placement_keys_are_allowed() -> None:
    data = with_profile(
        display_name="Pool",
        gpu={"fraction": "1/2", "type": "RTX3090"},
        kubespawner_override={
            "node_selector": {"pool": "gpu"},
            "node_affinity_required": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
            ],
        },
    )
    config = parse_config(data)
    assert config.profiles[0].kubespawner_override["node_selector"] == {"pool": "gpu"}


# --- the same overrides as stock KubeSpawner ------------------------------------------------

#: KubeSpawner settings the profiles above touch, compared after the options are loaded.
COMPARED = (
    "image",
    "cpu_limit",
    "cpu_guarantee",
    "mem_limit",
    "mem_guarantee",
    "environment",
    "lifecycle_hooks",
    "node_selector",
    "node_affinity_required",
    "extra_resource_limits",
    "extra_resource_guarantees",
)


def _choice_sets(profile: dict[str, Any]) -> list[dict[str, str]]:
    """Every combination of listed choices, and each typed-in value where there is one."""
    options = profile.get("profile_options") or {}
    names = list(options)
    per_option = []
    for name in names:
        keys = list(options[name].get("choices") or {})
        if (options[name].get("unlisted_choice") or {}).get("enabled"):
            keys.append("quay.io/jupyter/r-notebook:2024-04-22")  # typed in, matches the regex
        per_option.append(keys)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*per_option)]


def _user_options(slug: str, profile: dict[str, Any], chosen: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {"profile": slug}
    for name, value in chosen.items():
        listed = (profile["profile_options"][name].get("choices") or {}).keys()
        if value in listed:
            options[name] = value
        else:
            options[f"{name}--unlisted-choice"] = value
    return options


async def _loaded(cls, profile_list: list[dict], user_options: dict[str, Any]) -> Any:
    config = spawner_config("z2jh", KubeSpawner__profile_list=profile_list)
    config.KubeSpawner.image = DEFAULT_IMAGE  # z2jh's singleuser.image
    spawner = make_spawner(config, "student1", cls=cls)
    spawner.user_options = user_options
    await spawner.load_user_options()
    return spawner


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner builds its API clients when constructed; loading options calls no API, so a
    kubeconfig pointing nowhere will do."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {"token": "x"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    point_clients_at(path, monkeypatch)
    yield
    reset_client_caches(load=False)


@pytest.mark.usefixtures("kubeconfig")
async def test_ours_applies_the_same_overrides_as_kubespawner_profile_by_profile() -> None:
    config = load_config(Z2JH)
    ours = kubespawner_profile_list(config.profiles)
    # Stock KubeSpawner gets the list as the z2jh admin wrote it (it ignores our gpu keys).
    stock = copy.deepcopy(RAW["profiles"])
    compared = 0
    for raw, entry in zip(stock, ours, strict=True):
        for chosen in _choice_sets(raw):
            user_options = _user_options(entry["slug"], raw, chosen)
            theirs = await _loaded(KubeSpawner, stock, user_options)
            mine = await _loaded(FractionalGPUKubeSpawner, ours, user_options)
            for name in COMPARED:
                assert getattr(mine, name) == getattr(theirs, name), (
                    entry["slug"],
                    chosen,
                    name,
                )
            compared += 1
    assert compared >= len(stock) + 4  # every profile, and the choices of two of them
