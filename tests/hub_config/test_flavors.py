"""Job flavors in ai-console.yaml: loading, mistakes named by field, and who may use which."""

from __future__ import annotations

from fractions import Fraction

import pytest

from gpu_fraction.errors import AllocationRefused
from hub_config.access import JobRefused, check_job, flavors_for
from hub_config.loader import EXAMPLE, load_config

from .test_loader import errors_of, example, write

CONFIG = load_config(EXAMPLE)


def nothing(project: str) -> Fraction:
    return Fraction(0)


def test_the_example_flavors_load_with_their_slices():
    whole = CONFIG.flavor("12C-24G-1GPU")
    assert whole is not None and whole.gpu_types == ("RTX3090", "A100")
    request = whole.slice_request("A100")
    assert (request.gpu_type, request.fraction) == ("A100", Fraction(1))
    assert (request.cpu_millis, request.host_memory_mib) == (12000, 24 * 1024)
    assert CONFIG.flavor("2C-4G").gpu is None


def test_projects_limit_their_flavors():
    student = [f.name for f, _ in flavors_for(CONFIG, "student1", [])]
    assert student == ["2C-4G", "4C-16G-1/4GPU"]  # cs101 lists its flavors
    researcher = [f.name for f, _ in flavors_for(CONFIG, "researcher", [])]
    assert researcher == ["2C-4G", "4C-16G-1/4GPU", "12C-24G-1GPU", "8C-32G-1/2GPU-40G"]
    assert flavors_for(CONFIG, "stranger", []) == []  # jobs are always charged to a project


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        (lambda d: d["flavors"].append(dict(d["flavors"][0])), "flavors[4].name", "already used"),
        (lambda d: d["flavors"][1]["gpu"].update(type="RTX3090"), "flavors[1].gpu", "not both"),
        (lambda d: d["flavors"][1]["gpu"].pop("types"), "flavors[1].gpu", "not neither"),
        (
            lambda d: d["flavors"][2]["gpu"].update(types=["RTX 3090"]),
            "flavors[2].gpu.types[0]",
            "GPU type",
        ),
        (
            lambda d: d["flavors"][1]["gpu"].update(fraction="1/3x"),
            "flavors[1].gpu.fraction",
            "fraction",
        ),
        (lambda d: d["flavors"][0].update(cpu=0), "flavors[0].cpu", "CPUs > 0"),
        (lambda d: d["flavors"][0].update(name="has space"), "flavors[0].name", "letters"),
        (lambda d: d["flavors"][0].update(gpus=1), "flavors[0].gpus", "unknown key"),
        (
            lambda d: d["projects"]["cs101"].update(flavors=["XL"]),
            "projects.cs101.flavors[0]",
            "unknown flavor 'XL'",
        ),
    ],
)
def test_flavor_mistakes_name_the_field(tmp_path, change, where, words):
    data = example()
    change(data)
    message = errors_of(tmp_path, data)
    assert f": {where}: " in message and words in message, message


@pytest.mark.parametrize(
    ("user", "request_", "field", "words"),
    [
        ("student1", {"flavor": "nope"}, "flavor", "There is no flavor 'nope'"),
        ("student1", {"flavor": "12C-24G-1GPU"}, "flavor", "not offered"),
        ("student1", {"flavor": "2C-4G", "project": "vision-lab"}, "project", "cannot be charged"),
        ("researcher", {"flavor": "12C-24G-1GPU", "gpu_type": "V100"}, "gpu_type", "pick one"),
        ("researcher", {"flavor": "12C-24G-1GPU", "gpu_type": "V100"}, "gpu_type", "any of them"),
        ("researcher", {"flavor": "2C-4G", "gpu_type": "A100"}, "gpu_type", "has no GPU"),
        ("researcher", {"flavor": "2C-4G", "image": "tensorflow"}, "image", "does not offer"),
        ("student1", {"flavor": {"$ne": 1}}, "flavor", "by its name"),
    ],
)
def test_job_refusals_name_the_field(user, request_, field, words):
    with pytest.raises(JobRefused) as info:
        check_job(CONFIG, user, [], request_, nothing)
    assert info.value.field == field and words in info.value.reason, info.value.reason


def test_jobs_count_against_the_project_quota():
    def busy(project: str) -> Fraction:
        return Fraction(15, 8)  # cs101 (quota 2) already holds 1 7/8 GPUs

    decision = check_job(CONFIG, "student1", [], {"flavor": "4C-16G-1/4GPU"}, lambda p: 0)
    assert decision.project.slug == "cs101" and decision.gpu_type == "RTX3090"
    with pytest.raises(JobRefused) as info:
        check_job(CONFIG, "student1", [], {"flavor": "4C-16G-1/4GPU"}, busy)
    assert info.value.field == "flavor"
    assert "already uses 1 7/8 of its 2 GPUs" in info.value.reason
    assert "pick a smaller flavor" in info.value.reason
    # A CPU flavor is never refused for GPU quota.
    assert check_job(CONFIG, "student1", [], {"flavor": "2C-4G"}, busy).gpu_type is None


def test_a_job_of_a_flavor_with_several_types_may_leave_the_type_to_the_allocator():
    decision = check_job(CONFIG, "researcher", [], {"flavor": "12C-24G-1GPU"}, nothing)
    assert decision.gpu_type is None  # any of RTX3090, A100
    request = decision.flavor.slice_request(decision.gpu_type)
    assert request.gpu_type is None and request.allowed_types == {"RTX3090", "A100"}
    named = check_job(
        CONFIG, "researcher", [], {"flavor": "12C-24G-1GPU", "gpu_type": "A100"}, nothing
    )
    assert named.flavor.slice_request(named.gpu_type).gpu_type == "A100"


def test_a_flavor_of_any_type_with_min_memory_names_the_types_that_fit(tmp_path):
    data = example()
    data["flavors"][3]["gpu"]["min_memory"] = "16GiB"
    config = load_config(write(tmp_path, data))
    flavor = config.flavor("8C-32G-1/2GPU-40G")
    assert flavor.gpu.gpu_types is None and flavor.gpu.min_memory_mib == 16384
    memory = {"T4": 15360, "V100": 16384, "A100": 40960}
    assert flavor.slice_request(None, memory).allowed_types == {"V100", "A100"}
    # Any type may be named; whether it fits is the allocator's (and min_memory's) to say.
    decision = check_job(
        config, "researcher", [], {"flavor": "8C-32G-1/2GPU-40G", "gpu_type": "T4"}, nothing
    )
    with pytest.raises(AllocationRefused) as info:
        flavor.slice_request(decision.gpu_type, memory)
    assert "1/2 of T4 (16 GiB or more)" in info.value.reason
    assert "pick another flavor" in info.value.reason
    with pytest.raises(JobRefused):
        check_job(
            config, "researcher", [], {"flavor": "8C-32G-1/2GPU-40G", "gpu_type": "a b"}, nothing
        )
