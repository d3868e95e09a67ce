"""The spawn form tells each user what they could start now: counts within their project's
quota, disabled profiles with the reason, the project choice, and refusals worded for who
reads them."""

from __future__ import annotations

import re
from dataclasses import replace
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jupyterhub import scopes
from jupyterhub.app import JupyterHub

from hub_config import spawn_texts as texts
from hub_config.access import SpawnRefused, check_spawn, kubespawner_profile_list, profiles_for
from hub_config.availability import availability_for
from hub_config.loader import EXAMPLE, load_config
from hub_config.model import AiConsoleConfig, GpuBlock, Settings
from hub_config.page_texts import translator
from hub_config.roles import SCOPE_SPAWN_OPTIONS, load_roles
from hub_config.spawn_form import render_spawn_form
from hub_config.spawn_texts import gpu_amount, gpus
from spawner.local_form import profile_from_form, render_profile_form

from .test_roles import allowed, hub, restore_scope_definitions, scopes_of  # noqa: F401

CONFIG = load_config(EXAMPLE)
Z2JH = load_config(Path(__file__).parent / "data" / "z2jh-profiles.yaml")
QUARTER, HALF, A100 = "pytorch-quarter-3090", "pytorch-half-3090", "pytorch-a100"
RTX = {Fraction(1, 4): 4, Fraction(1, 2): 2, Fraction(1): 1}
CAPACITY = {"RTX3090": RTX, "A100": {Fraction(1): 1}}


def using(**held: Fraction | str) -> Any:
    """``in_use`` for check_spawn and availability_for: GPUs each project holds now."""
    return lambda project: Fraction(held.get(project.replace("-", "_"), 0))


def spots(
    config: AiConsoleConfig = CONFIG,
    user: str = "student1",
    capacity: Any = CAPACITY,
    in_use: Any = None,
    chosen: dict | None = None,
) -> dict[str, Any]:
    found = availability_for(config, user, [], capacity, in_use or using(), chosen)
    return {spot.profile.slug: spot for spot in found}


def both_projects(config: AiConsoleConfig = CONFIG) -> AiConsoleConfig:
    """Tina is in cs101 and vision-lab: the half profile fits both."""
    return replace(
        config,
        projects={
            slug: replace(p, member_users=p.member_users | {"tina"})
            for slug, p in config.projects.items()
        },
    )


def with_quota(quota: Fraction | None, config: AiConsoleConfig = CONFIG) -> AiConsoleConfig:
    cs101 = replace(config.projects["cs101"], gpu_quota=quota)
    return replace(config, projects={**config.projects, "cs101": cs101})


# --- what a user could start now --------------------------------------------------------------


@pytest.mark.parametrize(
    ("hardware", "used", "free", "reason"),
    [
        (4, "0", 4, ""),  # the hardware is the limit (quota 2 = eight quarters)
        (4, "7/4", 1, ""),  # the quota is: 1/4 GPU left
        (4, "15/8", 0, "course quota used: 1 7/8 of 2 GPUs"),  # 1/8 left, a quarter needed
        (4, "2", 0, "course quota used: 2 of 2 GPUs"),
        (0, "0", 0, "all 1/4 RTX3090 slices are taken"),
        (0, "2", 0, "course quota used: 2 of 2 GPUs"),  # the quota first: waiting won't help
    ],
)
def test_free_is_the_least_of_hardware_and_quota(
    hardware: int, used: str, free: int, reason: str
) -> None:
    capacity = {"RTX3090": {**RTX, Fraction(1, 4): hardware}}
    quarter = spots(capacity=capacity, in_use=using(cs101=used))[QUARTER]
    assert (quarter.free, quarter.reason, quarter.disabled) == (free, reason, free == 0)
    assert quarter.note == (f"{free} free now" if free else f"none free now: {reason}")


def test_hardware_reasons_say_what_is_missing() -> None:
    lab = spots(user="researcher", capacity={"RTX3090": RTX, "A100": {Fraction(1): 0}})
    assert lab[A100].reason == "all A100 GPUs are taken"
    nothing = spots(user="researcher", capacity={"RTX3090": RTX})
    assert nothing[A100].reason == "this hub has no A100 GPU"


def test_cpu_only_profiles_show_no_count() -> None:
    cpu = spots()["cpu-only"]
    assert cpu.free is None and cpu.note == "" and not cpu.disabled
    # The outsider's CPU profile is charged to no project: no project to show or choose.
    outsider = spots(user="outsider")["cpu-only"]
    assert outsider.projects == () and outsider.project is None
    entry = kubespawner_profile_list([cpu.profile], availability={"cpu-only": cpu})[0]
    assert "free now" not in entry["description"] and "free_now" not in entry["ai_console"]


def test_quota_limits_beyond_the_used_share() -> None:
    assert spots(with_quota(None), in_use=using(cs101=100))[QUARTER].free == 4  # unlimited
    zero = spots(with_quota(Fraction(0)))[QUARTER]
    assert (zero.free, zero.reason) == (0, "the course has no GPU quota")
    small = spots(with_quota(Fraction(1, 4)))[HALF]
    assert small.reason == "it needs 1/2 GPU, more than the whole course quota of 1/4 GPU"


def test_several_projects_count_the_best_and_preselect_it() -> None:
    config = both_projects()
    half = spots(config, "tina", in_use=using(cs101="7/4"))[HALF]
    assert half.free == 2 and not half.disabled
    by_slug = {p.project.slug: p for p in half.projects}
    assert by_slug["cs101"].free == 0 and by_slug["vision-lab"].free == 2
    assert by_slug["cs101"].label == (
        "Intro to Deep Learning · none free now: course quota used: 1 3/4 of 2 GPUs"
    )
    assert half.project == "vision-lab"  # the one with room
    # Both full: the reason names each project.
    full = spots(config, "tina", in_use=using(cs101="2", vision_lab="4"))[HALF]
    assert full.disabled and full.reason == (
        "Intro to Deep Learning: course quota used: 2 of 2 GPUs; "
        "Computer Vision Lab: lab quota used: 4 of 4 GPUs"
    )


def test_default_project_and_the_last_choice_preselect() -> None:
    config = both_projects()
    assert spots(config, "tina")[HALF].project == "cs101"  # equal room: file order
    with_default = replace(config, settings=Settings(default_project="vision-lab"))
    assert spots(with_default, "tina")[HALF].project == "vision-lab"
    last = spots(with_default, "tina", chosen={"profile": HALF, "project": "cs101"})
    assert last[HALF].project == "cs101"
    # A project without room is never preselected while another has some.
    busy = spots(with_default, "tina", in_use=using(vision_lab="4"))
    assert busy[HALF].project == "cs101"


def test_the_chosen_choice_sets_the_slice_counted() -> None:
    # pytorch_GPU's "size" option picks 1/4, 1/2 or a whole RTX 3090; cs101's quota is 1 GPU.
    half_used = using(cs101="1/2")
    default = spots(Z2JH, in_use=half_used)["pytorch_GPU"]
    assert default.free == 2  # quarters: 1/2 left
    whole = spots(Z2JH, in_use=half_used, chosen={"profile": "pytorch_GPU", "size": "whole"})
    assert whole["pytorch_GPU"].free == 0
    # The spawn-time check counts the same slice.
    with pytest.raises(SpawnRefused, match="needs 1 more"):
        check_spawn(Z2JH, "student1", [], "pytorch_GPU", None, half_used, {"size": "whole"})
    assert check_spawn(Z2JH, "student1", [], "pytorch_GPU", None, half_used, {"size": "half"})


def test_profile_list_tells_this_users_count() -> None:
    found = spots(in_use=using(cs101="7/4"))
    entries = {
        e["slug"]: e
        for e in kubespawner_profile_list(profiles_for(CONFIG, "student1", []), availability=found)
    }
    quarter = entries[QUARTER]
    assert quarter["description"].endswith(" · 1 free now")  # not the hardware's 4
    assert quarter["ai_console"]["free_now"] == 1
    assert quarter["ai_console"]["availability"]["project"] == "cs101"
    assert entries[HALF]["description"].endswith(
        " · none free now: course quota used: 1 3/4 of 2 GPUs"
    )


# --- the forms ----------------------------------------------------------------------------


class Form(HTMLParser):
    """A rendered spawn form as a browser shows it, and what it would submit."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.profiles: dict[str, dict[str, Any]] = {}
        self._fieldset: dict[str, Any] | None = None
        self._select: list[dict[str, Any]] | None = None
        self._option: dict[str, Any] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "fieldset":
            self._fieldset = {"disabled": "disabled" in a, "text": "", "selects": {}}
            self.profiles[str(a["data-profile"])] = self._fieldset
        elif self._fieldset is None:
            return
        elif tag == "input" and a.get("type") == "radio":
            self._fieldset["checked"] = "checked" in a
        elif tag == "select":
            self._select = self._fieldset["selects"].setdefault(a["name"], [])
        elif tag == "option" and self._select is not None:
            self._option = {"value": a["value"], "selected": "selected" in a, "text": ""}
            self._option["disabled"] = "disabled" in a
            self._select.append(self._option)

    def handle_endtag(self, tag: str) -> None:
        if tag == "fieldset":
            self._fieldset = None
        elif tag == "select":
            self._select = None
        elif tag == "option":
            self._option = None

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option["text"] += data
        elif self._fieldset is not None:
            self._fieldset["text"] = " ".join((self._fieldset["text"] + " " + data).split())

    def text(self, slug: str) -> str:
        return self.profiles[slug]["text"]

    def submit(self, profile: str, **choices: str) -> dict[str, list[str]]:
        """The form data of choosing ``profile`` (and select ``name=value`` choices)."""
        assert not self.profiles[profile]["disabled"], f"{profile} cannot be chosen"
        data = {"profile": [profile]}
        for fieldset in self.profiles.values():
            if fieldset["disabled"]:
                continue  # a disabled fieldset submits nothing
            for name, options in fieldset["selects"].items():
                picked = [o for o in options if o["selected"]] or options[:1]
                value = choices.get(name, picked[0]["value"])
                assert any(o["value"] == value and not o["disabled"] for o in options), value
                data[name] = [value]
        return data


def form_of(user: str = "student1", with_options: bool = False, **kwargs: Any) -> Form:
    config = kwargs.pop("config", CONFIG)
    found = availability_for(config, user, [], CAPACITY, kwargs.pop("in_use", using()), None)
    return Form(render_spawn_form(found, user, kwargs.pop("user_options", {}), with_options))


@pytest.mark.parametrize("with_options", [False, True], ids=["local", "kubernetes"])
def test_none_free_is_shown_disabled_with_its_reason(with_options: bool) -> None:
    form = form_of(in_use=using(cs101="15/8"), with_options=with_options)
    quarter = form.profiles[QUARTER]
    assert quarter["disabled"] and not quarter["checked"]
    assert "none free now: course quota used: 1 7/8 of 2 GPUs" in form.text(QUARTER)
    # The default profile cannot start, so the form preselects one that can.
    assert form.profiles["cpu-only"]["checked"]
    with pytest.raises(AssertionError, match="cannot be chosen"):
        form.submit(QUARTER)


def test_plain_local_form_disables_too() -> None:
    """The local spawner's own form (no hub configuration) honours the same counts."""
    found = availability_for(CONFIG, "student1", [], CAPACITY, using(cs101="2"), None)
    entries = kubespawner_profile_list(
        [s.profile for s in found], availability={s.profile.slug: s for s in found}
    )
    html = render_profile_form(entries)
    assert f'value="{QUARTER}" disabled' in html and f'value="{QUARTER}" checked' not in html
    assert 'value="cpu-only" checked' in html and "course quota used: 2 of 2 GPUs" in html


def test_form_names_the_project_charged() -> None:
    form = form_of()
    assert "Charged to Intro to Deep Learning" in form.text(QUARTER)
    assert form.profiles[QUARTER]["selects"] == {}  # one project: nothing to choose
    outsider = form_of("outsider")
    assert "Charged to" not in outsider.text("cpu-only")


def test_project_choice_reaches_the_spawn_check() -> None:
    config = both_projects()
    form = form_of("tina", config=config, in_use=using(cs101="7/4"))
    [(field, options)] = form.profiles[HALF]["selects"].items()
    assert [(o["value"], o["disabled"], o["selected"]) for o in options] == [
        ("cs101", True, False),
        ("vision-lab", False, True),
    ]
    options = profile_from_form(form.submit(HALF))
    assert options == {"profile": HALF, "project": "vision-lab"}
    decision = check_spawn(
        config, "tina", [], options["profile"], options["project"], using(cs101="7/4")
    )
    assert decision.project is not None and decision.project.slug == "vision-lab"
    # The CPU profile fits both too, and is charged to the one chosen.
    chosen = profile_from_form(
        form.submit("cpu-only", **{field.replace(HALF, "cpu-only"): "cs101"})
    )
    assert chosen == {"profile": "cpu-only", "project": "cs101"}


async def test_kubespawner_reads_the_project_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner's own form parser keeps the project, and applies the profile as usual."""
    import kubespawner.spawner
    from kubespawner import KubeSpawner

    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)
    config = both_projects()
    found = availability_for(config, "admin", [], CAPACITY, using(), None)
    form = Form(render_spawn_form(found, "admin", {}, with_options=True))
    spawner = KubeSpawner(_mock=True)
    spawner.profile_list = kubespawner_profile_list(config.profiles)
    data = form.submit(A100, **{f"profile-option-{A100}--storage": "large"})
    spawner.user_options = spawner.run_options_from_form(data)
    # One project fits: nothing to choose, the hub charges it.
    assert spawner.user_options == {"profile": A100, "storage": "large"}
    await spawner.load_user_options()
    assert spawner.environment["SCRATCH_SIZE"] == "200Gi"
    field = f"profile-option-{HALF}--project"
    spawner.user_options = spawner.run_options_from_form(form.submit(HALF, **{field: "vision-lab"}))
    assert spawner.user_options == {"profile": HALF, "project": "vision-lab"}
    await spawner.load_user_options()  # no such profile option: KubeSpawner lets it be
    assert spawner.cpu_guarantee == 2.0


def test_form_keeps_the_last_options() -> None:
    form = form_of(
        "researcher", with_options=True, user_options={"profile": A100, "storage": "large"}
    )
    assert form.profiles[A100]["checked"]
    storage = form.profiles[A100]["selects"][f"profile-option-{A100}--storage"]
    assert [o["value"] for o in storage if o["selected"]] == ["large"]


def test_admin_texts_are_never_markup() -> None:
    evil = "<img src=x onerror=alert(1)>"
    cs101 = replace(CONFIG.projects["cs101"], display_name=f"Course {evil}")
    profiles = tuple(
        replace(p, display_name=f"{p.display_name} {evil}") if p.slug == QUARTER else p
        for p in CONFIG.profiles
    )
    config = replace(CONFIG, projects={**CONFIG.projects, "cs101": cs101}, profiles=profiles)
    found = availability_for(config, "student1", [], CAPACITY, using(cs101="2"), None)
    html = render_spawn_form(found, "student1", {}, with_options=True)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert f"Charged to Course {evil}" in Form(html).text(QUARTER)  # shown as text
    entries = kubespawner_profile_list(
        [s.profile for s in found], availability={s.profile.slug: s for s in found}
    )
    assert "<img" not in render_profile_form(entries)


# --- refusals, for who reads them -----------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "advice"),
    [
        ("student1", "stop one of your servers or jobs, or ask its course admin for more quota."),
        (
            "teacher",
            "stop a server or job of the course (the hub's admin page lists them), or ask a "
            "platform admin to raise its GPU quota.",
        ),
        ("admin", "stop a server or job, or raise projects.cs101.gpu_quota in {source}."),
    ],
)
def test_quota_refusal_is_worded_for_its_reader(user: str, advice: str) -> None:
    with pytest.raises(SpawnRefused) as info:
        check_spawn(CONFIG, user, [], QUARTER, "cs101", using(cs101="2"))
    assert info.value.reason == (
        "Intro to Deep Learning already uses 2 of its 2 GPUs; " + advice.format(source=EXAMPLE)
    )


@pytest.mark.parametrize(
    ("user", "advice"),
    [
        ("student1", "or ask its course admin for GPU quota."),
        ("teacher", "or ask a platform admin to give the course a GPU quota."),
        ("admin", "or set projects.cs101.gpu_quota in {source}."),
    ],
)
def test_zero_quota_refusal_is_worded_for_its_reader(user: str, advice: str) -> None:
    with pytest.raises(SpawnRefused) as info:
        check_spawn(with_quota(Fraction(0)), user, [], QUARTER, "cs101", using())
    assert info.value.reason == (
        "Intro to Deep Learning has no GPU quota; pick a CPU-only profile, "
        + advice.format(source=EXAMPLE)
    )


def test_students_read_names_not_slugs() -> None:
    refusals = []
    for profile, project, in_use in [
        (QUARTER, None, using(cs101="15/8")),
        (A100, None, using()),
        (HALF, "vision-lab", using()),
        (HALF, "nope", using()),
    ]:
        with pytest.raises(SpawnRefused) as info:
            check_spawn(CONFIG, "student1", [], profile, project, in_use)
        refusals.append(info.value.reason)
    for reason in refusals:
        assert "cs101" not in reason and "pytorch-" not in reason, reason
        assert not re.search(r"\d\.\d", reason), reason  # no decimals
    assert refusals[0].startswith("Intro to Deep Learning already uses 1 7/8 of its 2 GPUs")


def test_several_projects_refusal_tells_a_platform_admin_the_setting() -> None:
    with pytest.raises(SpawnRefused) as info:
        check_spawn(CONFIG, "admin", [], HALF, None, using())
    assert info.value.reason == (
        'Profile "PyTorch, 1/2 RTX 3090" can be charged to Intro to Deep Learning or Computer '
        'Vision Lab; choose one under "Charged to" in the spawn form. '
        f"settings.default_project in {EXAMPLE} picks one when a spawn names none."
    )


def several_types_config(gpu: GpuBlock) -> AiConsoleConfig:
    """The example with the quarter profile on ``gpu`` instead of one RTX3090 type."""
    profiles = tuple(replace(p, gpu=gpu) if p.slug == QUARTER else p for p in CONFIG.profiles)
    return replace(CONFIG, profiles=profiles)


def test_a_profile_of_several_types_counts_them_all_and_says_so() -> None:
    gpu = GpuBlock(Fraction(1, 4), ("V100", "A10"))
    config = several_types_config(gpu)
    capacity = {"V100": {Fraction(1, 4): 0}, "A10": {Fraction(1, 4): 3}, "T4": {Fraction(1, 4): 9}}
    spot = spots(config, capacity=capacity)[QUARTER]
    assert (spot.free, spot.note, spot.slice) == (3, "3 free now", "1/4 of V100 or A10")
    assert spot.as_dict()["slice"] == "1/4 of V100 or A10"
    none = spots(config, capacity={**capacity, "A10": {Fraction(1, 4): 0}})[QUARTER]
    assert none.disabled and none.note == "none free now: no 1/4 slice is free on V100 or A10"
    missing = spots(config, capacity={"T4": {Fraction(1, 4): 9}})[QUARTER]
    assert missing.note == "none free now: this hub has no V100 or A10 GPU"
    form = render_spawn_form([spot], "student1", {})
    assert '<p class="ai-console-slice">1/4 of V100 or A10</p>' in form
    zh = translator("zh-TW")
    assert texts.say(spot.slice, zh) == "V100 或 A10 的 1/4"
    assert texts.say(none.note, zh) == "目前無可用：V100 或 A10 沒有可用的 1/4 切片"


def test_any_gpu_with_enough_memory_counts_the_types_that_have_it() -> None:
    gpu = GpuBlock(Fraction(1, 4), None, min_memory_mib=16 * 1024)
    config = several_types_config(gpu)
    capacity = {t: {Fraction(1, 4): 2} for t in ("T4", "V100", "A10")}
    memory = {"T4": 15360, "V100": 16384, "A10": 24576}
    found = availability_for(config, "student1", [], capacity, using(), None, memory)
    spot = next(s for s in found if s.profile.slug == QUARTER)
    assert (spot.free, spot.slice) == (4, "1/4 of any GPU (16 GiB or more)")  # not the T4s
    zh = translator("zh-TW")
    assert texts.say(spot.slice, zh) == "任一 GPU（16 GiB 以上） 的 1/4"
    small = availability_for(config, "student1", [], capacity, using(), None, {"T4": 15360})
    spot = next(s for s in small if s.profile.slug == QUARTER)
    assert spot.note == "none free now: this hub has no GPU with 16 GiB or more"
    # One named type reads as before, with no slice line (the profile's name says it).
    assert spots()[QUARTER].slice == ""


def test_gpu_amounts_are_exact_fractions() -> None:
    amounts = [Fraction(x) for x in ("2", "1/4", "7/4", "4/3", "15/8", "0")]
    assert [gpu_amount(a) for a in amounts] == ["2", "1/4", "1 3/4", "1 1/3", "1 7/8", "0"]
    assert [gpus(a) for a in amounts[:3]] == ["2 GPUs", "1/4 GPU", "1 3/4 GPUs"]


# --- the API's scope -----------------------------------------------------------------------


async def test_spawn_options_scope_is_each_users_own(hub: JupyterHub) -> None:  # noqa: F811
    for role in load_roles(CONFIG):
        granted = [s for s in role.get("scopes", []) if s.startswith(SCOPE_SPAWN_OPTIONS)]
        if role["name"] == "user":
            assert granted == [f"{SCOPE_SPAWN_OPTIONS}!user"]
        elif role["name"] != "ai-console-platform-admin":
            assert granted == [], role["name"]
    student = scopes_of(hub, "student1")
    assert allowed(hub, student, f"{SCOPE_SPAWN_OPTIONS}!user=student1")
    assert not allowed(hub, student, f"{SCOPE_SPAWN_OPTIONS}!user=student2")
    assert not allowed(hub, scopes_of(hub, "teacher"), f"{SCOPE_SPAWN_OPTIONS}!user=student1")
    # A token asking for the unfiltered scope gets no more than the student holds.
    from jupyterhub import orm, roles

    user = orm.User.find(hub.db, "student1")
    have = roles.roles_to_scopes(roles.get_roles_for(user)) | {"inherit"}
    client = hub.db.query(orm.OAuthClient).filter_by(identifier="jupyterhub").one()
    granted, _ = scopes._resolve_requested_scopes({SCOPE_SPAWN_OPTIONS}, have, user, client, hub.db)
    token = scopes.get_scopes_for(orm.APIToken.find(hub.db, user.new_api_token(scopes=granted)))
    assert not allowed(hub, token, f"{SCOPE_SPAWN_OPTIONS}!user=student2")
