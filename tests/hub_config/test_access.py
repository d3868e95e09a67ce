"""Who sees which profile, the spawn-time check, and the KubeSpawner profile_list."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from fractions import Fraction

import pytest

from gpu_fraction.model import format_gpus
from hub_config.access import (
    SpawnRefused,
    check_spawn,
    kubespawner_profile_list,
    profiles_for,
    projects_administered_by,
    projects_of,
)
from hub_config.loader import EXAMPLE, load_config
from hub_config.model import AiConsoleConfig, Settings

CONFIG = load_config(EXAMPLE)
ALL = [p.slug for p in CONFIG.profiles]
COURSE = ["cpu-only", "pytorch-quarter-3090", "pytorch-half-3090", "tensorflow-quarter-3090"]
LAB = ["cpu-only", "pytorch-half-3090", "pytorch-a100", "pytorch-any-gpu"]


def nothing_in_use(project: str) -> Fraction:
    return Fraction(0)


def slugs(config: AiConsoleConfig, user: str, groups: tuple[str, ...] = ()) -> list[str]:
    return [p.slug for p in profiles_for(config, user, groups)]


# --- membership and the spawn form ------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "groups", "projects", "profiles"),
    [
        ("student1", (), ["cs101"], COURSE),  # named in members.users
        ("eve", ("cs101-students",), ["cs101"], COURSE),  # via an authenticator group
        ("frank", ("project-cs101",), ["cs101"], COURSE),  # added to the hub group at run time
        ("teacher", (), ["cs101"], COURSE),  # course admins count as members
        ("researcher", (), ["vision-lab"], LAB),
        ("admin", (), ["cs101", "vision-lab"], ALL),  # platform admins see everything
        ("outsider", ("other",), [], ["cpu-only"]),  # only the unrestricted profile
    ],
)
def test_profiles_by_membership(
    user: str, groups: tuple[str, ...], projects: list[str], profiles: list[str]
) -> None:
    assert [p.slug for p in projects_of(CONFIG, user, groups)] == projects
    assert slugs(CONFIG, user, groups) == profiles


def test_projects_administered_by() -> None:
    assert [p.slug for p in projects_administered_by(CONFIG, "teacher")] == ["cs101"]
    assert [p.slug for p in projects_administered_by(CONFIG, "admin")] == ["cs101", "vision-lab"]
    assert projects_administered_by(CONFIG, "student1") == []


# --- spawn-time check -------------------------------------------------------------------------


def test_spawn_picks_the_only_fitting_project() -> None:
    decision = check_spawn(CONFIG, "student1", [], "pytorch-quarter-3090", None, nothing_in_use)
    assert decision.profile.slug == "pytorch-quarter-3090"
    assert decision.project is not None and decision.project.slug == "cs101"
    # The half profile is offered to both projects; the researcher is only in vision-lab.
    decision = check_spawn(CONFIG, "researcher", [], "pytorch-half-3090", None, nothing_in_use)
    assert decision.project is not None and decision.project.slug == "vision-lab"


def test_spawn_without_profile_uses_the_default() -> None:
    decision = check_spawn(CONFIG, "student1", [], None, None, nothing_in_use)
    assert decision.profile.slug == "pytorch-quarter-3090"
    decision = check_spawn(CONFIG, "outsider", [], None, None, nothing_in_use)
    assert decision.profile.slug == "cpu-only" and decision.project is None


def test_unrestricted_profile_is_charged_to_a_project_when_one_fits() -> None:
    decision = check_spawn(CONFIG, "student1", [], "cpu-only", None, nothing_in_use)
    assert decision.project is not None and decision.project.slug == "cs101"
    decision = check_spawn(CONFIG, "outsider", [], "cpu-only", None, nothing_in_use)
    assert decision.project is None


def test_several_projects_fit() -> None:
    both = replace(
        CONFIG,
        projects={
            slug: replace(p, member_users=p.member_users | {"tina"})
            for slug, p in CONFIG.projects.items()
        },
    )
    with pytest.raises(SpawnRefused) as info:
        check_spawn(both, "tina", [], "pytorch-half-3090", None, nothing_in_use)
    assert info.value.reason == (
        'Profile "PyTorch, 1/2 RTX 3090" can be charged to Intro to Deep Learning or Computer '
        'Vision Lab; choose one under "Charged to" in the spawn form.'
    )
    chosen = check_spawn(both, "tina", [], "pytorch-half-3090", "vision-lab", nothing_in_use)
    assert chosen.project is not None and chosen.project.slug == "vision-lab"
    with_default = replace(both, settings=Settings(default_project="vision-lab"))
    picked = check_spawn(with_default, "tina", [], "pytorch-half-3090", None, nothing_in_use)
    assert picked.project is not None and picked.project.slug == "vision-lab"


def test_quota_refusal_message() -> None:
    def full(project: str) -> Fraction:
        return Fraction(2) if project == "cs101" else Fraction(0)

    with pytest.raises(SpawnRefused) as info:
        check_spawn(CONFIG, "student1", [], "pytorch-quarter-3090", None, full)
    assert str(info.value) == (
        "Intro to Deep Learning already uses 2 of its 2 GPUs; stop one of your servers or jobs, "
        "or ask its course admin for more quota."
    )
    # CPU-only profiles never count against the GPU quota.
    assert check_spawn(CONFIG, "student1", [], "cpu-only", None, full).project is not None


def test_quota_partly_used() -> None:
    with pytest.raises(SpawnRefused) as info:
        check_spawn(CONFIG, "student1", [], "pytorch-half-3090", "cs101", lambda _: Fraction(7, 4))
    assert info.value.reason == (
        'Intro to Deep Learning already uses 1 3/4 of its 2 GPUs and "PyTorch, 1/2 RTX 3090" '
        "needs 1/2 more; pick a smaller profile, stop one of your servers or jobs, or ask its "
        "course admin for more quota."
    )
    # Exactly filling the quota is allowed.
    ok = check_spawn(CONFIG, "student1", [], "pytorch-quarter-3090", None, lambda _: Fraction(7, 4))
    assert ok.project is not None


def test_zero_quota() -> None:
    config = replace(
        CONFIG,
        projects={
            **CONFIG.projects,
            "cs101": replace(CONFIG.projects["cs101"], gpu_quota=Fraction(0)),
        },
    )
    with pytest.raises(
        SpawnRefused, match="Intro to Deep Learning has no GPU quota; pick a CPU-only"
    ):
        check_spawn(config, "student1", [], "pytorch-quarter-3090", None, nothing_in_use)


def test_unlimited_quota_never_refuses() -> None:
    config = replace(
        CONFIG,
        projects={**CONFIG.projects, "cs101": replace(CONFIG.projects["cs101"], gpu_quota=None)},
    )
    decision = check_spawn(config, "student1", [], "pytorch-half-3090", None, lambda _: 100)
    assert decision.project is not None and decision.project.slug == "cs101"


# --- crafted user_options ---------------------------------------------------------------------


def test_profile_of_another_project_is_refused() -> None:
    with pytest.raises(SpawnRefused) as info:
        check_spawn(CONFIG, "student1", [], "pytorch-a100", None, nothing_in_use)
    assert info.value.reason == (
        'Profile "PyTorch, 1 x A100" is only for members of Computer Vision Lab; pick another '
        "profile, or ask a lab admin of Computer Vision Lab to add you."
    )


def test_project_the_user_is_not_in_is_refused() -> None:
    with pytest.raises(SpawnRefused) as info:
        check_spawn(CONFIG, "student1", [], "pytorch-half-3090", "vision-lab", nothing_in_use)
    assert info.value.reason == (
        "You are not a member of Computer Vision Lab; pick one of your projects: Intro to Deep "
        "Learning."
    )
    with pytest.raises(SpawnRefused, match="no project 'nope'; you are in no project, so leave"):
        check_spawn(CONFIG, "outsider", [], "cpu-only", "nope", nothing_in_use)


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(SpawnRefused) as info:
        check_spawn(CONFIG, "student1", [], "../../etc", None, nothing_in_use)
    assert info.value.reason == (
        "There is no profile '../../etc'; pick one of the profiles offered in the spawn form."
    )


def test_options_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(SpawnRefused, match="The project must be given by its name"):
        check_spawn(CONFIG, "student1", [], "cpu-only", ["cs101"], nothing_in_use)  # type: ignore[arg-type]
    with pytest.raises(SpawnRefused, match="The profile must be given by its name"):
        check_spawn(CONFIG, "student1", [], {"slug": "x"}, None, nothing_in_use)  # type: ignore[arg-type]


def test_float_usage_is_read_exactly() -> None:
    # Usage reported as a float is read as the fraction it stands for, so an exact fit passes.
    ok = check_spawn(CONFIG, "student1", [], "pytorch-quarter-3090", None, lambda _: 1.75)
    assert ok.project is not None


def test_profile_not_offered_to_the_chosen_project() -> None:
    with pytest.raises(SpawnRefused) as info:
        check_spawn(CONFIG, "admin", [], "pytorch-a100", "cs101", nothing_in_use)
    assert info.value.reason == (
        'Profile "PyTorch, 1 x A100" is not offered to Intro to Deep Learning; charge it to '
        "Computer Vision Lab instead."
    )


def test_image_not_allowed_for_the_chosen_project() -> None:
    # An unrestricted TensorFlow profile: vision-lab does not allow the tensorflow image.
    tf = replace(CONFIG.profiles[3], slug="tf-anyone", projects=None, default=False)
    config = replace(CONFIG, profiles=(*CONFIG.profiles, tf))
    with pytest.raises(SpawnRefused) as info:
        check_spawn(config, "researcher", [], "tf-anyone", "vision-lab", nothing_in_use)
    assert info.value.reason == (
        'Profile "TensorFlow, 1/4 RTX 3090" runs TensorFlow 2, which Computer Vision Lab does not '
        "allow; pick another profile."
    )
    # Without a project it runs uncharged, as for users outside every project.
    assert check_spawn(config, "researcher", [], "tf-anyone", None, nothing_in_use).project is None


def test_gpus_text() -> None:
    assert [format_gpus(Fraction(x)) for x in ("2", "1/4", "7/4", "4/3")] == [
        "2",
        "1/4",
        "1.75",
        "1.33",
    ]


# --- KubeSpawner profile_list -----------------------------------------------------------------


def test_profile_list_shape() -> None:
    entries = kubespawner_profile_list(profiles_for(CONFIG, "student1", []))
    assert [e["slug"] for e in entries] == COURSE
    json.dumps(entries)  # the form template serialises it (fancy-profiles uses tojson)
    quarter = entries[1]
    assert set(quarter) == {
        "display_name",
        "slug",
        "description",
        "default",
        "kubespawner_override",
        "profile_options",
        "ai_console",
    }
    assert quarter["default"] is True
    assert quarter["kubespawner_override"] == {
        "image": "quay.io/jupyter/pytorch-notebook:cuda12-latest",
        "cpu_guarantee": 1.0,
        "cpu_limit": 4.0,
        "mem_guarantee": "2G",
        "mem_limit": "8G",
    }
    assert quarter["ai_console"] == {
        "image": "pytorch",
        "projects": ["cs101"],
        "gpu": {
            "fraction": "1/4",
            "type": "RTX3090",
            "compute_min": 25,
            "compute_max": 100,
            "memory_mib": 6144,
        },
    }
    assert entries[0]["ai_console"]["gpu"] is None
    assert "free now" not in quarter["description"]


def test_profile_list_copies_pass_through_dicts() -> None:
    a100 = CONFIG.profile("pytorch-a100")
    assert a100 is not None
    before = copy.deepcopy(a100.kubespawner_override), copy.deepcopy(a100.profile_options)
    (entry,) = kubespawner_profile_list([a100])
    assert entry["kubespawner_override"]["environment"] == {"OMP_NUM_THREADS": "8"}
    entry["kubespawner_override"]["environment"]["X"] = "1"
    entry["profile_options"]["storage"]["choices"]["small"]["default"] = False
    assert (a100.kubespawner_override, a100.profile_options) == before


def test_capacity_text() -> None:
    capacity = {"RTX3090": {Fraction(1, 4): 3, Fraction(1, 2): 0}, "A100": {Fraction(1): 1}}
    entries = {e["slug"]: e for e in kubespawner_profile_list(CONFIG.profiles, capacity)}
    assert entries["pytorch-quarter-3090"]["description"].endswith(" · 3 free now")
    assert entries["pytorch-half-3090"]["description"].endswith(
        " · none free now: all 1/2 RTX3090 slices are taken"
    )
    assert entries["pytorch-a100"]["description"] == "A whole A100 for research runs · 1 free now"
    assert entries["pytorch-quarter-3090"]["ai_console"]["free_now"] == 3
    assert "free now" not in entries["cpu-only"]["description"]
    # A type the inventory does not have: nothing can start.
    unknown = kubespawner_profile_list(CONFIG.profiles, {})
    assert unknown[1]["description"].endswith("none free now: this hub has no RTX3090 GPU")


async def test_real_kubespawner_accepts_the_profile_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner itself applies our entries: traits validate, overrides and options merge."""
    import kubespawner.spawner
    from kubespawner import KubeSpawner

    # No cluster here: skip loading a kubeconfig (which would also change global client state).
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)
    spawner = KubeSpawner(_mock=True)
    capacity = {"A100": {Fraction(1): 2}}
    spawner.profile_list = kubespawner_profile_list(CONFIG.profiles, capacity)
    spawner.user_options = {"profile": "pytorch-a100", "storage": "large"}
    await spawner.load_user_options()
    assert spawner.image == "quay.io/jupyter/pytorch-notebook:cuda12-latest"
    assert (spawner.cpu_guarantee, spawner.cpu_limit) == (8.0, 16.0)
    assert (spawner.mem_guarantee, spawner.mem_limit) == (32 * 2**30, 64 * 2**30)
    assert spawner.environment["OMP_NUM_THREADS"] == "8"
    assert spawner.environment["SCRATCH_SIZE"] == "200Gi"
    form = spawner._render_options_form(spawner.profile_list)
    assert "PyTorch, 1/4 RTX 3090" in form and "A whole A100 for research runs · 2 free now" in form
    assert 'value="pytorch-quarter-3090"' in form
