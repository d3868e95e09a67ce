"""What ``ai-console.yaml`` describes, as frozen dataclasses.

Built by :mod:`hub_config.loader` after every check has passed, so code reading these objects
can trust them: references resolve, fractions are exact, slugs are unique.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from slugify import slugify

from gpu_fraction.model import SliceRequest, parse_fraction
from spawner.profile_options import chosen

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
    """A profile's GPU slice, as the admin wrote it (already validated)."""

    fraction: Fraction
    gpu_type: str
    compute_min: int | None = None
    compute_max: int | None = None
    memory_mib: int | None = None

    def slice_request(self, **pod_requests: Any) -> SliceRequest:
        """The allocator's request for this slice.

        ``pod_requests`` are the other :class:`SliceRequest` fields the caller knows
        (``cpu_millis``, ``host_memory_mib``, ``node``, ``zone``).
        """
        return SliceRequest(
            gpu_type=self.gpu_type,
            fraction=self.fraction,
            memory_mib=self.memory_mib,
            compute_min=self.compute_min,
            compute_max=100 if self.compute_max is None else self.compute_max,
            **pod_requests,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (``fraction`` as text like ``"1/4"``), for the spawner and the UI."""
        data: dict[str, Any] = {"fraction": str(self.fraction), "type": self.gpu_type}
        for name in ("compute_min", "compute_max", "memory_mib"):
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

    def slice_request(self, **extra: Any) -> SliceRequest | None:
        """The allocator's request, with this profile's CPU and memory guarantees; ``None``
        for a CPU-only profile."""
        if self.gpu is None:
            return None
        pod: dict[str, Any] = {}
        if self.cpu_guarantee is not None:
            pod["cpu_millis"] = int(self.cpu_guarantee * 1000)
        if self.mem_guarantee is not None:
            pod["host_memory_mib"] = memory_bytes(self.mem_guarantee) >> 20
        pod.update(extra)
        return self.gpu.slice_request(**pod)


@dataclass(frozen=True)
class Flavor:
    """A size of notebook job: CPUs and memory reserved, and an optional GPU slice.

    ``gpu_types`` lists the GPU types a job may run on (empty for CPU only); ``gpu`` is the
    slice for the first of them (:meth:`gpu_block` gives it for another).
    """

    name: str
    display_name: str
    cpu: float
    memory: int | str
    description: str = ""
    gpu: GpuBlock | None = None
    gpu_types: tuple[str, ...] = ()

    @property
    def fraction(self) -> Fraction:
        """GPUs a job of this flavor holds while it runs (0 for CPU only)."""
        return self.gpu.fraction if self.gpu else Fraction(0)

    def gpu_block(self, gpu_type: str) -> GpuBlock:
        """The slice on ``gpu_type`` (one of :attr:`gpu_types`)."""
        assert self.gpu is not None and gpu_type in self.gpu_types
        return GpuBlock(
            self.gpu.fraction,
            gpu_type,
            self.gpu.compute_min,
            self.gpu.compute_max,
            self.gpu.memory_mib,
        )

    def slice_request(self, gpu_type: str) -> SliceRequest:
        """The allocator's request for a job of this flavor on ``gpu_type``."""
        return self.gpu_block(gpu_type).slice_request(
            cpu_millis=int(self.cpu * 1000), host_memory_mib=memory_bytes(self.memory) >> 20
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
    types: tuple[str, ...] = ()
    block = None
    if gpu is not None:
        types = tuple(gpu["types"]) if "types" in gpu else (gpu["type"],)
        block = _gpu_block({**gpu, "type": types[0]})
    return Flavor(
        name=v["name"],
        display_name=v.get("display_name") or v["name"],
        cpu=float(v["cpu"]),
        memory=kubespawner_memory(v["memory"]),
        description=v.get("description", ""),
        gpu=block,
        gpu_types=types,
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


def _gpu_block(gpu: Mapping[str, Any]) -> GpuBlock:
    return GpuBlock(
        fraction=parse_fraction(gpu["fraction"]),
        gpu_type=gpu["type"],
        compute_min=gpu.get("compute_min"),
        compute_max=gpu.get("compute_max"),
        memory_mib=gpu.get("memory_mib"),
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
