"""Where the allocator's GPUs come from: Kubernetes nodes, NVML on this machine, or a declaration.

Three sources, one result (:class:`Inventory`):

* :func:`from_nodes` reads Kubernetes Node objects (raw JSON shape). GPU facts come from NVIDIA
  GPU feature discovery labels, and from the node agent's ``ai-console/gpus`` annotation where it
  exists (real UUIDs, per-GPU products and sizes).
* :func:`from_nvml` asks the NVIDIA driver on this machine (the embedded, single-machine mode).
* :func:`gpu_fraction.simulated.simulated` builds GPUs that do not exist, for machines without
  one (demos, tests, classroom laptops); everything downstream works, nothing is enforced.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pynvml

from . import keys
from .errors import InvalidRequestError, InventoryError
from .model import GPU, NodeCapacity, check_gpu_type
from .quantity import MIB as _MIB
from .quantity import cpu_millis_from_quantity, memory_mib_from_quantity

SOURCE_KUBERNETES = "kubernetes"
SOURCE_NVML = "nvml"
SOURCE_SIMULATED = "simulated"
SOURCES: tuple[str, ...] = (SOURCE_KUBERNETES, SOURCE_NVML, SOURCE_SIMULATED)


@dataclass(frozen=True)
class Inventory:
    """The GPUs the allocator may hand out, and the nodes they live on.

    ``nodes`` is keyed by node name and holds a :class:`NodeCapacity` for every node that has a
    GPU here (added with "not accounted" capacity if the caller left one out). ``error`` says why
    an inventory is empty when the source could not be read (e.g. no NVIDIA driver), so a command
    line can print "no NVIDIA GPU found" instead of failing.
    """

    gpus: tuple[GPU, ...] = ()
    nodes: dict[str, NodeCapacity] = field(default_factory=dict, hash=False)
    simulated: bool = False
    source: str = SOURCE_SIMULATED
    error: str | None = None
    #: Nodes left out because what they say about their GPUs does not add up, each with why.
    skipped: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise InventoryError(
                "source", f"must be one of {', '.join(SOURCES)}, got {self.source!r}"
            )
        gpus = tuple(self.gpus)
        seen_slots: set[tuple[str, int]] = set()
        seen_uuids: set[str] = set()
        for gpu in gpus:
            if not isinstance(gpu, GPU):
                raise InventoryError("gpus", f"expected GPU objects, got {gpu!r}")
            if (gpu.node, gpu.index) in seen_slots:
                raise InventoryError(
                    "index", f"node {gpu.node!r} lists GPU index {gpu.index} twice"
                )
            if gpu.uuid in seen_uuids:
                raise InventoryError("uuid", f"GPU UUID {gpu.uuid!r} appears twice")
            seen_slots.add((gpu.node, gpu.index))
            seen_uuids.add(gpu.uuid)
        nodes = dict(self.nodes)
        for name, capacity in nodes.items():
            if capacity.name != name:
                raise InventoryError(
                    "nodes", f"entry {name!r} holds the capacity of node {capacity.name!r}"
                )
        for gpu in gpus:
            # Every GPU's node must be known, so the allocator can look up its zone/capacity.
            nodes.setdefault(gpu.node, NodeCapacity(name=gpu.node))
        object.__setattr__(self, "gpus", gpus)
        object.__setattr__(self, "nodes", nodes)

    def types(self) -> list[str]:
        """The distinct GPU types, sorted."""
        return sorted({gpu.gpu_type for gpu in self.gpus})

    def on_node(self, node: str) -> tuple[GPU, ...]:
        """The GPUs of one node, in index order."""
        return tuple(sorted((g for g in self.gpus if g.node == node), key=lambda g: g.index))

    @property
    def empty(self) -> bool:
        return not self.gpus


# --- GPU type names ------------------------------------------------------------------------------

#: Marketing words that say nothing about which GPU it is.
_VENDOR_WORDS = frozenset({"nvidia", "geforce", "tesla"})
#: Series prefixes glued to a following model number ("RTX 3090" -> "RTX3090").
_SERIES_WORDS = frozenset({"rtx", "gtx", "gt", "mx"})
#: Suffix the NVIDIA device plugin adds to the product label under time-slicing/MPS sharing.
_SHARED_SUFFIX = "shared"
_TYPE_MAX_LEN = 63


def gpu_type_from_product(product: str) -> str:
    """An admin-friendly GPU type label from an NVML product name or its GFD label form.

    The rule: split the name into words at spaces and at '-' (the GFD label replaces spaces with
    '-', so both forms give the same words); drop "NVIDIA", "GeForce" and "Tesla" and a trailing
    "SHARED" (added by the device plugin when sharing); glue a series word (RTX, GTX, GT, MX) to a
    following word that starts with a digit; join the rest with '-'. Characters a type may not
    hold are dropped and the result is cut to 63 characters. Examples::

        "NVIDIA GeForce RTX 3090"  -> "RTX3090"   (also from "NVIDIA-GeForce-RTX-3090")
        "NVIDIA A100-SXM4-80GB"    -> "A100-SXM4-80GB"
        "Tesla V100-SXM2-16GB"     -> "V100-SXM2-16GB"
        "NVIDIA RTX A6000"         -> "RTX-A6000"
        "NVIDIA H100 80GB HBM3"    -> "H100-80GB-HBM3"

    Always returns a value accepted by :func:`gpu_fraction.model.check_gpu_type` ("GPU" when
    nothing usable is left).
    """
    words = [re.sub(r"[^A-Za-z0-9._]", "", w) for w in re.split(r"[\s\-]+", str(product))]
    words = [w for w in words if w and w.lower() not in _VENDOR_WORDS]
    if len(words) > 1 and words[-1].lower() == _SHARED_SUFFIX:
        words.pop()
    parts: list[str] = []
    for word in words:
        if parts and parts[-1].lower() in _SERIES_WORDS and word[0].isdigit():
            parts[-1] += word
        else:
            parts.append(word)
    name = "-".join(parts)
    # A type must start with a letter or digit ('.'/'_' may lead a word).
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)[:_TYPE_MAX_LEN]
    return name or "GPU"


# --- Kubernetes nodes ----------------------------------------------------------------------------


def from_nodes(
    nodes: list[dict],
    *,
    type_overrides: dict[str, str] | None = None,
    require_sharing_label: bool = True,
    skip_bad_nodes: bool = False,
) -> Inventory:
    """Build the inventory from Kubernetes Node objects given as raw JSON dicts.

    Only nodes labelled ``ai-console/gpu-sharing=true`` count when ``require_sharing_label``
    (others stay with the NVIDIA device plugin). Nodes with neither GFD labels nor the agent's
    ``ai-console/gpus`` annotation are skipped. Without the annotation, GPUs get a stable
    synthesised identifier ``"<node>/gpu<index>"`` in place of a UUID; enforcement then selects
    the device by index (see :mod:`gpu_fraction.enforcement`).

    The GPU type is the node's ``ai-console/gpu-type`` label, else ``type_overrides[product]``
    (the product as NVML or as the GFD label spells it), else :func:`gpu_type_from_product`.

    A node whose labels, annotation or capacity do not add up raises :class:`InventoryError`
    naming it; with ``skip_bad_nodes`` it is left out instead and listed in
    ``Inventory.skipped`` (as is a node repeating another's GPU UUIDs), so one broken node
    does not stop the rest of the cluster.
    """
    if isinstance(nodes, (str, bytes, Mapping)) or not isinstance(nodes, Sequence):
        raise InventoryError(
            "nodes", f"expected a list of Node objects, got {type(nodes).__name__}"
        )
    overrides = _check_overrides(type_overrides)
    gpus: list[GPU] = []
    capacities: dict[str, NodeCapacity] = {}
    skipped: list[tuple[str, str]] = []
    uuids: set[str] = set()
    for position, node in enumerate(nodes):
        try:
            read = _read_node(position, node, overrides, require_sharing_label)
            if read is None:
                continue
            name, capacity, node_gpus = read
            if name in capacities:
                raise InventoryError(
                    f"nodes[{position}].metadata.name", f"node {name!r} is listed twice"
                )
            repeated = sorted({g.uuid for g in node_gpus} & uuids)
            if repeated:
                raise InventoryError(
                    keys.ANN_NODE_GPUS,
                    f"node {name!r} lists GPU {repeated[0]}, which another node has already",
                )
        except InventoryError as err:
            if not skip_bad_nodes:
                raise
            skipped.append((_node_name(node, position), str(err)))
            continue
        capacities[name] = capacity
        gpus.extend(node_gpus)
        uuids.update(g.uuid for g in node_gpus)
    return Inventory(
        gpus=tuple(gpus),
        nodes=capacities,
        simulated=False,
        source=SOURCE_KUBERNETES,
        skipped=tuple(skipped),
    )


def _read_node(
    position: int, node: Any, overrides: dict[str, str], require_sharing_label: bool
) -> tuple[str, NodeCapacity, list[GPU]] | None:
    """One node's name, capacity and GPUs; None for a node the allocator does not manage."""
    if not isinstance(node, Mapping):
        raise InventoryError(f"nodes[{position}]", f"expected a Node object, got {node!r}")
    metadata = _mapping(node.get("metadata"), f"nodes[{position}].metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InventoryError(
            f"nodes[{position}].metadata.name", f"a Node needs a name, got {name!r}"
        )
    labels = _string_map(metadata.get("labels"), name, "metadata.labels")
    annotations = _string_map(metadata.get("annotations"), name, "metadata.annotations")
    if require_sharing_label and labels.get(keys.LABEL_SHARING, "").lower() != "true":
        return None
    node_gpus = _node_gpus(name, labels, annotations, overrides)
    if not node_gpus:
        return None
    return name, _node_capacity(name, node, labels), list(node_gpus)


def _node_name(node: Any, position: int) -> str:
    metadata = node.get("metadata") if isinstance(node, Mapping) else None
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) and name else f"nodes[{position}]"


def _check_overrides(type_overrides: dict[str, str] | None) -> dict[str, str]:
    if type_overrides is None:
        return {}
    if not isinstance(type_overrides, Mapping):
        raise InventoryError("type_overrides", "expected a mapping of product name to GPU type")
    for product, gpu_type in type_overrides.items():
        try:
            check_gpu_type(gpu_type, "type_overrides")
        except InvalidRequestError as err:
            raise InventoryError(f"type_overrides[{product!r}]", err.message) from None
    return dict(type_overrides)


def _mapping(value: object, where: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InventoryError(where, f"expected an object, got {type(value).__name__}")
    return value


def _string_map(value: object, node: str, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InventoryError(where, f"node {node!r}: expected a map of strings to strings")
    return dict(value)


def _label_int(node: str, labels: Mapping[str, str], key: str, minimum: int) -> int | None:
    text = labels.get(key)
    if text is None:
        return None
    try:
        number = int(text.strip())
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise InventoryError(
            key, f"node {node!r} has {key}={text!r}; expected a whole number >= {minimum}"
        )
    return number


def _node_gpus(
    node: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    overrides: Mapping[str, str],
) -> list[GPU]:
    product = labels.get(keys.GFD_PRODUCT, "").strip()
    memory = _label_int(node, labels, keys.GFD_MEMORY, minimum=1)
    count = _label_int(node, labels, keys.GFD_COUNT, minimum=0)
    reported = annotations.get(keys.ANN_NODE_GPUS)
    if reported is not None:
        entries = _agent_entries(node, reported, product, memory)
        if count is not None and count != len(entries):
            raise InventoryError(
                keys.ANN_NODE_GPUS,
                f"node {node!r}: the annotation lists {len(entries)} GPUs but label "
                f"{keys.GFD_COUNT} says {count}",
            )
    elif not product and memory is None and count is None:
        return []  # no GPU labels: not a GPU node
    else:
        if count == 0:
            return []
        for key, value in ((keys.GFD_PRODUCT, product), (keys.GFD_MEMORY, memory)):
            if not value:
                raise InventoryError(key, f"node {node!r} has GPU labels but no {key} label")
        if count is None:
            raise InventoryError(
                keys.GFD_COUNT, f"node {node!r} has GPU labels but no {keys.GFD_COUNT} label"
            )
        assert memory is not None  # checked above; for the type checker
        entries = [(i, f"{node}/gpu{i}", product, memory) for i in range(count)]
    forced = labels.get(keys.LABEL_GPU_TYPE)
    if forced is not None:
        try:
            check_gpu_type(forced.strip())
        except InvalidRequestError as err:
            raise InventoryError(keys.LABEL_GPU_TYPE, f"node {node!r}: {err.message}") from None
    gpus = []
    for index, uuid, gpu_product, memory_mib in entries:
        gpu_type = forced.strip() if forced is not None else _type_for(gpu_product, overrides)
        gpus.append(
            GPU(
                node=node,
                index=index,
                uuid=uuid,
                product=gpu_product,
                memory_mib=memory_mib,
                gpu_type=gpu_type,
            )
        )
    return gpus


def _type_for(product: str, overrides: Mapping[str, str]) -> str:
    if product in overrides:
        return overrides[product]
    # Admins may key overrides by the NVML name or the GFD label spelling of the same product
    # (the label replaces spaces with '-'): compare the two in label spelling.
    label_form = _label_spelling(product)
    for key, gpu_type in overrides.items():
        if _label_spelling(key) == label_form:
            return gpu_type
    return gpu_type_from_product(product)


def _label_spelling(product: str) -> str:
    return "-".join(product.split())


def _agent_entries(
    node: str, text: str, label_product: str, label_memory: int | None
) -> list[tuple[int, str, str, int]]:
    key = keys.ANN_NODE_GPUS
    expected = (
        'a JSON list like [{"index": 0, "uuid": "GPU-...", "product": "...", "memory_mib": 24576}]'
    )
    try:
        data = json.loads(text)
    except ValueError:
        raise InventoryError(key, f"node {node!r}: not valid JSON; expected {expected}") from None
    if not isinstance(data, list):
        raise InventoryError(key, f"node {node!r}: expected {expected}")
    entries: list[tuple[int, str, str, int]] = []
    indices: set[int] = set()
    for position, item in enumerate(data):
        where = f"node {node!r}, entry {position}"
        if not isinstance(item, dict):
            raise InventoryError(key, f"{where}: expected an object, got {item!r}")
        index = item.get("index")
        uuid = item.get("uuid")
        product = item.get("product", label_product)
        memory_mib = item.get("memory_mib", label_memory)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InventoryError(key, f"{where}: index must be a whole number >= 0, got {index!r}")
        if index in indices:
            raise InventoryError(key, f"{where}: index {index} appears twice")
        if not isinstance(uuid, str) or not uuid.strip():
            raise InventoryError(key, f"{where}: uuid must be a non-empty string, got {uuid!r}")
        if not isinstance(product, str) or not product.strip():
            raise InventoryError(key, f"{where}: product must be a non-empty string")
        if isinstance(memory_mib, bool) or not isinstance(memory_mib, int) or memory_mib <= 0:
            raise InventoryError(
                key, f"{where}: memory_mib must be a positive whole number, got {memory_mib!r}"
            )
        indices.add(index)
        entries.append((index, uuid.strip(), product.strip(), memory_mib))
    return sorted(entries)


def _node_capacity(name: str, node: Mapping, labels: Mapping[str, str]) -> NodeCapacity:
    status = _mapping(node.get("status"), f"node {name!r} status")
    allocatable = _mapping(status.get("allocatable"), f"node {name!r} status.allocatable")
    cpu = allocatable.get("cpu")
    memory = allocatable.get("memory")
    cpu_millis = memory_mib = None
    if cpu is not None:
        cpu_millis = _quantity_on(name, "status.allocatable.cpu", cpu, cpu_millis_from_quantity)
    if memory is not None:
        memory_mib = _quantity_on(
            name, "status.allocatable.memory", memory, memory_mib_from_quantity
        )
    zone = labels.get(keys.LABEL_ZONE) or labels.get(keys.LABEL_TOPOLOGY_ZONE) or None
    return NodeCapacity(name=name, cpu_millis=cpu_millis, memory_mib=memory_mib, zone=zone)


def _quantity_on(
    node: str, where: str, value: object, convert: Callable[[object, str], int]
) -> int:
    try:
        return convert(value, where)
    except InventoryError as err:
        raise InventoryError(where, f"node {node!r}: {err.message}") from None


# --- NVML ----------------------------------------------------------------------------------------


def _text(value: str | bytes) -> str:
    # Older pynvml returns bytes for names and UUIDs; newer returns str.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def from_nvml(node_name: str | None = None) -> Inventory:
    """The GPUs of this machine, read through NVML.

    Never raises for a missing driver or GPU: the result is then empty with ``error`` set to a
    sentence a command line can show ("no NVIDIA GPU found: ..."). Node CPU/memory are left
    unaccounted (``None``): local processes are not confined to a share of the host.
    """
    node = node_name or socket.gethostname()
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError) as err:
        return _nvml_failure(node, f"no NVIDIA GPU found: NVML could not start ({err})")
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            product = _text(pynvml.nvmlDeviceGetName(handle)).strip()
            uuid = _text(pynvml.nvmlDeviceGetUUID(handle)).strip()
            total = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            gpus.append(
                GPU(
                    node=node,
                    index=index,
                    uuid=uuid,
                    product=product,
                    memory_mib=total // _MIB,
                    gpu_type=gpu_type_from_product(product),
                )
            )
    except (pynvml.NVMLError, InventoryError) as err:
        return _nvml_failure(node, f"no NVIDIA GPU found: NVML could not list the GPUs ({err})")
    finally:
        # Shutdown can fail if init half-worked; there is nothing left to release then.
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    if not gpus:
        return _nvml_failure(node, "no NVIDIA GPU found: the driver reports no GPUs")
    return Inventory(
        gpus=tuple(gpus), nodes={node: NodeCapacity(name=node)}, simulated=False, source=SOURCE_NVML
    )


def _nvml_failure(node: str, reason: str) -> Inventory:
    return Inventory(gpus=(), nodes={}, simulated=False, source=SOURCE_NVML, error=reason)
