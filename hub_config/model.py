"""What ``ai-console.yaml`` describes, as frozen dataclasses.

Built by :mod:`hub_config.loader` after every check has passed, so code reading these objects
can trust them: references resolve, fractions are exact, slugs are unique.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from slugify import slugify

from gpu_fraction.errors import AllocationRefused
from gpu_fraction.model import SliceRequest, parse_fraction
from gpu_fraction.type_choice import ANY_TYPE, accepted_types, memory_text, request_types
from spawner.profile_options import chosen

from . import spawn_texts as texts

ProjectKind = Literal["course", "lab"]

#: JupyterHub group that mirrors a project's members (see :mod:`hub_config.roles`).
PROJECT_GROUP_PREFIX = "project-"

_MEMORY_RE = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>[KMGT])i?$")
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
QUOTA_ALLOWED = "expected a number of GPUs >= 0 like 2, 0.5 or 3/2, or null for unlimited"


def show(value: Any) -> str:
    """A value as error messages quote it, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def project_group(slug: str) -> str:
    """The JupyterHub group of a project: ``project-<slug>``."""
    return f"{PROJECT_GROUP_PREFIX}{slug}"


def memory_bytes(value: int | str) -> int:
    """Bytes of a memory size as KubeSpawner reads it (``"2G"`` = 2 GiB, ``"2Gi"`` the same)."""
    if isinstance(value, int):
        return value
    match = _MEMORY_RE.match(value)
    if match is None:
        raise ValueError(f"not a memory size: {value!r}")
    return int(float(match["number"]) * _UNITS[match["unit"]])


def gpu_memory_mib(value: int | str) -> int:
    """MiB of a GPU memory size (``min_memory``): ``"16GiB"``, ``"16Gi"``, ``"16G"`` (powers of
    1024, as every memory size here), or bytes; whole MiB, rounded down."""
    if isinstance(value, str) and value.endswith("B") and not value[:-1].isdigit():
        value = value[:-1]
    return memory_bytes(value) >> 20


def kubespawner_memory(value: int | str) -> int | str:
    """The spelling KubeSpawner's ByteSpecification accepts: ``"8Gi"`` becomes ``"8G"``."""
    return value[:-1] if isinstance(value, str) and value.endswith("i") else value


@dataclass(frozen=True)
class Settings:
    """Hub-wide settings (the ``settings:`` block)."""

    allocator_policy: str = "binpack"
    default_project: str | None = None
    default_image: str | None = None
    #: Minutes unused before a notebook's slice is flagged idle.
    idle_after_minutes: float = 30.0
    #: Minutes idle before its server is stopped; None: never.
    stop_idle_after_minutes: float | None = None


@dataclass(frozen=True)
class Image:
    """One entry of the image marketplace."""

    key: str
    display_name: str
    image: str
    description: str = ""
    tags: tuple[str, ...] = ()
    #: Named by a profile's override (z2jh style) rather than an entry of ``images``; its key
    #: is the reference itself, so only projects that allow every image may use it.
    unlisted: bool = False


@dataclass(frozen=True)
class Project:
    """A course or lab. ``gpu_quota`` is a sum of slice sizes; ``None`` means unlimited.

    ``images`` of ``None`` means every image is allowed.
    """

    slug: str
    display_name: str
    kind: ProjectKind = "course"
    description: str = ""
    member_users: frozenset[str] = frozenset()
    member_groups: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    gpu_quota: Fraction | None = None
    images: tuple[str, ...] | None = None
    flavors: tuple[str, ...] | None = None

    @property
    def group(self) -> str:
        """The JupyterHub group mirroring this project's members."""
        return project_group(self.slug)

    def allows_image(self, image_key: str) -> bool:
        return self.images is None or image_key in self.images

    def allows_flavor(self, name: str) -> bool:
        return self.flavors is None or name in self.flavors


@dataclass(frozen=True)
class GpuBlock:
    """A profile's (or flavor's) GPU slice, as the admin wrote it (already validated).

    ``gpu_types`` are the GPU types the slice may use, in the admin's order: one for
    ``type: V100``, several for ``types: [V100, A10]`` (the allocator chooses where the slice
    fragments the cluster least), ``None`` for ``type: any``. ``min_memory_mib`` (``min_memory``)
    keeps only the types whose GPUs have at least that much memory, resolved against the
    inventory when a request is made (:meth:`slice_request`).
    """

    fraction: Fraction
    gpu_types: tuple[str, ...] | None
    compute_min: int | None = None
    compute_max: int | None = None
    memory_mib: int | None = None
    min_memory_mib: int | None = None

    @property
    def gpu_type(self) -> str | None:
        """The one GPU type of the slice; None when it accepts several or any."""
        types = self.gpu_types
        return types[0] if types is not None and len(types) == 1 else None

    @property
    def flexible(self) -> bool:
        """Whether the allocator, not the admin, picks the type (several, any, or by memory)."""
        return self.gpu_type is None or self.min_memory_mib is not None

    def accepted_types(self, memory: Mapping[str, int]) -> list[str]:
        """The inventory's types the slice may use; ``memory``: GPU type -> MiB of its smallest
        GPU (:func:`gpu_fraction.type_choice.memory_by_type`)."""
        return accepted_types(self.gpu_types, self.min_memory_mib, memory)

    def describe(self) -> str:
        """``1/4 of V100 or A10``, ``1/4 of any GPU (16 GiB or more)``, ``1/4 of V100``
        (a :class:`~hub_config.spawn_texts.Text`: said again in the reader's language)."""
        return texts.slice_on(self.fraction, self.gpus_text())

    def gpus_text(self) -> str:
        """The GPUs accepted: ``V100 or A10``, ``any GPU (16 GiB or more)``."""
        minimum = None if self.min_memory_mib is None else memory_text(self.min_memory_mib)
        return texts.accepted_gpus(self.gpu_types, minimum)

    def free_on(
        self, capacity: Mapping[str, Mapping[Fraction, int]], memory: Mapping[str, int] | None
    ) -> tuple[int, texts.Text]:
        """How many of this slice could start now on the hardware, summed over the types it
        accepts, and why none could. ``capacity``: GPU type -> slice size -> how many such
        slices could start now; ``memory`` as for :meth:`accepted_types` (None: not known,
        ``min_memory`` is then not applied)."""
        if not self.flexible:
            gpu_type = self.gpu_types[0]  # type: ignore[index]
            free = capacity.get(gpu_type, {}).get(self.fraction, 0)
            return free, texts.hardware_reason(self.fraction, gpu_type, gpu_type in capacity)
        if memory is None:
            types = accepted_types(self.gpu_types, None, dict.fromkeys(capacity, 0))
        else:
            types = [t for t in self.accepted_types(memory) if t in capacity]
        free = sum(capacity[t].get(self.fraction, 0) for t in types)
        minimum = None if self.min_memory_mib is None else memory_text(self.min_memory_mib)
        reason = texts.several_types_reason(self.fraction, self.gpu_types, minimum, bool(types))
        return free, reason

    def slice_request(
        self, memory: Mapping[str, int] | None = None, what_kind: str = "profile", **pod: Any
    ) -> SliceRequest:
        """The allocator's request for this slice.

        ``memory`` (GPU type -> MiB of its smallest GPU, the allocator's inventory now) is
        needed when the block has a ``min_memory``: no type left then raises
        :class:`~gpu_fraction.errors.AllocationRefused` naming the requirement (``what_kind``:
        what to pick instead, ``profile`` or ``flavor``). ``pod`` are the other
        :class:`SliceRequest` fields the caller knows (``cpu_millis``, ``host_memory_mib``,
        ``node``, ``zone``).
        """
        types = self.gpu_types
        if self.min_memory_mib is not None:
            if memory is None:
                raise ValueError("a slice with min_memory needs the GPU inventory")
            types = self.accepted_types(memory)
            if not types:
                raise AllocationRefused(self.no_type_fits(memory, what_kind))
        return SliceRequest(
            **request_types(types),
            fraction=self.fraction,
            memory_mib=self.memory_mib,
            compute_min=self.compute_min,
            compute_max=100 if self.compute_max is None else self.compute_max,
            **pod,
        )

    def no_type_fits(self, memory: Mapping[str, int], what_kind: str = "profile") -> texts.Text:
        """Why no GPU of the inventory can take this slice."""
        known = ", ".join(f"{t} {memory_text(m)}" for t, m in sorted(memory.items()))
        return texts.Text(
            texts.NO_TYPE_FITS,
            slice=self.describe(),
            known=known or "none",
            what_kind=texts.Text(what_kind),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (``fraction`` as text like ``"1/4"``), for the spawner and the UI:
        ``type`` for one type, ``types`` for several, ``type: any`` for any."""
        data: dict[str, Any] = {"fraction": str(self.fraction)}
        if self.gpu_types is None:
            data["type"] = ANY_TYPE
        elif len(self.gpu_types) == 1:
            data["type"] = self.gpu_types[0]
        else:
            data["types"] = list(self.gpu_types)
        for name in ("compute_min", "compute_max", "memory_mib", "min_memory_mib"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data


@dataclass(frozen=True)
class Profile:
    """One choice of the spawn form.

    ``projects`` of ``None`` means every logged-in user may use the profile.
    ``kubespawner_override`` and ``profile_options`` are the admin's pass-through dicts; treat
    them as read-only (copy before handing them to KubeSpawner, which merges into them).
    """

    slug: str
    display_name: str
    image: Image
    description: str = ""
    default: bool = False
    projects: tuple[str, ...] | None = None
    gpu: GpuBlock | None = None
    cpu_guarantee: float | None = None
    cpu_limit: float | None = None
    mem_guarantee: int | str | None = None
    mem_limit: int | str | None = None
    kubespawner_override: dict[str, Any] = field(default_factory=dict, hash=False)
    profile_options: dict[str, Any] = field(default_factory=dict, hash=False)
    #: option -> choice -> the slice that choice sets instead of ``gpu``.
    gpu_choices: dict[str, dict[str, GpuBlock]] = field(default_factory=dict, hash=False)
    #: option -> choice -> the image that choice sets instead of ``image``.
    image_choices: dict[str, dict[str, Image]] = field(default_factory=dict, hash=False)

    @property
    def fraction(self) -> Fraction:
        """GPUs the profile holds while running (0 for CPU-only), what quotas count."""
        return self.gpu.fraction if self.gpu else Fraction(0)

    def gpu_for(self, options: Mapping[str, Any] | None) -> GpuBlock | None:
        """The slice of a spawn with these ``user_options``: a chosen choice's ``gpu`` block
        (an option left out takes its default choice, as KubeSpawner does), else ``gpu``."""
        for option, blocks in self.gpu_choices.items():
            choice = chosen(self.profile_options, option, options or {})
            if choice in blocks:
                return blocks[choice]
        return self.gpu

    def fraction_for(self, options: Mapping[str, Any] | None) -> Fraction:
        """GPUs a spawn with these ``user_options`` holds (0 for CPU-only)."""
        gpu = self.gpu_for(options)
        return gpu.fraction if gpu else Fraction(0)

    @property
    def offers_gpu(self) -> bool:
        """Whether some spawn of this profile holds a GPU slice."""
        return self.gpu is not None or any(self.gpu_choices.values())

    def slice_request(
        self, memory: Mapping[str, int] | None = None, **extra: Any
    ) -> SliceRequest | None:
        """The allocator's request, with this profile's CPU and memory guarantees; ``None``
        for a CPU-only profile. ``memory``: as for :meth:`GpuBlock.slice_request`."""
        if self.gpu is None:
            return None
        pod: dict[str, Any] = {}
        if self.cpu_guarantee is not None:
            pod["cpu_millis"] = int(self.cpu_guarantee * 1000)
        if self.mem_guarantee is not None:
            pod["host_memory_mib"] = memory_bytes(self.mem_guarantee) >> 20
        pod.update(extra)
        return self.gpu.slice_request(memory, **pod)


@dataclass(frozen=True)
class Flavor:
    """A size of notebook job: CPUs and memory reserved, and an optional GPU slice.

    ``gpu`` is the slice with every type the flavor accepts (:attr:`GpuBlock.gpu_types`; None:
    any); a job may name one of them (:meth:`gpu_block`) or none, and the allocator chooses.
    """

    name: str
    display_name: str
    cpu: float
    memory: int | str
    description: str = ""
    gpu: GpuBlock | None = None

    @property
    def gpu_types(self) -> tuple[str, ...]:
        """The GPU types the flavor lists (empty for CPU only, and for ``type: any``)."""
        return (self.gpu.gpu_types or ()) if self.gpu else ()

    @property
    def fraction(self) -> Fraction:
        """GPUs a job of this flavor holds while it runs (0 for CPU only)."""
        return self.gpu.fraction if self.gpu else Fraction(0)

    def accepts_type(self, gpu_type: str) -> bool:
        """Whether a job may ask for ``gpu_type`` by name (``type: any``: every type; the
        inventory and ``min_memory`` are checked when the slice is reserved)."""
        return self.gpu is not None and (
            self.gpu.gpu_types is None or gpu_type in self.gpu.gpu_types
        )

    def gpu_block(self, gpu_type: str | None = None) -> GpuBlock:
        """The slice on ``gpu_type`` (one the flavor accepts); None: on any of its types."""
        assert self.gpu is not None
        if gpu_type is None:
            return self.gpu
        assert self.accepts_type(gpu_type)
        return dataclasses.replace(self.gpu, gpu_types=(gpu_type,))

    def slice_request(
        self, gpu_type: str | None = None, memory: Mapping[str, int] | None = None
    ) -> SliceRequest:
        """The allocator's request for a job of this flavor on ``gpu_type`` (None: any of the
        flavor's types); ``memory`` as for :meth:`GpuBlock.slice_request`."""
        return self.gpu_block(gpu_type).slice_request(
            memory,
            "flavor",
            cpu_millis=int(self.cpu * 1000),
            host_memory_mib=memory_bytes(self.memory) >> 20,
        )


@dataclass(frozen=True)
class AiConsoleConfig:
    """The whole admin file."""

    platform_admins: frozenset[str] = frozenset()
    settings: Settings = field(default_factory=Settings)
    images: dict[str, Image] = field(default_factory=dict, hash=False)
    projects: dict[str, Project] = field(default_factory=dict, hash=False)
    profiles: tuple[Profile, ...] = ()
    flavors: tuple[Flavor, ...] = ()
    source: str = "ai-console.yaml"
    #: What the loader noticed but did not refuse (unknown keys of a profile), one line each.
    warnings: tuple[str, ...] = ()

    def profile(self, slug: str) -> Profile | None:
        return next((p for p in self.profiles if p.slug == slug), None)

    def flavor(self, name: str) -> Flavor | None:
        return next((f for f in self.flavors if f.name == name), None)

    def project(self, slug: str) -> Project | None:
        return self.projects.get(slug)


def parse_quota(value: Any) -> Fraction:
    """A project's GPU quota: a number of GPUs >= 0 (``2``, ``0.5``, ``"3/2"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{QUOTA_ALLOWED}, got {show(value)}")
    try:
        amount = Fraction(value.strip() if isinstance(value, str) else value)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(f"{QUOTA_ALLOWED}, got {show(value)}") from None
    if isinstance(value, float) or (isinstance(value, str) and "." in value):
        amount = amount.limit_denominator(1000)
    if amount < 0:
        raise ValueError(f"{QUOTA_ALLOWED}, got {show(value)}; use 0 for no GPUs")
    return amount


def derive_slug(display_name: str) -> str:
    """A profile's slug from its title, as KubeSpawner derives it (python-slugify), so saved
    ``?profile=`` links and API callers keep working: ``"PyTorch, 1/4 RTX 3090"`` ->
    ``pytorch-1-4-rtx-3090``; non-ASCII is transliterated, long names are kept whole."""
    return slugify(display_name)


def image_reference(value: Mapping[str, Any], images: Mapping[str, Any], default: str | None):
    """What a profile (or a choice) runs: ``("key", k)`` for an entry of ``images``,
    ``("reference", ref)`` for an image of its own, or ``None`` when it names none.

    ``image:`` names a key; ``kubespawner_override.image`` a reference, matched to the entry of
    ``images`` that has it. ``default`` (a key or a reference) applies when neither is given.
    """
    if isinstance(value.get("image"), str):
        return ("key", value["image"])
    override = value.get("kubespawner_override")
    reference = override.get("image") if isinstance(override, Mapping) else None
    if reference is None:
        reference = default
        if isinstance(reference, str) and reference in images:
            return ("key", reference)
    if not isinstance(reference, str):
        return None
    for key, image in images.items():
        # Raw YAML (the loader's checks) or built Image objects.
        listed = image.get("image") if isinstance(image, Mapping) else getattr(image, "image", None)
        if listed == reference:
            return ("key", key)
    return ("reference", reference)


# --- building from checked data -----------------------------------------------------------


def build_config(
    data: dict[str, Any], source: str = "ai-console.yaml", warnings: tuple[str, ...] = ()
) -> AiConsoleConfig:
    """The model from parsed YAML that :func:`hub_config.loader.parse_config` has checked."""
    images = {
        key: Image(
            key=key,
            display_name=v["display_name"],
            image=v["image"],
            description=v.get("description", ""),
            tags=tuple(v.get("tags", ())),
        )
        for key, v in (data.get("images") or {}).items()
    }
    projects = {}
    for slug, v in (data.get("projects") or {}).items():
        members = v.get("members") or {}
        quota = v.get("gpu_quota")
        projects[slug] = Project(
            slug=slug,
            display_name=v["display_name"],
            kind=v.get("kind", "course"),
            description=v.get("description", ""),
            member_users=frozenset(members.get("users", ())),
            member_groups=frozenset(members.get("groups", ())),
            admins=frozenset(v.get("admins", ())),
            gpu_quota=None if quota is None else parse_quota(quota),
            images=tuple(v["images"]) if "images" in v else None,
            flavors=tuple(v["flavors"]) if "flavors" in v else None,
        )
    settings = data.get("settings") or {}
    return AiConsoleConfig(
        platform_admins=frozenset(data.get("platform_admins") or ()),
        settings=Settings(
            allocator_policy=settings.get("allocator_policy", "binpack"),
            default_project=settings.get("default_project"),
            default_image=settings.get("default_image"),
            idle_after_minutes=float(settings.get("idle_after_minutes", 30.0)),
            stop_idle_after_minutes=settings.get("stop_idle_after_minutes"),
        ),
        images=images,
        projects=projects,
        profiles=tuple(
            _build_profile(v, images, profile_default_image(settings, images))
            for v in data["profiles"]
        ),
        flavors=tuple(_build_flavor(v) for v in data.get("flavors") or ()),
        source=source,
        warnings=warnings,
    )


def _build_flavor(v: dict) -> Flavor:
    gpu = v.get("gpu")
    return Flavor(
        name=v["name"],
        display_name=v.get("display_name") or v["name"],
        cpu=float(v["cpu"]),
        memory=kubespawner_memory(v["memory"]),
        description=v.get("description", ""),
        gpu=None if gpu is None else _gpu_block(gpu),
    )


def profile_default_image(settings: Mapping[str, Any], images: Mapping[str, Image]) -> str | None:
    """settings.default_image, else the first entry of images (its key)."""
    return settings.get("default_image") or next(iter(images), None)


def _image(value: Mapping[str, Any], images: dict[str, Image], default: str | None) -> Image | None:
    found = image_reference(value, images, default)
    if found is None:
        return None
    kind, name = found
    if kind == "key":
        return images[name]
    return Image(key=name, display_name=name, image=name, unlisted=True)


def gpu_types_of(gpu: Mapping[str, Any]) -> tuple[str, ...] | None:
    """A checked gpu: block's types: ``types``, or ``(type,)``, or None for ``type: any``."""
    if "types" in gpu:
        return tuple(gpu["types"])
    return None if gpu["type"] == ANY_TYPE else (gpu["type"],)


def _gpu_block(gpu: Mapping[str, Any]) -> GpuBlock:
    minimum = gpu.get("min_memory")
    return GpuBlock(
        fraction=parse_fraction(gpu["fraction"]),
        gpu_types=gpu_types_of(gpu),
        compute_min=gpu.get("compute_min"),
        compute_max=gpu.get("compute_max"),
        memory_mib=gpu.get("memory_mib"),
        min_memory_mib=None if minimum is None else gpu_memory_mib(minimum),
    )


def _build_profile(v: dict, images: dict[str, Image], default_image: str | None) -> Profile:
    gpu, cpu, memory = v.get("gpu"), v.get("cpu") or {}, v.get("memory") or {}
    image = _image(v, images, default_image)
    assert image is not None  # the loader has checked that every profile has an image
    gpu_choices: dict[str, dict[str, GpuBlock]] = {}
    image_choices: dict[str, dict[str, Image]] = {}
    for option, spec in (v.get("profile_options") or {}).items():
        for key, choice in ((spec or {}).get("choices") or {}).items():
            if choice.get("gpu") is not None:
                gpu_choices.setdefault(option, {})[key] = _gpu_block(choice["gpu"])
            if "image" in (choice.get("kubespawner_override") or {}):
                image_choices.setdefault(option, {})[key] = _image(choice, images, None)
    return Profile(
        slug=v.get("slug") or derive_slug(v["display_name"]),
        display_name=v["display_name"],
        image=image,
        description=v.get("description") or "",
        default=bool(v.get("default", False)),
        projects=tuple(v["projects"]) if "projects" in v else None,
        gpu=None if gpu is None else _gpu_block(gpu),
        cpu_guarantee=None if cpu.get("guarantee") is None else float(cpu["guarantee"]),
        cpu_limit=None if cpu.get("limit") is None else float(cpu["limit"]),
        mem_guarantee=None
        if memory.get("guarantee") is None
        else kubespawner_memory(memory["guarantee"]),
        mem_limit=None if memory.get("limit") is None else kubespawner_memory(memory["limit"]),
        kubespawner_override=dict(v.get("kubespawner_override") or {}),
        profile_options=dict(v.get("profile_options") or {}),
        gpu_choices=gpu_choices,
        image_choices=image_choices,
    )
