"""The JSON Schema (draft 2020-12) of ``ai-console.yaml``, the admin's one configuration file.

The ``description`` of every property is the file's reference documentation. Each leaf also
carries ``x-allowed``, a short phrase naming what the field accepts; the loader puts it into
error messages ("expected <x-allowed>, got ..."), so the schema and the messages never disagree.
Draft 2020-12 ignores unknown keywords, so ``x-allowed`` does not change what validates.

Checks the schema cannot express (references between sections, fractions, unique slugs,
forbidden overrides) live in :mod:`hub_config.loader`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema

from gpu_fraction.allocator import POLICIES

from .model import show

#: Keys of projects and images, and profile slugs: they end up in group, role and Kubernetes
#: names, so they follow the DNS-1123 label rules.
SLUG_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
SLUG_ALLOWED = "a lowercase name of 1-63 letters, digits and '-' (like cs101)"
#: Memory as KubeSpawner's ``mem_limit``/``mem_guarantee`` accept it. KubeSpawner reads K, M, G
#: and T as powers of 1024; the Kubernetes spellings Ki, Mi, Gi and Ti mean the same and are
#: accepted too.
#: Profile slugs as KubeSpawner accepts them (any text), less what would break the spawn form's
#: markup or a saved ``?profile=`` link: whitespace and HTML's special characters.
PROFILE_SLUG_PATTERN = r"^[^\s<>&\"'`]{1,253}$"
PROFILE_SLUG_ALLOWED = (
    "a name of 1-253 characters without spaces or <, >, &, quotes (like pytorch_GPU-1)"
)
#: A container image reference, as a profile's override or settings.default_image gives it.
IMAGE_REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$"
IMAGE_REFERENCE_ALLOWED = "a container image reference like quay.io/jupyter/pytorch-notebook:latest"
MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)?[KMGT]i?$"
OPTION_KEY_PATTERN = r"^[A-Za-z0-9_-]{1,63}$"
MEMORY_ALLOWED = "a size like 512M, 2G or 8Gi (K, M, G, T are powers of 1024), or bytes"
#: A GPU's memory (min_memory) may also be written as people say it: 16GiB, 24GB.
GPU_MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)?[KMGT]i?B?$"
GPU_MEMORY_ALLOWED = "a GPU memory size like 16GiB, 16Gi or 24G (powers of 1024)"


def _slug(description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": SLUG_PATTERN,
        "description": description,
        "x-allowed": SLUG_ALLOWED,
    }


def _text(description: str, allowed: str = "a non-empty string") -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": description, "x-allowed": allowed}


def _names(description: str, item: str) -> dict[str, Any]:
    return {
        "type": "array",
        "description": description,
        "x-allowed": f"a list of {item}s",
        "items": _text(f"One {item}.", allowed=f"a {item} (a non-empty string)"),
        "uniqueItems": True,
    }


IMAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One entry of the image marketplace.",
    "x-allowed": "a mapping with display_name, description, image and tags",
    "additionalProperties": False,
    "required": ["display_name", "image"],
    "properties": {
        "display_name": _text("Name shown in the marketplace and the spawn form (PyTorch 2.5)."),
        "description": {
            "type": "string",
            "description": "One line on what the image holds (frameworks, CUDA version).",
            "x-allowed": "a string",
        },
        "image": {
            "type": "string",
            "pattern": IMAGE_REFERENCE_PATTERN,
            "description": (
                "Container image reference used for pods (Kubernetes), like "
                "quay.io/jupyter/pytorch-notebook:cuda12-latest. Profiles refer to the image "
                "by its key, never by this reference, so project image rules always apply."
            ),
            "x-allowed": IMAGE_REFERENCE_ALLOWED,
        },
        "tags": _names("Optional labels for the marketplace (deep-learning, nlp).", "tag"),
    },
}

PROJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A course or a lab: who is in it, who runs it, its GPU quota and images.",
    "x-allowed": "a mapping with display_name, kind, members, admins, gpu_quota, images and "
    "flavors",
    "additionalProperties": False,
    "required": ["display_name"],
    "properties": {
        "display_name": _text("Name shown to users (Intro to Deep Learning)."),
        "description": {
            "type": "string",
            "description": "Optional longer text about the project.",
            "x-allowed": "a string",
        },
        "kind": {
            "enum": ["course", "lab"],
            "description": "course (teaching) or lab (research). Defaults to course.",
            "x-allowed": "one of course, lab",
        },
        "members": {
            "type": "object",
            "description": (
                "Who may use the project's profiles. A user is a member if named in users or "
                "if one of their JupyterHub groups is in groups (groups usually come from the "
                "authenticator). Members of the hub group project-<slug> count too, so course "
                "admins can add members at run time through JupyterHub."
            ),
            "x-allowed": "a mapping with users and groups",
            "additionalProperties": False,
            "properties": {
                "users": _names("JupyterHub user names of members.", "user name"),
                "groups": _names("JupyterHub group names whose users are members.", "group name"),
            },
        },
        "admins": _names(
            "Course admins: they count as members, may manage the members of the hub group "
            "project-<slug>, and see and manage the servers and jobs of the project's members.",
            "user name",
        ),
        "gpu_quota": {
            "type": ["number", "string", "null"],
            "description": (
                "Most GPUs the project's members may hold at once, notebooks and jobs together, "
                "as a sum of slice sizes: 2 means eight 1/4 slices or two whole GPUs. "
                "0 means no GPUs (CPU-only profiles still work); omitted or null means unlimited."
            ),
            "x-allowed": "a number of GPUs >= 0 like 2, 0.5 or 3/2, or null for unlimited",
        },
        "images": {
            "type": "array",
            "description": (
                "Keys of the images the project may use. Every profile offered to the project "
                "must use one of them. Omitted means every image."
            ),
            "x-allowed": "a list of image keys",
            "items": _slug("Key of an entry in images."),
            "uniqueItems": True,
        },
        "flavors": {
            "type": "array",
            "description": (
                "Names of the job flavors the project's members may run notebook jobs with. "
                "Omitted means every flavor; [] means no jobs."
            ),
            "x-allowed": "a list of flavor names",
            "items": {
                "type": "string",
                "description": "Name of an entry in flavors.",
                "x-allowed": "a flavor name",
            },
            "uniqueItems": True,
        },
    },
}

_QUANTITY_PAIR = {
    "guarantee": "The amount reserved for the server (Kubernetes request).",
    "limit": "The most the server may use (Kubernetes limit).",
}

_CPU = {
    "type": "number",
    "exclusiveMinimum": 0,
    "x-allowed": "a number of CPUs > 0 like 0.5 or 4",
}
_MEMORY = {
    "type": ["integer", "string"],
    "pattern": MEMORY_PATTERN,
    "minimum": 1,
    "x-allowed": MEMORY_ALLOWED,
}

_GPU_TYPE = {
    "type": "string",
    "description": "A GPU type label (RTX3090, A100-80G).",
    "x-allowed": "a GPU type of letters, digits, '.', '_' or '-' (like RTX3090)",
}

GPU_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "The GPU slice a server of this profile gets. The allocator places it on a GPU of the "
        "given type (or of one of the given types, where it fragments the cluster least) and "
        "enforces it; omit the block for a CPU-only profile."
    ),
    "x-allowed": (
        "a mapping with fraction, type or types, min_memory, compute_min, compute_max and "
        "memory_mib"
    ),
    "additionalProperties": False,
    "required": ["fraction"],
    "properties": {
        "fraction": {
            "type": ["number", "string"],
            "description": (
                "Share of one GPU (1/4, 1/2 or 0.25) or a whole number of GPUs 1..8 on one node."
            ),
            "x-allowed": "a fraction like 1/4 or 0.25, or a whole number 1..8",
        },
        "type": {
            **_GPU_TYPE,
            "description": (
                "GPU type label (RTX3090, A100-80G), or any for every type (narrowed by "
                "min_memory). The hub checks it against the GPU inventory at start; here only "
                "its spelling is checked. Give type or types, not both."
            ),
            "x-allowed": "a GPU type of letters, digits, '.', '_' or '-' (like RTX3090), or any",
        },
        "types": {
            "type": "array",
            "minItems": 1,
            "description": (
                "Several GPU types the slice may use ([V100, A10]); the allocator takes the one "
                "where the slice fragments the cluster least."
            ),
            "x-allowed": "a non-empty list of GPU types (like [V100, A10])",
            "items": _GPU_TYPE,
        },
        "min_memory": {
            "type": ["integer", "string"],
            "pattern": GPU_MEMORY_PATTERN,
            "minimum": 1,
            "description": (
                "Only GPU types whose GPUs have at least this much memory (16GiB): with "
                "type: any, any GPU with 16 GiB or more."
            ),
            "x-allowed": GPU_MEMORY_ALLOWED,
        },
        "compute_min": {
            "type": "integer",
            "minimum": 0,
            "maximum": 100,
            "description": (
                "Share of the GPU's SMs in percent that placement reserves for the slice "
                "(default: the fraction): the allocator never places slices whose shares sum "
                "past 100 on one GPU. It is not enforced at run time: neither CUDA nor MPS "
                "gives a process a minimum of SMs; compute_max is the enforced ceiling."
            ),
            "x-allowed": "a whole percentage 0..100",
        },
        "compute_max": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "description": "Burst ceiling in percent of SMs (default 100: idle SMs can be used).",
            "x-allowed": "a whole percentage 1..100",
        },
        "memory_mib": {
            "type": "integer",
            "minimum": 1,
            "description": (
                "Guaranteed and capped GPU memory in MiB. Defaults to the fraction of the GPU's "
                "memory. Not allowed for whole GPUs, which get all of their memory."
            ),
            "x-allowed": "a whole number of MiB >= 1",
        },
    },
}

#: Flavor names appear in the Lab and the REST API, never raw in Kubernetes names.
FLAVOR_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,62}$"
FLAVOR_NAME_ALLOWED = (
    "a name of 1-63 letters, digits, '.', '_', '/', '+' or '-' (like 4C-16G-1/4GPU)"
)

FLAVOR_GPU_SCHEMA: dict[str, Any] = {
    **GPU_SCHEMA,
    "description": (
        "The GPU slice a job of this flavor gets, placed and enforced as a notebook's is. "
        "type names one GPU type (or any); types lists several: the user picks one in the "
        "dialog, or leaves the choice to the allocator. Omit the block for a CPU-only flavor."
    ),
}

FLAVOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "One size a notebook job can run with (the Run-as-job dialog's flavor): CPUs, memory "
        "and an optional GPU slice."
    ),
    "x-allowed": "a flavor mapping with name, display_name, cpu, memory and gpu",
    "additionalProperties": False,
    "required": ["name", "cpu", "memory"],
    "properties": {
        "name": {
            "type": "string",
            "pattern": FLAVOR_NAME_PATTERN,
            "description": "Stable name users and scripts choose the flavor by (12C-24G-1GPU).",
            "x-allowed": FLAVOR_NAME_ALLOWED,
        },
        "display_name": _text("Title in the dialog; defaults to the name."),
        "description": {
            "type": "string",
            "description": "One line on what the flavor is for.",
            "x-allowed": "a string",
        },
        "cpu": {**_CPU, "description": "CPUs reserved for the job (request and limit)."},
        "memory": {**_MEMORY, "description": "Memory reserved for the job (request and limit)."},
        "gpu": FLAVOR_GPU_SCHEMA,
    },
}

PROFILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "One choice in the spawn form, in KubeSpawner's profile_list shape plus image, gpu and "
        "projects."
    ),
    "x-allowed": "a profile mapping",
    # Keys of the admin's own are warned about (with a suggestion), not refused: z2jh lists
    # carry them, and KubeSpawner ignores them.
    "required": ["display_name"],
    "properties": {
        "display_name": _text("Title in the spawn form (PyTorch, 1/4 RTX 3090)."),
        "slug": {
            "type": "string",
            "pattern": PROFILE_SLUG_PATTERN,
            "description": (
                "Stable identifier used in user_options, ?profile= links and the REST API. "
                "Derived from display_name as KubeSpawner derives it when missing; set it to "
                "keep links working when the title changes."
            ),
            "x-allowed": PROFILE_SLUG_ALLOWED,
        },
        "description": {
            "type": ["string", "null"],
            "description": "Text under the title; the hub appends how many slices are free now.",
            "x-allowed": "a string",
        },
        "default": {
            "type": "boolean",
            "description": "Preselect this profile in the form; at most one profile may.",
            "x-allowed": "true or false",
        },
        "image": {
            "type": "string",
            "minLength": 1,
            "description": (
                "Key of the entry in images whose container image servers run. Omitted: the "
                "image kubespawner_override.image names, else settings.default_image, else the "
                "first entry of images."
            ),
            "x-allowed": "a key of images",
        },
        "projects": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "description": (
                "Projects whose members may use this profile; its image must be allowed in "
                "each. Omitted means every logged-in user may use it."
            ),
            "x-allowed": "a non-empty list of project keys (leave it out to offer the profile "
            "to everyone)",
            "items": _slug("Key of an entry in projects."),
        },
        "gpu": GPU_SCHEMA,
        "cpu": {
            "type": "object",
            "description": "CPU cores for the server (KubeSpawner cpu_guarantee / cpu_limit).",
            "x-allowed": "a mapping with guarantee and limit",
            "additionalProperties": False,
            "properties": {k: {**_CPU, "description": v} for k, v in _QUANTITY_PAIR.items()},
        },
        "memory": {
            "type": "object",
            "description": "Host memory for the server (KubeSpawner mem_guarantee / mem_limit).",
            "x-allowed": "a mapping with guarantee and limit",
            "additionalProperties": False,
            "properties": {k: {**_MEMORY, "description": v} for k, v in _QUANTITY_PAIR.items()},
        },
        "kubespawner_override": {
            "type": "object",
            "description": (
                "Extra KubeSpawner settings for this profile, as in z2jh's profileList. image "
                "names a container image (matched to an entry of images where one has that "
                "reference, else an image of its own, under the same project rules). On a GPU "
                "profile node_selector and node_affinity_required narrow the nodes the "
                "allocator chooses from. Keys that would undo the GPU slice or the platform's "
                "safety are refused: nvidia.com/* resources on a profile with a gpu: block, the "
                "device and MPS variables in environment, privileges, host paths."
            ),
            "x-allowed": "a mapping of KubeSpawner settings",
        },
        "profile_options": {
            "type": "object",
            "description": (
                "KubeSpawner profile_options, passed through: {option: {display_name, choices: "
                "{key: {display_name, default, kubespawner_override, gpu}}, unlisted_choice}}. "
                "The overrides of choices follow the same rules as kubespawner_override; a "
                "choice's gpu: block sets the slice when it is chosen (one profile, several "
                "sizes); a typed-in image (unlisted_choice) needs a validation_regex."
            ),
            "x-allowed": "a mapping of option names to KubeSpawner option mappings",
            # Keys end up in the spawn form's HTML and in KubeSpawner's lookups: names only.
            "propertyNames": {"pattern": OPTION_KEY_PATTERN},
            "additionalProperties": {
                "type": "object",
                "description": "One option with its choices.",
                "x-allowed": "a KubeSpawner option: display_name and choices (each choice a "
                "mapping with a display_name), or an unlisted_choice",
                "required": ["display_name"],
                "anyOf": [{"required": ["choices"]}, {"required": ["unlisted_choice"]}],
                "properties": {
                    "display_name": {
                        "type": "string",
                        "x-allowed": "text",
                        "description": "The option's label in the spawn form.",
                    },
                    "choices": {
                        "type": "object",
                        "minProperties": 1,
                        "propertyNames": {"pattern": OPTION_KEY_PATTERN},
                        "description": "The choices, by name (letters, digits, - and _).",
                        "x-allowed": "a mapping of choice names (letters, digits, - and _) "
                        "to choices",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["display_name"],
                            "x-allowed": "a choice: display_name, default, kubespawner_override",
                            "description": "One choice of the option.",
                            "properties": {
                                "display_name": {
                                    "type": "string",
                                    "x-allowed": "text",
                                    "description": "The choice's label in the spawn form.",
                                },
                                "default": {
                                    "type": "boolean",
                                    "x-allowed": "true or false",
                                    "description": "Chosen unless the user picks another.",
                                },
                                "kubespawner_override": {
                                    "type": "object",
                                    "x-allowed": "a mapping of KubeSpawner settings",
                                    "description": (
                                        "KubeSpawner settings of this choice, under the same "
                                        "rules as the profile's kubespawner_override."
                                    ),
                                },
                                "gpu": {
                                    **GPU_SCHEMA,
                                    "description": (
                                        "The GPU slice when this choice is chosen, instead of "
                                        "the profile's gpu: block."
                                    ),
                                },
                            },
                        },
                    },
                    "unlisted_choice": {
                        "type": "object",
                        "x-allowed": "a mapping",
                        "description": "KubeSpawner's free-text choice, passed through.",
                    },
                },
            },
        },
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:jupyterhub-ai-console:ai-console.yaml",
    "title": "ai-console.yaml",
    "description": (
        "The AI Console admin file: platform admins, settings, the image marketplace, courses "
        "and labs with their members, admins and GPU quotas, and the GPU profiles of the spawn "
        "form. Quotas, JupyterHub groups and roles, and who may use what all follow from it."
    ),
    "x-allowed": "a mapping with platform_admins, settings, images, projects, profiles and flavors",
    "type": "object",
    "additionalProperties": False,
    "patternProperties": {
        "^x-": {
            "description": (
                "Ignored: a place for YAML anchors shared by profiles, e.g. "
                "x-common: &common {image: pytorch} and then <<: *common in a profile."
            ),
        },
    },
    "required": ["profiles"],
    "properties": {
        "platform_admins": _names(
            "JupyterHub admins: they get JupyterHub's admin role, every AI Console permission, "
            "and may use every profile in every project.",
            "user name",
        ),
        "settings": {
            "type": "object",
            "description": "Optional hub-wide settings.",
            "x-allowed": (
                "a mapping with allocator_policy, default_project, default_image, "
                "idle_after_minutes and stop_idle_after_minutes"
            ),
            "additionalProperties": False,
            "properties": {
                "idle_after_minutes": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 10080,
                    "description": (
                        "Minutes a notebook's GPU slice must stay unused (no GPU memory held by "
                        "its processes; a whole GPU also under 5% busy) before the admin page "
                        "flags it idle and its user sees it in Lab. Default 30. Needs the node "
                        "agents."
                    ),
                    "x-allowed": "a number of minutes above 0, at most a week",
                },
                "stop_idle_after_minutes": {
                    "anyOf": [
                        {"type": "number", "exclusiveMinimum": 0, "maximum": 10080},
                        {"type": "null"},
                    ],
                    "description": (
                        "Minutes of idleness after which the hub stops the notebook server to "
                        "free its slice (its user is warned in Lab from the moment it is flagged "
                        "idle). At least idle_after_minutes. Omitted or null: never stopped."
                    ),
                    "x-allowed": "minutes above 0 (at least idle_after_minutes), or null",
                },
                "allocator_policy": {
                    "enum": list(POLICIES),
                    "description": (
                        "How the allocator places slices: binpack fills GPUs before using "
                        "empty ones (keeps whole GPUs free); spread balances load."
                    ),
                    "x-allowed": "one of " + ", ".join(POLICIES),
                },
                "default_project": {
                    "anyOf": [_slug("Key of an entry in projects."), {"type": "null"}],
                    "description": (
                        "Project a spawn is charged to when a profile fits several of the "
                        "user's projects and the user chose none."
                    ),
                    "x-allowed": "a project key or null",
                },
                "default_image": {
                    "type": "string",
                    "pattern": IMAGE_REFERENCE_PATTERN,
                    "description": (
                        "Image of profiles that name none (z2jh's singleuser.image): a key of "
                        "images, or a container image reference. Omitted: the first entry of "
                        "images."
                    ),
                    "x-allowed": "a key of images or " + IMAGE_REFERENCE_ALLOWED,
                },
            },
        },
        "images": {
            "type": "object",
            "minProperties": 1,
            "description": "The image marketplace: image key -> image.",
            "x-allowed": "a mapping of image keys to images, at least one",
            "propertyNames": _slug("An image key."),
            "additionalProperties": IMAGE_SCHEMA,
        },
        "projects": {
            "type": "object",
            "description": (
                "Courses and labs: project key (its slug) -> project. The key names the hub "
                "group project-<key> and the role course-admin-<key>."
            ),
            "x-allowed": "a mapping of project keys to projects",
            "propertyNames": _slug("A project key."),
            "additionalProperties": PROJECT_SCHEMA,
        },
        "profiles": {
            "type": "array",
            "minItems": 1,
            "description": "The spawn form's choices, in the order shown.",
            "x-allowed": "a non-empty list of profiles",
            "items": PROFILE_SCHEMA,
        },
        "flavors": {
            "type": "array",
            "description": (
                "Sizes of notebook jobs (Run as job), in the order the dialog shows them. "
                "Projects limit theirs with projects.<key>.flavors. Omitted: no jobs."
            ),
            "x-allowed": "a list of flavors",
            "items": FLAVOR_SCHEMA,
        },
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def schema_errors(data: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every schema violation as (field path, message), the message built from ``x-allowed``."""
    for error in _VALIDATOR.iter_errors(data):
        yield from _describe(error)


def _describe(error: jsonschema.ValidationError) -> Iterator[tuple[tuple[Any, ...], str]]:
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    known = schema.get("properties", {})
    if error.validator == "additionalProperties" and schema.get("additionalProperties") is False:
        allowed = ", ".join(known)
        for key in error.instance:
            if key not in known:
                yield (*path, key), f"unknown key; allowed keys here are: {allowed}"
    elif error.validator == "required":
        for key in error.validator_value:
            if key not in error.instance:
                yield (*path, key), f"missing required field; expected {known[key]['x-allowed']}"
    elif "propertyNames" in error.schema_path:
        # jsonschema reports a bad key at its mapping; point at the key itself.
        yield (*path, error.instance), f"not a valid key: expected {SLUG_ALLOWED}"
    elif "x-allowed" in schema:
        yield path, f"expected {schema['x-allowed']}, got {show(error.instance)}"
    else:
        yield path, error.message
