"""Every text the spawn form, its API and the spawn-time refusals show, in one place.

Kept together so a translation can follow one file: the form's counts and reasons are
:class:`Text`, said again in the reader's language by the spawn-options API (zh-TW in
``hub_config/locale``); the refusals at spawn time are English. GPU amounts are written one way
everywhere, as exact fractions (``1/4``, ``1 3/4``, ``2``): a quota is a sum of slice sizes, and a
decimal like 0.33 would hide whether a 1/3 slice still fits.

Refusals are worded for who reads them: a member (a student), an admin of the project at fault
(a course or lab admin, who cannot edit the admin file), or a platform admin (who can).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Literal

#: Who reads a refusal.
Reader = Literal["member", "project-admin", "platform-admin"]
#: English text -> the reader's language (hub_config.page_texts.translator).
Translate = Callable[[str], str]


def english(text: str) -> str:
    return text


class Text(str):
    """A sentence in English that remembers its template and values, so that it can be said
    again in the reader's language (:meth:`render`). It is the English string everywhere else:
    compared, joined and formatted as one."""

    template: str
    values: dict[str, Any]

    def __new__(cls, template: str, **values: Any) -> Text:
        text = super().__new__(cls, template.format(**values))
        text.template, text.values = template, values
        return text

    def render(self, translate: Translate = english) -> str:
        values = {k: say(v, translate) for k, v in self.values.items()}
        return translate(self.template).format(**values)


def say(value: Any, translate: Translate = english) -> Any:
    """``value`` in the reader's language where it is a :class:`Text`, else as it is."""
    return value.render(translate) if isinstance(value, Text) else value


def gpu_amount(amount: Fraction | int) -> str:
    """A GPU amount as a mixed fraction: ``2``, ``1/4``, ``1 3/4``."""
    amount = Fraction(amount)
    whole, rest = divmod(amount, 1)
    if not rest:
        return str(whole)
    return f"{whole} {rest}" if whole else str(rest)


def gpus(amount: Fraction | int) -> Text:
    """``1/4 GPU``, ``1 GPU``, ``1 3/4 GPUs``."""
    return Text(SEVERAL_GPUS if Fraction(amount) > 1 else ONE_GPU, amount=gpu_amount(amount))


QUOTED = '"{name}"'
EITHER = "{rest} or {last}"


def quoted(name: str) -> Text:
    """A display name inside a sentence."""
    return Text(QUOTED, name=name)


def either(names: Sequence[str]) -> str:
    """``A``, ``A or B``, ``A, B or C``."""
    names = list(names)
    return names[0] if len(names) == 1 else Text(EITHER, rest=", ".join(names[:-1]), last=names[-1])


def joined(*parts: str) -> Text:
    """Sentences and clauses one after the other, each said in the reader's language."""
    values = {f"p{i}": part for i, part in enumerate(parts)}
    return Text("".join(f"{{{name}}}" for name in values), **values)


# --- the form -----------------------------------------------------------------------------

FORM_HEADING = "Choose what your server runs on:"
FREE_NOW = "{count} free now"
NONE_FREE = "none free now: {reason}"
CHARGED_TO = "Charged to"
PROJECT_CHOICE = "{project} · {note}"
#: Shown under the form when the counts could not be refreshed.
REFRESH_FAILED = "The free counts could not be refreshed; they may be out of date."

# Why a GPU profile has none free now (lower case: they follow "none free now: ").
ALL_SLICES_TAKEN = "all {fraction} {gpu_type} slices are taken"
ALL_GPUS_TAKEN = "all {gpu_type} GPUs are taken"
NO_NODE_WITH = "no node has {count} {gpu_type} GPUs free"
NO_SUCH_GPU = "this hub has no {gpu_type} GPU"
QUOTA_USED = "{kind} quota used: {used} of {quota}"
QUOTA_TOO_SMALL = "it needs {need}, more than the whole {kind} quota of {quota}"
NO_QUOTA = "the {kind} has no GPU quota"
#: One project's reason, when a profile fits several of the user's projects.
PROJECT_REASON = "{project}: {reason}"
ONE_GPU = "{amount} GPU"
SEVERAL_GPUS = "{amount} GPUs"
# A slice that accepts several GPU types, or any (types: / type: any, min_memory).
ANY_GPU = "any GPU"
WITH_MEMORY = "{gpus} ({memory} or more)"
SHARE_OF = "{fraction} of {gpus}"
WHOLE_OF = "{count} of {gpus}"
NO_SHARE_FREE_ON = "no {fraction} slice is free on {gpus}"
NO_WHOLE_FREE_ON = "no node has {slice} free"
NO_GPU_WITH = "this hub has no {gpus} with {memory} or more"
NO_GPU = "this hub has no GPU"
#: The refusal when the inventory has no GPU type the slice accepts.
NO_TYPE_FITS = (
    "This needs {slice}, and this hub has no such GPU (its GPUs: {known}); pick another "
    "{what_kind}, or ask a platform admin."
)
#: The project kinds, as sentences name them.
KINDS = ("course", "lab")
#: The form's texts that are said in the reader's language (hub_config/locale).
FORM_TEXTS = (
    FORM_HEADING,
    CHARGED_TO,
    REFRESH_FAILED,
    FREE_NOW,
    NONE_FREE,
    ALL_SLICES_TAKEN,
    ALL_GPUS_TAKEN,
    NO_NODE_WITH,
    NO_SUCH_GPU,
    QUOTA_USED,
    QUOTA_TOO_SMALL,
    NO_QUOTA,
    PROJECT_REASON,
    SEVERAL_GPUS,  # ONE_GPU reads the same in zh-TW
    *KINDS,
    ANY_GPU,
    WITH_MEMORY,
    SHARE_OF,
    WHOLE_OF,
    NO_SHARE_FREE_ON,
    NO_WHOLE_FREE_ON,
    NO_GPU_WITH,
    NO_GPU,
)


def free_note(count: int | None, reason: str) -> Text:
    """The count of a GPU profile ("3 free now", "none free now: <reason>"), "" for CPU-only."""
    if count is None:
        return Text("")
    return Text(FREE_NOW, count=count) if count else Text(NONE_FREE, reason=reason)


def hardware_reason(fraction: Fraction, gpu_type: str, known_type: bool) -> Text:
    """Why no slice of this size can start on the hardware."""
    if not known_type:
        return Text(NO_SUCH_GPU, gpu_type=gpu_type)
    if fraction < 1:
        return Text(ALL_SLICES_TAKEN, fraction=gpu_amount(fraction), gpu_type=gpu_type)
    if fraction == 1:
        return Text(ALL_GPUS_TAKEN, gpu_type=gpu_type)
    return Text(NO_NODE_WITH, count=gpu_amount(fraction), gpu_type=gpu_type)


def accepted_gpus(types: Sequence[str] | None, min_memory: str | None = None) -> str:
    """The GPUs a slice accepts: ``V100 or A10``, ``any GPU``, ``any GPU (16 GiB or more)``."""
    named: str = either(types) if types else Text(ANY_GPU)
    return Text(WITH_MEMORY, gpus=named, memory=min_memory) if min_memory else named


def slice_on(fraction: Fraction, gpus_text: str) -> Text:
    """``1/4 of V100 or A10``, ``2 GPUs of any GPU (16 GiB or more)``."""
    if fraction < 1:
        return Text(SHARE_OF, fraction=gpu_amount(fraction), gpus=gpus_text)
    return Text(WHOLE_OF, count=gpus(fraction), gpus=gpus_text)


def several_types_reason(
    fraction: Fraction,
    types: Sequence[str] | None,
    min_memory: str | None,
    known_type: bool,
) -> Text:
    """Why no slice of this size can start on any of the GPU types a slice accepts
    (``types``, None: any; ``min_memory`` like ``16 GiB``, or None)."""
    accepted = accepted_gpus(types, min_memory)
    if not known_type:
        if min_memory:
            return Text(NO_GPU_WITH, gpus=either(types) if types else "GPU", memory=min_memory)
        return Text(NO_SUCH_GPU, gpu_type=either(types)) if types else Text(NO_GPU)
    if fraction < 1:
        return Text(NO_SHARE_FREE_ON, fraction=gpu_amount(fraction), gpus=accepted)
    return Text(NO_WHOLE_FREE_ON, slice=slice_on(fraction, accepted))


def quota_reason(kind: str, quota: Fraction, used: Fraction, need: Fraction) -> Text:
    """Why a project's quota leaves no room for a slice of ``need`` GPUs."""
    named = Text(kind)
    if quota == 0:
        return Text(NO_QUOTA, kind=named)
    if need > quota:
        return Text(QUOTA_TOO_SMALL, need=gpus(need), kind=named, quota=gpus(quota))
    return Text(QUOTA_USED, kind=named, used=gpu_amount(used), quota=gpus(quota))


def each_project(reasons: Sequence[tuple[str, str]]) -> Text:
    """Several projects' reasons, one after the other: ``cs101: <reason>; ml-lab: <reason>``."""
    values = {
        f"p{i}": Text(PROJECT_REASON, project=p, reason=r) for i, (p, r) in enumerate(reasons)
    }
    return Text("; ".join(f"{{{name}}}" for name in values), **values)


# --- refusals at spawn time -----------------------------------------------------------------

NO_PROFILE: dict[Reader, str] = {
    "member": "No profile is offered to you yet; ask a course admin to add you to their course.",
    "project-admin": "No profile is offered to you yet; ask a platform admin for one.",
    "platform-admin": "{source} lists no profile yet; add one under profiles.",
}
TYPE_REFUSED = "The {name} must be given by its name, not {value!r}."
UNKNOWN_PROFILE = (
    "There is no profile {slug!r}; pick one of the profiles offered in the spawn form."
)
NOT_YOUR_PROFILE = (
    "Profile {profile} is only for members of {projects}; pick another profile, or ask "
    "{who} to add you."
)
ADMIN_OF_ONE = "a {kind} admin of {project}"
ADMIN_OF_SEVERAL = "an admin of one of them"
UNKNOWN_PROJECT = "There is no project {slug!r}; {choice}."
NOT_A_MEMBER = "You are not a member of {project}; {choice}."
PICK_YOUR_PROJECT = "pick one of your projects: {projects}"
NO_PROJECT_OF_YOURS = "you are in no project, so leave the project empty"
NOT_OFFERED_TO = "Profile {profile} is not offered to {project}"
IMAGE_NOT_ALLOWED = "Profile {profile} runs {image}, which {project} does not allow"
CHARGE_INSTEAD = "; charge it to {projects} instead."
PICK_ANOTHER_PROFILE = "; pick another profile."
ALLOW_IMAGE = " To allow it, add {image_key} to projects.{slug}.images in {source}."
FITS_NONE = "Profile {profile} fits none of your projects; pick another profile."
SEVERAL_FIT = (
    "Profile {profile} can be charged to {projects}; choose one under "
    f'"{CHARGED_TO}" in the spawn form.'
)
SEVERAL_FIT_DEFAULT = " settings.default_project in {source} picks one when a spawn names none."

# Quota refusals: the situation, then what the reader can do about it.
NO_QUOTA_REFUSED = "{project} has no GPU quota; pick a CPU-only {what_kind}"
QUOTA_FULL = "{project} already uses {used} of its {quota}; "
QUOTA_PARTLY = (
    "{project} already uses {used} of its {quota} and {what} needs {need} more; "
    "pick a smaller {what_kind}, "
)
NO_QUOTA_ADVICE: dict[Reader, str] = {
    "member": ", or ask its {kind} admin for GPU quota.",
    "project-admin": ", or ask a platform admin to give the {kind} a GPU quota.",
    "platform-admin": ", or set projects.{slug}.gpu_quota in {source}.",
}
QUOTA_ADVICE: dict[Reader, str] = {
    "member": "stop one of your servers or jobs, or ask its {kind} admin for more quota.",
    "project-admin": "stop a server or job of the {kind} (the hub's admin page lists them), "
    "or ask a platform admin to raise its GPU quota.",
    "platform-admin": "stop a server or job, or raise projects.{slug}.gpu_quota in {source}.",
}
#: What a refusal names the thing refused: a profile (spawn) or a flavor (job).
WHAT_KINDS = ("profile", "flavor")
#: The refusals' texts, said in the reader's language where the hub knows it (the spawn's
#: request); with the words they use.
REFUSAL_TEXTS = (
    QUOTED,
    EITHER,
    *NO_PROFILE.values(),
    TYPE_REFUSED,
    UNKNOWN_PROFILE,
    NOT_YOUR_PROFILE,
    ADMIN_OF_ONE,
    ADMIN_OF_SEVERAL,
    UNKNOWN_PROJECT,
    NOT_A_MEMBER,
    PICK_YOUR_PROJECT,
    NO_PROJECT_OF_YOURS,
    NOT_OFFERED_TO,
    IMAGE_NOT_ALLOWED,
    CHARGE_INSTEAD,
    PICK_ANOTHER_PROFILE,
    ALLOW_IMAGE,
    FITS_NONE,
    SEVERAL_FIT,
    SEVERAL_FIT_DEFAULT,
    NO_QUOTA_REFUSED,
    QUOTA_FULL,
    QUOTA_PARTLY,
    *NO_QUOTA_ADVICE.values(),
    *QUOTA_ADVICE.values(),
    *WHAT_KINDS,
    NO_TYPE_FITS,
)
