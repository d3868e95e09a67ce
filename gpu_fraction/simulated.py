"""Declared GPUs that do not exist, for machines without one (demos, tests, classroom laptops).

Everything downstream (allocator, spawn form, enforcement variables) works on them; nothing is
enforced on a device. Every GPU and the inventory itself are marked ``simulated``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .errors import InvalidRequestError, InventoryError
from .inventory import SOURCE_SIMULATED, Inventory
from .model import GPU, NodeCapacity, check_gpu_type

#: Node name used by :func:`simulated` when a spec entry names none.
DEFAULT_SIMULATED_NODE = "local"
#: Upper bound on GPUs per node in a simulated declaration (a typo guard, not a hardware fact).
MAX_SIMULATED_GPUS_PER_NODE = 64

SIMULATED_SPEC_HELP = (
    "expected TYPE:MEMORY_MIB[xCOUNT] entries separated by commas, each optionally prefixed with "
    "NODE=, e.g. 'RTX3090:24576x4' or 'node-a=RTX3090:24576x2,node-b=A100:81920x8' "
    "(MEMORY may also be written like 24G or 24GiB)"
)
_SPEC_ENTRY_RE = re.compile(
    r"^(?:(?P<node>[^=:\s]+)\s*=\s*)?(?P<type>[^=:\s]+)\s*:\s*"
    r"(?P<memory>\d+)\s*(?P<unit>MiB|M|GiB|G)?\s*(?:[xX]\s*(?P<count>\d+))?$"
)
_NODE_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
_DICT_KEYS = frozenset({"node", "gpu_type", "memory_mib", "count", "product", "zone"})


def simulated(spec: str | Sequence[Mapping[str, object]] | Mapping[str, object]) -> Inventory:
    """A declared inventory of GPUs that do not exist (``simulated=True`` throughout).

    ``spec`` is a command-line string (see :data:`SIMULATED_SPEC_HELP`), or a list of dicts with
    keys ``gpu_type``, ``memory_mib`` (required), ``node`` (default ``"local"``), ``count``
    (default 1), ``product`` and ``zone`` (optional), as written in YAML. Several entries may name
    the same node; its GPU indices then continue. UUIDs are ``SIM-GPU-<node>-<index>``.
    """
    if isinstance(spec, str):
        entries = _parse_spec_string(spec)
    elif isinstance(spec, Mapping):
        entries = [_spec_dict(spec, "simulated")]
    elif isinstance(spec, Sequence) and not isinstance(spec, bytes):
        entries = [_spec_dict(item, f"simulated[{i}]") for i, item in enumerate(spec)]
    else:
        raise InventoryError("simulated", f"{SIMULATED_SPEC_HELP}; got {spec!r}")
    if not entries:
        raise InventoryError("simulated", f"declares no GPUs; {SIMULATED_SPEC_HELP}")
    gpus: list[GPU] = []
    zones: dict[str, str | None] = {}
    next_index: dict[str, int] = {}
    for where, node, gpu_type, memory_mib, count, product, zone in entries:
        if node in zones and zone is not None and zones[node] not in (None, zone):
            raise InventoryError(
                f"{where}.zone", f"node {node!r} is given zones {zones[node]!r} and {zone!r}"
            )
        zones[node] = zone if zone is not None else zones.get(node)
        start = next_index.get(node, 0)
        if start + count > MAX_SIMULATED_GPUS_PER_NODE:
            raise InventoryError(
                f"{where}.count",
                f"at most {MAX_SIMULATED_GPUS_PER_NODE} GPUs on one node, node {node!r} "
                f"would have {start + count}",
            )
        for index in range(start, start + count):
            gpus.append(
                GPU(
                    node=node,
                    index=index,
                    uuid=f"SIM-GPU-{node}-{index}",
                    product=product or f"Simulated {gpu_type}",
                    memory_mib=memory_mib,
                    gpu_type=gpu_type,
                    simulated=True,
                )
            )
        next_index[node] = start + count
    nodes = {name: NodeCapacity(name=name, zone=zone) for name, zone in zones.items()}
    return Inventory(gpus=tuple(gpus), nodes=nodes, simulated=True, source=SOURCE_SIMULATED)


_Entry = tuple[str, str, str, int, int, str | None, str | None]


def _parse_spec_string(spec: str) -> list[_Entry]:
    if not spec.strip():
        raise InventoryError("simulated", f"is empty; {SIMULATED_SPEC_HELP}")
    entries = []
    for position, raw in enumerate(spec.split(",")):
        where = f"simulated[{position}]"
        match = _SPEC_ENTRY_RE.match(raw.strip())
        if match is None:
            raise InventoryError(where, f"cannot read {raw.strip()!r}; {SIMULATED_SPEC_HELP}")
        memory = int(match["memory"])
        if match["unit"] in ("G", "GiB"):
            memory *= 1024
        count = int(match["count"]) if match["count"] is not None else 1
        entries.append(
            _checked_entry(
                where,
                match["node"] or DEFAULT_SIMULATED_NODE,
                match["type"],
                memory,
                count,
                None,
                None,
            )
        )
    return entries


def _spec_dict(item: object, where: str) -> _Entry:
    if not isinstance(item, Mapping):
        raise InventoryError(
            where, f"expected a mapping with gpu_type and memory_mib, got {item!r}"
        )
    unknown = sorted(str(k) for k in item if k not in _DICT_KEYS)
    if unknown:
        raise InventoryError(
            f"{where}.{unknown[0]}",
            f"unknown key; allowed keys are {', '.join(sorted(_DICT_KEYS))}",
        )
    for required in ("gpu_type", "memory_mib"):
        if required not in item:
            raise InventoryError(f"{where}.{required}", "is required")
    product = item.get("product")
    zone = item.get("zone")
    for key, value in (("product", product), ("zone", zone)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InventoryError(f"{where}.{key}", f"must be a non-empty string, got {value!r}")
    return _checked_entry(
        where,
        item.get("node", DEFAULT_SIMULATED_NODE),
        item["gpu_type"],
        item["memory_mib"],
        item.get("count", 1),
        product,
        zone,
    )


def _checked_entry(
    where: str,
    node: object,
    gpu_type: object,
    memory_mib: object,
    count: object,
    product: str | None,
    zone: str | None,
) -> _Entry:
    if not isinstance(node, str) or not _NODE_RE.match(node):
        raise InventoryError(
            f"{where}.node",
            f"a node name is letters, digits, '.', '_' or '-' (like node-a), got {node!r}",
        )
    try:
        check_gpu_type(gpu_type, f"{where}.gpu_type")
    except InvalidRequestError as err:
        raise InventoryError(err.field, err.message) from None
    for key, value in (("memory_mib", memory_mib), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InventoryError(f"{where}.{key}", f"must be a whole number >= 1, got {value!r}")
    assert isinstance(gpu_type, str) and isinstance(memory_mib, int) and isinstance(count, int)
    return (where, node, gpu_type, memory_mib, count, product, zone)
