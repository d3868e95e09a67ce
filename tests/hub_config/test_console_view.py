"""The AI Console page's data: every GPU as its slices, owners shown only to who may see
them, free capacity per GPU type, and projects with their quota use."""

from __future__ import annotations

from fractions import Fraction

from gpu_fraction.allocator import Allocator
from gpu_fraction.model import Owner, SliceRequest
from gpu_fraction.simulated import simulated
from hub_config.console_view import console_view
from hub_config.loader import EXAMPLE, load_config

CONFIG = load_config(EXAMPLE)


def cluster() -> Allocator:
    """Two RTX 3090s and an A100: a cs101 student's quarter, a vision-lab job's whole A100 and a
    lab notebook's half, one of them still starting."""
    allocator = Allocator.from_inventory(
        simulated("gpu-01=RTX3090:24576x2,gpu-02=A100:81920x1"), policy="binpack"
    )
    quarter = allocator.reserve(
        SliceRequest("RTX3090", Fraction(1, 4)), Owner("notebook", "student1", "cs101", "")
    )
    allocator.commit(quarter.id)
    job = allocator.reserve(
        SliceRequest("A100", Fraction(1)), Owner("job", "researcher", "vision-lab", "train-1")
    )
    allocator.commit(job.id)
    allocator.reserve(
        SliceRequest("RTX3090", Fraction(1, 2)), Owner("notebook", "researcher", "vision-lab", "")
    )  # reserved, not committed: its server is starting
    return allocator


def view(viewer: str) -> dict:
    allocator = cluster()
    return console_view(CONFIG, viewer, allocator.usage(), allocator.capacity())


def slices(data: dict) -> list[tuple]:
    return [
        (gpu["uuid"], s["share"], s.get("user"), s["visible"], s["committed"])
        for node in data["nodes"]
        for gpu in node["gpus"]
        for s in gpu["slices"]
    ]


def test_a_platform_admin_sees_every_slice_with_its_owner() -> None:
    data = view("admin")
    assert data["sees"] == "everything" and data["simulated"] is True
    assert sorted(slices(data)) == [
        ("SIM-GPU-gpu-01-0", "1/2", "researcher", True, False),
        ("SIM-GPU-gpu-01-0", "1/4", "student1", True, True),
        ("SIM-GPU-gpu-02-0", "1", "researcher", True, True),
    ]
    rtx = data["nodes"][0]["gpus"]
    assert [g["free"] for g in rtx] == ["1/4", "1"]
    types = {t["gpu_type"]: t for t in data["gpu_types"]}
    assert types["RTX3090"]["gpus"] == 2 and types["RTX3090"]["free"] == "1 1/4"
    startable = {s["size"]: s["count"] for s in types["RTX3090"]["startable"]}
    assert startable["1/4"] == 5 and startable["1/2"] == 2 and startable["1"] == 1
    assert types["A100"]["free"] == "0"
    assert [p["slug"] for p in data["projects"]] == ["cs101", "vision-lab"]


def test_a_course_admin_sees_every_gpu_but_only_their_courses_owners() -> None:
    data = view("teacher")
    assert data["sees"] == "own projects"
    assert sorted(slices(data)) == [
        ("SIM-GPU-gpu-01-0", "1/2", None, False, False),
        ("SIM-GPU-gpu-01-0", "1/4", "student1", True, True),
        ("SIM-GPU-gpu-02-0", "1", None, False, True),
    ]
    hidden = [s for n in data["nodes"] for g in n["gpus"] for s in g["slices"] if not s["visible"]]
    anonymous = {"share", "share_value", "memory_mib", "committed", "visible"}
    assert all(set(s) == anonymous for s in hidden)
    [cs101] = data["projects"]
    assert cs101["slug"] == "cs101" and cs101["quota"] == "2" and cs101["in_use"] == "1/4"
    assert cs101["top_users"] == [{"user": "student1", "in_use": "1/4"}]


def test_projects_count_notebooks_and_jobs_apart() -> None:
    lab = {p["slug"]: p for p in view("admin")["projects"]}["vision-lab"]
    assert lab["in_use"] == "1 1/2"
    assert lab["in_use_by_kind"] == {"notebook": "1/2", "job": "1"}
    assert lab["top_users"] == [{"user": "researcher", "in_use": "1 1/2"}]


def test_a_member_is_shown_nothing() -> None:
    data = view("student1")
    assert data["projects"] == [] and all(not s[3] for s in slices(data))
