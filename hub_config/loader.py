"""Read ``ai-console.yaml``: YAML, then the schema, then the checks between sections.

Every problem in the file is collected and reported at once, one line each, as
``<file>: <field path>: <what is wrong and what is allowed>``, so an admin fixes the file in one
pass instead of one error per reload.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from gpu_fraction import keys
from gpu_fraction.enforcement import (
    ENV_CUDA_VISIBLE_DEVICES,
    ENV_MPS_PINNED_MEM_LIMIT,
    ENV_MPS_PIPE_DIRECTORY,
    ENV_MPS_THREAD_PERCENTAGE,
    ENV_NVIDIA_VISIBLE_DEVICES,
)
from gpu_fraction.errors import InvalidRequestError
from gpu_fraction.model import MAX_GPU_MEMORY_MIB, check_gpu_type, parse_fraction

from .model import (
    ANY_TYPE,
    AiConsoleConfig,
    GpuBlock,
    build_config,
    derive_slug,
    gpu_memory_mib,
    gpu_types_of,
    image_reference,
    memory_bytes,
    parse_quota,
    profile_default_image,
    show,
)
from .schema import IMAGE_REFERENCE_PATTERN, PROFILE_SCHEMA, PROFILE_SLUG_ALLOWED, schema_errors

FieldPath = tuple[Any, ...]
EXAMPLE = Path(__file__).parent / "examples" / "ai-console.yaml"

#: Environment variables the spawner sets from the allocation; an override must not replace them.
FORBIDDEN_ENV = (
    ENV_NVIDIA_VISIBLE_DEVICES,
    ENV_CUDA_VISIBLE_DEVICES,
    ENV_MPS_PINNED_MEM_LIMIT,
    ENV_MPS_THREAD_PERCENTAGE,
    ENV_MPS_PIPE_DIRECTORY,
)
#: KubeSpawner settings a profile (or a choice of its options) may override. Anything else is
#: refused by name: the pod's identity, privileges and containers belong to the platform (an
#: unknown key would otherwise pass silently, typo or not). On a GPU profile the placement
#: keys narrow the nodes the allocator chooses from (the spawner reads them).
OVERRIDE_KEYS = (
    "image",
    "node_selector",
    "node_affinity_required",
    "environment",
    "cpu_guarantee",
    "cpu_limit",
    "mem_guarantee",
    "mem_limit",
    "extra_resource_guarantees",
    "extra_resource_limits",
    "default_url",
    "start_timeout",
    "http_timeout",
    "args",
    "working_dir",
    "notebook_dir",
    "storage_capacity",
    "storage_class",
    "volumes",
    "volume_mounts",
    "lifecycle_hooks",
    "tolerations",
    "extra_labels",
    "extra_annotations",
    "uid",
    "gid",
    "fs_gid",
    "supplemental_gids",
)
#: Why some keys are not in OVERRIDE_KEYS, in the words of the refusal.
_REFUSED_KEYS = {
    "extra_container_config": "it can replace the image or the container's security settings",
    "extra_pod_config": "it can give the pod the host's PIDs, network or devices",
    "extra_containers": "a sidecar would run outside the GPU slice's limits",
    "init_containers": "an init container would run outside the GPU slice's limits",
    "privileged": "user pods never run privileged",
    "allow_privilege_escalation": "user pods never gain privileges",
    "container_security_context": "the platform sets the container's security context",
    "pod_security_context": "the platform sets the pod's security context",
    "automount_service_account_token": "user pods hold no Kubernetes credentials",
    "service_account": "user pods hold no Kubernetes credentials",
}
_RESOURCE_KEYS = ("extra_resource_limits", "extra_resource_guarantees")
#: Profile blocks that set KubeSpawner settings; the override must not set them a second time.
_BLOCK_SETTINGS = {
    ("cpu", "guarantee"): "cpu_guarantee",
    ("cpu", "limit"): "cpu_limit",
    ("memory", "guarantee"): "mem_guarantee",
    ("memory", "limit"): "mem_limit",
}
_FRACTION_ALLOWED = "expected a fraction like 1/4 or 0.25, or a whole number 1..8"
_TOP_ORDER = {
    "platform_admins": 0,
    "settings": 1,
    "images": 2,
    "projects": 3,
    "profiles": 4,
    "flavors": 5,
}
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Problem:
    """One mistake: where it is (a field path) and what is wrong."""

    path: FieldPath
    message: str

    def __str__(self) -> str:
        where = format_path(self.path)
        return f"{where}: {self.message}" if where else self.message


class ConfigError(ValueError):
    """``ai-console.yaml`` cannot be used; the message lists every problem, one per line."""

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {problem}" for problem in self.problems))

    @classmethod
    def about_file(cls, source: str, message: str) -> ConfigError:
        """A problem with the file as a whole (missing, empty, not YAML)."""
        return cls(source, [Problem((), message)])


class _Problems(list):
    def add(self, path: FieldPath, message: str) -> None:
        self.append(Problem(tuple(path), message))


def format_path(path: FieldPath) -> str:
    """``("profiles", 2, "gpu", "fraction")`` -> ``profiles[2].gpu.fraction``."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]' if isinstance(part, str) else f"[{part!r}]"
    return text


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would silently merge."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # `<<: *defaults`: SafeLoader merges it; later keys override
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r}; each key may appear once here",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: Bounds on the file's shape, far above any real ai-console.yaml: a document nested deeper, or
#: one whose aliases expand to more values (a "billion laughs"), is refused before it is built.
MAX_DEPTH = 40
MAX_VALUES = 200_000


def _shape_problem(root: yaml.Node | None) -> str | None:
    """Why the composed document is too deep or expands too far, or None. Each node is
    measured once (aliases share nodes), so this is linear in the text however it expands."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)] if root is not None else []
    while stack:
        node, depth, children_done = stack.pop()
        if depth > MAX_DEPTH:
            line = node.start_mark.line + 1
            return f"line {line}: nested more than {MAX_DEPTH} levels deep; flatten the file"
        children = _children(node)
        if children_done or not children:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 0) for c in children)
            if sizes[id(node)] > MAX_VALUES:
                return (
                    f"the file expands to more than {MAX_VALUES} values (YAML aliases used "
                    "over and over?); write the values out or use fewer aliases"
                )
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_config(path: str | Path) -> AiConsoleConfig:
    """Read and check the admin file; raises :class:`ConfigError` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.about_file(
            source, f"file not found; create it (start from {EXAMPLE}) or fix the path"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError.about_file(
            source, f"cannot read the file ({err}); make it a readable UTF-8 text file"
        ) from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        shape = _shape_problem(node)
        if shape is not None:
            raise ConfigError.about_file(source, shape)
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise ConfigError.about_file(
            source, f"nested more than {MAX_DEPTH} levels deep; flatten the file"
        ) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = err.problem or err.context or "invalid YAML"
        raise ConfigError.about_file(
            source, f"{where}YAML syntax error: {reason}; check the indentation and quoting there"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError.about_file(source, f"YAML syntax error: {err}") from None
    finally:
        loader.dispose()
    return parse_config(data, source)


def parse_config(data: Any, source: str = "ai-console.yaml") -> AiConsoleConfig:
    """Check parsed YAML and build the model; raises :class:`ConfigError` listing every problem."""
    if data is None:
        raise ConfigError.about_file(
            source, f"the file is empty; describe images, projects and profiles (see {EXAMPLE})"
        )
    if not isinstance(data, dict):
        raise ConfigError.about_file(
            source,
            "the top level must be a mapping with keys platform_admins, settings, images, "
            f"projects and profiles, got {type(data).__name__}",
        )
    found = [Problem(path, message) for path, message in schema_errors(data)]
    problems = list(dict.fromkeys(found + _semantic_problems(data)))
    if problems:
        problems.sort(key=lambda p: _sort_key(p.path))
        raise ConfigError(source, problems)
    warnings = tuple(f"{source}: {w}" for w in _profile_warnings(data))
    return build_config(data, source, warnings)


def _profile_warnings(data: dict) -> list[Problem]:
    """What loads but may not be what the admin meant: keys of a profile that neither we nor
    KubeSpawner read (z2jh lists carry keys of their own), and whole GPUs passed to the NVIDIA
    device plugin, which the allocator neither places nor counts."""
    known = list(PROFILE_SCHEMA["properties"])
    types = _gpu_types(data)
    found = []
    for i, profile in enumerate(_list(data.get("profiles"))):
        for key in _dict(profile):
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
            found.append(Problem(("profiles", i, key), f"ignored (not a profile setting); {hint}"))
        override = _dict(_dict(profile).get("kubespawner_override"))
        for key in _RESOURCE_KEYS:
            for resource in _dict(override.get(key)):
                if str(resource).startswith("nvidia.com/"):
                    found.append(
                        Problem(
                            ("profiles", i, "kubespawner_override", key, resource),
                            "passed to the NVIDIA device plugin: the server gets whole GPUs "
                            "(or MIG) on nodes not labelled for sharing, outside the project "
                            "quota; for a slice the hub places and counts, write gpu: "
                            f"{{fraction: 1, type: <one of: {types}>}} instead",
                        )
                    )
    return found


def _gpu_types(data: dict) -> str:
    """The GPU types the file's gpu: blocks name, for hints."""
    named = []
    for entry in [*_list(data.get("profiles")), *_list(data.get("flavors"))]:
        gpu = _dict(_dict(entry).get("gpu"))
        named += [gpu.get("type"), *_list(gpu.get("types"))]
    types = [t for t in dict.fromkeys(named) if isinstance(t, str) and t != ANY_TYPE]
    return ", ".join(types) or "your GPU type, like RTX3090"


def _sort_key(path: FieldPath) -> tuple:
    """File order: top-level sections as the example lists them, list items by index."""
    head = _TOP_ORDER.get(str(path[0]), 9) if path else -1
    return (head, *((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in path[1:]))


# --- checks between sections ----------------------------------------------------------------
# They read the raw data defensively: a value of the wrong type has already been reported by
# the schema, and is skipped here rather than reported twice.


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _names(mapping: Mapping) -> str:
    return ", ".join(map(str, mapping)) or "none defined"


def _semantic_problems(data: dict) -> list[Problem]:
    images, projects = _dict(data.get("images")), _dict(data.get("projects"))
    problems = _Problems()
    flavors = _flavor_problems(problems, _list(data.get("flavors")))
    for slug, project in projects.items():
        project = _dict(project)
        if project.get("gpu_quota") is not None:
            try:
                parse_quota(project["gpu_quota"])
            except ValueError as err:
                problems.add(("projects", slug, "gpu_quota"), str(err))
        for i, key in enumerate(_list(project.get("images"))):
            if isinstance(key, str) and key not in images:
                problems.add(
                    ("projects", slug, "images", i),
                    f"unknown image {key!r}; defined images: {_names(images)}",
                )
        for i, name in enumerate(_list(project.get("flavors"))):
            if isinstance(name, str) and name not in flavors:
                problems.add(
                    ("projects", slug, "flavors", i),
                    f"unknown flavor {name!r}; defined flavors: {_names(flavors)}",
                )
    idle = _dict(data.get("settings"))
    flag, stop = idle.get("idle_after_minutes", 30), idle.get("stop_idle_after_minutes")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (flag, stop))
    if numbers and stop < flag:
        problems.add(
            ("settings", "stop_idle_after_minutes"),
            f"expected at least idle_after_minutes ({flag}): a server is stopped only after "
            f"its user was warned that it is idle, got {stop}",
        )
    default_project = _dict(data.get("settings")).get("default_project")
    if isinstance(default_project, str) and default_project not in projects:
        problems.add(("settings", "default_project"), _unknown_project(default_project, projects))
    slugs: dict[str, int] = {}
    first_default: int | None = None
    for i, profile in enumerate(_list(data.get("profiles"))):
        if not isinstance(profile, dict):
            continue
        where = ("profiles", i)
        slug = profile.get("slug")
        if slug is None and isinstance(profile.get("display_name"), str):
            slug = derive_slug(profile["display_name"])
            if not slug:
                problems.add(
                    (*where, "display_name"),
                    f"cannot derive a slug from this name; add slug: with {PROFILE_SLUG_ALLOWED}",
                )
        if isinstance(slug, str) and slug in slugs:
            derived = "" if "slug" in profile else " (derived from display_name)"
            problems.add(
                (*where, "slug"),
                f"slug {slug!r}{derived} is already used by profiles[{slugs[slug]}]; "
                "give each profile its own slug",
            )
        elif isinstance(slug, str) and slug:
            slugs[slug] = i
        if profile.get("default") is True:
            if first_default is not None:
                problems.add(
                    (*where, "default"),
                    f"profiles[{first_default}] is already the default; only one profile "
                    "may be default",
                )
            first_default = i if first_default is None else first_default
        default_image = profile_default_image(_dict(data.get("settings")), images)
        _profile_problems(problems, profile, where, images, projects, default_image)
    return problems


def _flavor_problems(problems: _Problems, flavors: list) -> dict[str, int]:
    """Check the flavors; returns name -> index of those with a usable name."""
    names: dict[str, int] = {}
    for i, flavor in enumerate(flavors):
        if not isinstance(flavor, dict):
            continue
        where = ("flavors", i)
        for block in ("cpu", "memory"):
            problem = _amount_problem(block, flavor.get(block))
            if problem:
                problems.add((*where, block), problem)
        name = flavor.get("name")
        if isinstance(name, str) and name in names:
            problems.add(
                (*where, "name"),
                f"name {name!r} is already used by flavors[{names[name]}]; give each flavor "
                "its own name",
            )
        elif isinstance(name, str):
            names[name] = i
        gpu = flavor.get("gpu")
        if isinstance(gpu, dict):
            _gpu_problems(problems, gpu, (*where, "gpu"))
    return names


def _unknown_project(slug: str, projects: Mapping) -> str:
    return f"unknown project {slug!r}; defined projects: {_names(projects)}"


#: The most a profile or flavor may ask for (far above any node; well below what overflows).
MAX_CPUS = 1024
MAX_MEMORY_BYTES = 64 << 40  # 64 TiB


def _amount_problem(block: str, value: Any) -> str | None:
    """Why a CPU count or memory size cannot be a request, or None (types: the schema's)."""
    if value is None or isinstance(value, bool):
        return None
    if block == "cpu":
        if isinstance(value, (int, float)) and not (math.isfinite(value) and value <= MAX_CPUS):
            return f"must be a number of CPUs between 0 and {MAX_CPUS}, got {value!r}"
        return None
    try:
        size = memory_bytes(value)
    except (TypeError, ValueError):
        return None
    if size > MAX_MEMORY_BYTES:
        return f"must be at most 64Ti, got {value!r}"
    return None


def _profile_problems(
    problems: _Problems,
    profile: dict,
    where: FieldPath,
    images: dict,
    projects: dict,
    default_image: str | None,
) -> None:
    image = _image_problems(problems, profile, where, images, default_image)
    allowed_in = _project_problems(problems, profile, where, projects, image)
    offers_gpu = isinstance(profile.get("gpu"), dict)
    if offers_gpu:
        _gpu_problems(problems, profile["gpu"], (*where, "gpu"))
    for block, size in (("cpu", float), ("memory", memory_bytes)):
        pair = _dict(profile.get(block))
        for key in ("guarantee", "limit"):
            problem = _amount_problem(block, pair.get(key))
            if problem:
                problems.add((*where, block, key), problem)
        low, high = pair.get("guarantee"), pair.get("limit")
        try:
            if low is not None and high is not None and size(low) > size(high):
                problems.add(
                    (*where, block, "guarantee"),
                    f"the guarantee {low} is above the limit {high}; lower the guarantee "
                    "or raise the limit",
                )
        except (TypeError, ValueError):
            pass  # the schema has reported the malformed value
    options = _dict(profile.get("profile_options"))
    for name, option in options.items():
        for key, choice in _dict(_dict(option).get("choices")).items():
            if isinstance(_dict(choice).get("gpu"), dict):
                path = (*where, "profile_options", name, "choices", key, "gpu")
                _gpu_problems(problems, choice["gpu"], path)
                offers_gpu = True
    overrides = [((*where, "kubespawner_override"), profile.get("kubespawner_override"))]
    # Choices of profile_options carry overrides too, and could undo the slice the same way.
    for name, option in options.items():
        option_path = (*where, "profile_options", name)
        for key, choice in _dict(_dict(option).get("choices")).items():
            path = (*option_path, "choices", key)
            override = _dict(choice).get("kubespawner_override")
            overrides.append(((*path, "kubespawner_override"), override))
            if isinstance(override, dict) and "image" in override:
                found = image_reference(choice, images, None)
                _image_allowed(
                    problems, (*path, "kubespawner_override", "image"), found, allowed_in
                )
        unlisted = _dict(_dict(option).get("unlisted_choice"))
        override = unlisted.get("kubespawner_override")
        overrides.append(((*option_path, "unlisted_choice", "kubespawner_override"), override))
        if "image" in _dict(override) and not unlisted.get("validation_regex"):
            problems.add(
                (*option_path, "unlisted_choice", "validation_regex"),
                "a typed-in image needs a validation_regex (like ^quay\\.io/jupyter/.+$), so "
                "users can name only images you allow",
            )
    for path, override in overrides:
        if isinstance(override, dict):
            problems.extend(override_problems(override, path, gpu_profile=offers_gpu))
    override = _dict(profile.get("kubespawner_override"))
    for (block, key), setting in _BLOCK_SETTINGS.items():
        if key in _dict(profile.get(block)) and setting in override:
            problems.add(
                (*where, "kubespawner_override", setting),
                f"also set by {block}.{key}; keep only {block}.{key}",
            )


def _image_problems(
    problems: _Problems, profile: dict, where: FieldPath, images: dict, default: str | None
) -> tuple[str, str] | None:
    """The profile's image as :func:`hub_config.model.image_reference` finds it, or None after
    reporting why it has none."""
    key = profile.get("image")
    override = _dict(profile.get("kubespawner_override"))
    if isinstance(key, str) and key not in images:
        hint = ""
        if "/" in key or ":" in key:
            hint = "; to run a container image not in images, give it as kubespawner_override.image"
        problems.add(
            (*where, "image"), f"unknown image {key!r}; defined images: {_names(images)}{hint}"
        )
        return None
    if isinstance(key, str) and "image" in override:
        problems.add(
            (*where, "kubespawner_override", "image"),
            f"the profile already names image {key!r}; keep only one of image: and "
            "kubespawner_override.image",
        )
        return None
    found = image_reference(profile, images, default)
    if found is None and key is None:
        problems.add(
            (*where, "image"),
            "no image: name a key of images (defined: "
            f"{_names(images)}), give kubespawner_override.image, or set settings.default_image",
        )
    return found


def _project_problems(
    problems: _Problems,
    profile: dict,
    where: FieldPath,
    projects: dict,
    image: tuple[str, str] | None,
) -> list[tuple[int, str, list | None]]:
    """Check the profile's projects; returns (index, slug, allowed image keys) of the known ones."""
    known = []
    for k, slug in enumerate(_list(profile.get("projects"))):
        if not isinstance(slug, str):
            continue
        if slug not in projects:
            problems.add((*where, "projects", k), _unknown_project(slug, projects))
            continue
        allowed = _dict(projects[slug]).get("images")
        known.append((k, slug, allowed if isinstance(allowed, list) else None))
    if image is not None:
        for k, slug, allowed in known:
            if allowed is not None and not _allows(allowed, image):
                problems.add((*where, "projects", k), _not_allowed(slug, image, allowed))
    return known


def _allows(allowed: list, image: tuple[str, str]) -> bool:
    kind, name = image
    return kind == "key" and name in allowed


def _not_allowed(slug: str, image: tuple[str, str], allowed: list) -> str:
    kind, name = image
    keys_text = ", ".join(map(str, allowed)) or "none"
    if kind == "key":
        fix = f"add {name} to projects.{slug}.images or remove {slug} from this profile"
    else:
        fix = (
            f"add it to images: under a key and that key to projects.{slug}.images, or remove "
            f"{slug} from this profile"
        )
    return f"project {slug} does not allow image {name!r} (its images: {keys_text}); {fix}"


def _image_allowed(
    problems: _Problems,
    path: FieldPath,
    image: tuple[str, str] | None,
    projects: list[tuple[int, str, list | None]],
) -> None:
    """A choice's image under the rules of each of the profile's projects."""
    if image is None:
        return
    for _, slug, allowed in projects:
        if allowed is not None and not _allows(allowed, image):
            problems.add(path, _not_allowed(slug, image, allowed))


def _gpu_problems(problems: _Problems, gpu: dict, where: FieldPath) -> None:
    """A gpu: block (of a profile, a choice or a flavor): its fraction, its type (one, several
    or any), min_memory, and the slice as the allocator would take it."""
    fraction = gpu.get("fraction")
    ok = True
    if isinstance(fraction, (int, float, str)) and not isinstance(fraction, bool):
        try:
            fraction = parse_fraction(fraction)
        except InvalidRequestError:
            problems.add((*where, "fraction"), f"{_FRACTION_ALLOWED}, got {show(fraction)}")
            ok = False
    ok = _type_problems(problems, gpu, where) and ok
    minimum = _min_memory(problems, gpu, where)
    numbers = {k: gpu.get(k) for k in ("compute_min", "compute_max", "memory_mib")}
    if not (ok and isinstance(fraction, Fraction)) or any(
        v is not None and (isinstance(v, bool) or not isinstance(v, int)) for v in numbers.values()
    ):
        return  # reported above or by the schema
    try:
        GpuBlock(fraction, gpu_types_of(gpu), **numbers).slice_request()
    except InvalidRequestError as err:
        # SliceRequest names its own fields; compute_min etc. are spelled the same here.
        problems.add((*where, err.field), err.message)
        return
    memory = numbers["memory_mib"]
    if minimum is not None and isinstance(memory, int) and fraction < 1 and memory > minimum:
        problems.add(
            (*where, "memory_mib"),
            f"{memory} MiB is more than min_memory ({minimum} MiB): a GPU of min_memory could "
            "never hold the slice; lower memory_mib or raise min_memory to at least "
            f"{memory} MiB",
        )


def _type_problems(problems: _Problems, gpu: dict, where: FieldPath) -> bool:
    """Exactly one of type (a GPU type, or any) and types (several, each once); False when
    the block names no usable type."""
    if ("type" in gpu) == ("types" in gpu):
        problems.add(
            where,
            "give the GPU type as type: RTX3090 (or type: any for every type), or several as "
            "types: [RTX3090, A100], not both and not neither",
        )
        return False
    if "type" in gpu:
        gpu_type = gpu["type"]
        if not isinstance(gpu_type, str):
            return False  # the schema has reported it
        if gpu_type == ANY_TYPE:
            return True
        try:
            check_gpu_type(gpu_type)
        except InvalidRequestError as err:
            problems.add((*where, "type"), err.message)
            return False
        return True
    types = gpu["types"]
    if not isinstance(types, list) or not types:
        return False  # the schema has reported it
    ok, seen = True, {}
    for k, gpu_type in enumerate(types):
        path = (*where, "types", k)
        if not isinstance(gpu_type, str):
            ok = False  # the schema has reported it
        elif gpu_type == ANY_TYPE:
            problems.add(path, "any stands for every GPU type; write type: any instead of a list")
            ok = False
        elif gpu_type in seen:
            problems.add(
                path, f"{gpu_type} is already listed as types[{seen[gpu_type]}]; list each once"
            )
            ok = False
        else:
            seen[gpu_type] = k
            try:
                check_gpu_type(gpu_type)
            except InvalidRequestError as err:
                problems.add(path, err.message)
                ok = False
    return ok


def _min_memory(problems: _Problems, gpu: dict, where: FieldPath) -> int | None:
    """The block's min_memory in MiB, or None (none given, or reported as malformed)."""
    value = gpu.get("min_memory")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        mib = gpu_memory_mib(value)
    except ValueError:
        return None  # the schema has reported it
    if not 1 <= mib <= MAX_GPU_MEMORY_MIB:
        problems.add(
            (*where, "min_memory"),
            f"expected a GPU memory size between 1Mi and 2Ti (like 16GiB), got {show(value)}",
        )
        return None
    return mib


def override_problems(
    override: Mapping[str, Any], where: FieldPath, gpu_profile: bool = False
) -> list[Problem]:
    """Keys of a KubeSpawner override that would undo the GPU slice or the platform's
    safety: anything not in :data:`OVERRIDE_KEYS`, and dangerous values of those that are.
    ``gpu_profile``: the profile (or one of its choices) has a gpu: block."""
    problems = _Problems()
    for key in override:
        if key in OVERRIDE_KEYS:
            continue
        why = _REFUSED_KEYS.get(key)
        if why is None:
            why = f"not a setting profiles may override (allowed: {', '.join(OVERRIDE_KEYS)})"
        problems.add((*where, key), f"not allowed here; {why}")
    image = override.get("image")
    # An unlisted choice's "{value}" is the typed-in text, checked by its validation_regex.
    if "image" in override and not (
        isinstance(image, str) and re.match(IMAGE_REFERENCE_PATTERN, image.replace("{value}", "x"))
    ):
        problems.add(
            (*where, "image"),
            f"expected a container image reference like quay.io/jupyter/pytorch-notebook:latest, "
            f"got {show(image)}",
        )
    for key in ("uid", "gid"):
        if override.get(key) == 0:
            problems.add((*where, key), "not allowed here; user servers never run as root (0)")
    for k, volume in enumerate(_list(override.get("volumes"))):
        if isinstance(volume, dict) and "hostPath" in volume:
            problems.add(
                (*where, "volumes", k, "hostPath"),
                "not allowed here; a host path would reach into the node (use a volume "
                "claim or a config map)",
            )
    for key in ("extra_labels", "extra_annotations"):
        for name in _dict(override.get(key)):
            if str(name).startswith(keys.PREFIX):
                problems.add(
                    (*where, key, name),
                    f"not allowed here; {keys.PREFIX}* is the GPU ledger's, written by the hub",
                )
    if gpu_profile:
        for key in _RESOURCE_KEYS:
            for resource in _dict(override.get(key)):
                if str(resource).startswith("nvidia.com/"):
                    problems.add(
                        (*where, key, resource),
                        "not allowed on a profile with a gpu: block, which already gives the "
                        "server its slice; remove it (a profile without a gpu: block passes "
                        "nvidia.com/* to the device plugin, for whole GPUs or MIG on nodes "
                        "not labelled for sharing)",
                    )
    for name in _dict(override.get("environment")):
        if name in FORBIDDEN_ENV:
            problems.add(
                (*where, "environment", name),
                "not allowed here; the spawner sets it from the GPU slice (forbidden: "
                f"{', '.join(FORBIDDEN_ENV)})",
            )
    return problems
