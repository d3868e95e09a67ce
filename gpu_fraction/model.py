"""The GPU-slice model: GPUs, nodes, slice requests, owners and allocations.

Plain frozen dataclasses with validation at construction, so a bad value is refused at the edge
with an error naming the field and never reaches the allocator's state.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from .errors import InvalidRequestError, InventoryError

MAX_WHOLE_GPUS = 8
#: Slice sizes offered by default in spawn forms and used as the prior task mix for placement.
STANDARD_SIZES: tuple[Fraction, ...] = (
    Fraction(1, 8),
    Fraction(1, 4),
    Fraction(1, 2),
    Fraction(1),
    Fraction(2),
    Fraction(4),
    Fraction(8),
)

#: The GPU type of an allocation that holds no GPU (:meth:`Allocation.cpu_only`).
CPU_ONLY_TYPE = "none"

OwnerKind = Literal["notebook", "job"]
OWNER_KINDS: tuple[str, ...] = ("notebook", "job")
# Bounds on what a request may say: far above any real node, far below what breaks arithmetic
# or the annotations (a cpu_millis of 10**30 is a mistake or an attack, not a request).
MAX_CPU_MILLIS = 1_000_000  # 1,000 cores
MAX_HOST_MEMORY_MIB = 1 << 26  # 64 TiB
MAX_GPU_MEMORY_MIB = 1 << 21  # 2 TiB
MAX_NODE_NAME = 253  # a Kubernetes node name
MAX_USER = 255  # JupyterHub's user name column
MAX_PROJECT = 63  # a project slug is a DNS label
MAX_NAME = 253


def parse_fraction(value: object, field_name: str = "fraction") -> Fraction:
    """Read a slice size: a fraction in (0, 1] of one GPU or a whole number of GPUs (1..8).

    Accepts ``"1/4"``, ``"0.25"``, ``0.25``, ``2`` or a :class:`~fractions.Fraction`.
    """
    if isinstance(value, bool):
        raise InvalidRequestError(field_name, f"expected a number, got {value!r}")
    try:
        if isinstance(value, Fraction):
            amount = value
        elif isinstance(value, int):
            amount = Fraction(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError
            amount = Fraction(value).limit_denominator(1000)
        elif isinstance(value, str):
            amount = Fraction(value.strip())
            if "." in value:
                amount = amount.limit_denominator(1000)
        else:
            raise TypeError
    except (ValueError, TypeError, ZeroDivisionError):
        raise InvalidRequestError(
            field_name, f"expected a fraction like 1/4 or 0.25, or a whole number, got {value!r}"
        ) from None
    if amount <= 0:
        raise InvalidRequestError(field_name, f"must be greater than 0, got {value!r}")
    if amount > 1 and amount.denominator != 1:
        raise InvalidRequestError(
            field_name,
            f"above 1 a slice must be a whole number of GPUs (2, 3, ... {MAX_WHOLE_GPUS}), "
            f"got {value!r}",
        )
    if amount > MAX_WHOLE_GPUS:
        raise InvalidRequestError(
            field_name, f"at most {MAX_WHOLE_GPUS} GPUs on one node, got {value!r}"
        )
    return amount


def format_fraction(amount: Fraction) -> str:
    """The short text for a slice size: ``"1/4"``, ``"1"``, ``"2"``."""
    return str(amount)


def format_gpus(amount: Fraction) -> str:
    """A GPU count for messages: ``2``, ``1/4``, ``1.75``."""
    amount = Fraction(amount)
    if amount.denominator == 1:
        return str(amount.numerator)
    if amount < 1:
        return str(amount)
    return f"{float(amount):.2f}".rstrip("0").rstrip(".")


_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_gpu_type(value: object, field_name: str = "gpu_type") -> str:
    """A GPU type label as admins write it (``RTX3090``, ``A100-80G``)."""
    if not isinstance(value, str) or not _TYPE_RE.match(value):
        raise InvalidRequestError(
            field_name,
            f"a GPU type is 1-63 letters, digits, '.', '_' or '-' (like RTX3090), got {value!r}",
        )
    return value


@dataclass(frozen=True, slots=True)
class GPU:
    """One physical GPU on one node."""

    node: str
    index: int
    uuid: str
    product: str
    memory_mib: int
    gpu_type: str
    simulated: bool = False

    def __post_init__(self) -> None:
        if not self.node:
            raise InventoryError("node", "a GPU needs the name of its node")
        if not isinstance(self.index, int) or self.index < 0:
            raise InventoryError("index", f"must be a non-negative integer, got {self.index!r}")
        if not self.uuid:
            raise InventoryError("uuid", f"GPU {self.node}/{self.index} has no UUID")
        if not isinstance(self.memory_mib, int) or self.memory_mib <= 0:
            raise InventoryError(
                "memory_mib", f"must be a positive number of MiB, got {self.memory_mib!r}"
            )
        try:
            check_gpu_type(self.gpu_type)
        except InvalidRequestError as err:
            raise InventoryError("gpu_type", err.message) from None


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """What a node the allocator manages offers to the pods it places (CPU and memory).

    ``cpu_millis``/``memory_mib`` of ``None`` mean "not accounted": any request fits.
    """

    name: str
    cpu_millis: int | None = None
    memory_mib: int | None = None
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds a slice: a notebook server or a job, of a user, in a project."""

    kind: str
    user: str
    project: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        # One test for the usual case (a hub restart builds an owner per pod), then the
        # checks one by one to say what is wrong.
        user, project, name = self.user, self.project, self.name
        if (
            type(user) is str
            and type(project) is str
            and type(name) is str
            and 0 < len(user) <= MAX_USER
            and len(project) <= MAX_PROJECT
            and len(name) <= MAX_NAME
            and self.kind in OWNER_KINDS
        ):
            return
        if self.kind not in OWNER_KINDS:
            raise InvalidRequestError(
                "owner.kind", f"must be one of {', '.join(OWNER_KINDS)}, got {self.kind!r}"
            )
        if not isinstance(self.user, str) or not self.user:
            raise InvalidRequestError("owner.user", "a slice needs the name of its user")
        for name, limit in (("user", MAX_USER), ("project", MAX_PROJECT), ("name", MAX_NAME)):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > limit:
                raise InvalidRequestError(
                    f"owner.{name}", f"must be text of at most {limit} characters, got {value!r}"
                )


@dataclass(frozen=True, slots=True)
class SliceRequest:
    """What a notebook or job asks for.

    ``fraction`` is a share in (0, 1] of one GPU, or a whole number of GPUs (1..8) on one node.
    For a share, ``memory_mib`` defaults to that share of the chosen GPU's memory and
    ``compute_min`` (the SM percentage placement reserves; not a run-time minimum, which
    neither CUDA nor MPS can enforce) to that share of 100. ``compute_max`` is the
    burst ceiling (default 100: idle capacity can be borrowed). ``cpu_millis``/``host_memory_mib``
    are the pod's own CPU and memory requests, accounted on nodes the allocator manages.
    ``node``, ``zone`` and ``nodes`` narrow where the slice may be placed.

    ``gpu_type`` names the one GPU type to use; ``None`` with ``gpu_types`` unset means any
    type, and ``gpu_types`` (with ``gpu_type=None``) a set of acceptable types: the allocator
    then chooses among them where the request fragments the cluster least.
    """

    gpu_type: str | None
    fraction: Fraction = Fraction(1)
    memory_mib: int | None = None
    compute_min: int | None = None
    compute_max: int = 100
    cpu_millis: int = 0
    host_memory_mib: int = 0
    node: str | None = None
    zone: str | None = None
    #: Nodes the slice may go to (a profile's node selector, resolved by the caller); None: any.
    nodes: frozenset[str] | None = None
    #: GPU types the slice may use when ``gpu_type`` is None; None: any type.
    gpu_types: frozenset[str] | None = None
    # Derived once at construction: the allocator reads these on every placement, and
    # Fraction arithmetic and hashing would otherwise dominate its cost.
    is_whole: bool = field(init=False, repr=False, compare=False)
    size_key: tuple[int, int] = field(init=False, repr=False, compare=False)
    _compute: int = field(init=False, repr=False, compare=False)
    #: The task shape placement learns and scores (see gpu_fraction.fragmentation.Shape).
    shape: tuple[int, int, int, int, int, int] = field(init=False, repr=False, compare=False)
    _types: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fraction = parse_fraction(self.fraction)
        object.__setattr__(self, "fraction", fraction)
        object.__setattr__(self, "is_whole", fraction >= 1)
        object.__setattr__(self, "size_key", (fraction.numerator, fraction.denominator))
        if self.gpu_type is not None:
            check_gpu_type(self.gpu_type)
        if self.gpu_types is not None:
            if isinstance(self.gpu_types, str):
                raise InvalidRequestError("gpu_types", "expected a set of GPU types, got text")
            types = frozenset(self.gpu_types)
            if not types:
                raise InvalidRequestError("gpu_types", "name at least one GPU type, or leave unset")
            if self.gpu_type is not None:
                raise InvalidRequestError(
                    "gpu_types", "give gpu_type (one type) or gpu_types (a set), not both"
                )
            for value in types:
                check_gpu_type(value, "gpu_types")
            object.__setattr__(self, "gpu_types", types)
        if self.memory_mib is not None:
            _check_int(self.memory_mib, "memory_mib", minimum=1, maximum=MAX_GPU_MEMORY_MIB)
            if self.is_whole:
                raise InvalidRequestError(
                    "memory_mib", "whole-GPU requests get all of each GPU's memory; leave it unset"
                )
        _check_int(self.compute_max, "compute_max", minimum=1, maximum=100)
        if self.compute_min is not None:
            _check_int(self.compute_min, "compute_min", minimum=0, maximum=100)
            if self.compute_min > self.compute_max:
                raise InvalidRequestError(
                    "compute_min",
                    f"guaranteed compute {self.compute_min}% is above the burst maximum "
                    f"{self.compute_max}%",
                )
        _check_int(self.cpu_millis, "cpu_millis", minimum=0, maximum=MAX_CPU_MILLIS)
        _check_int(self.host_memory_mib, "host_memory_mib", minimum=0, maximum=MAX_HOST_MEMORY_MIB)
        for name in ("node", "zone"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, str) or not value or len(value) > MAX_NODE_NAME
            ):
                raise InvalidRequestError(name, f"must be a name (1-253 characters), got {value!r}")
        if self.nodes is not None:
            object.__setattr__(self, "nodes", frozenset(self.nodes))
        if self.is_whole:
            compute = 100
        elif self.compute_min is not None:
            compute = self.compute_min
        else:
            compute = max(1, fraction.numerator * 100 // fraction.denominator)
        object.__setattr__(self, "_compute", compute)
        one = frozenset((self.gpu_type,)) if self.gpu_type is not None else None
        object.__setattr__(self, "_types", one or self.gpu_types)
        object.__setattr__(
            self,
            "shape",
            (
                fraction.numerator,
                fraction.denominator,
                self.memory_mib or 0,
                compute,
                self.cpu_millis,
                self.host_memory_mib,
            ),
        )

    @property
    def allowed_types(self) -> frozenset[str] | None:
        """The GPU types the request accepts; None: any."""
        return self._types

    @property
    def count(self) -> int:
        """How many GPUs the request spans (1 for any share of one GPU)."""
        return int(self.fraction) if self.is_whole else 1

    def guaranteed_compute(self) -> int:
        """SM percentage reserved on each GPU: all of it for whole GPUs."""
        return self._compute

    def memory_on(self, gpu_memory_mib: int) -> int:
        """Guaranteed memory on a GPU of the given size, in MiB."""
        if self.is_whole:
            return gpu_memory_mib
        if self.memory_mib is not None:
            return self.memory_mib
        numerator, denominator = self.size_key
        return max(1, numerator * gpu_memory_mib // denominator)

    def burst_compute(self) -> int:
        return 100 if self.is_whole else self.compute_max


def _check_int(value: object, name: str, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(name, f"must be a whole number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidRequestError(name, f"must be {bound}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Allocation:
    """A request placed on GPU(s) of one node, for an owner.

    ``memory_mib``/``compute_min``/``compute_max`` are per GPU. ``gpu_memory_mib`` is the size
    of each GPU, so enforcement can turn the slice into a fraction for framework caps.
    """

    id: str
    owner: Owner
    node: str
    gpu_type: str
    gpu_uuids: tuple[str, ...]
    gpu_indices: tuple[int, ...]
    fraction: Fraction
    memory_mib: int
    gpu_memory_mib: int
    compute_min: int
    compute_max: int
    cpu_millis: int = 0
    host_memory_mib: int = 0
    product: str = ""
    simulated: bool = False

    @classmethod
    def cpu_only(
        cls, id: str, owner: Owner, node: str, cpu_millis: int, host_memory_mib: int
    ) -> Allocation:
        """A pod on a managed node that holds no GPU, only CPU and memory (``gpu_type``
        ``"none"``, no GPUs, fraction 0), so the node's CPU and memory account for it."""
        return cls(
            id=id,
            owner=owner,
            node=node,
            gpu_type=CPU_ONLY_TYPE,
            gpu_uuids=(),
            gpu_indices=(),
            fraction=Fraction(0),
            memory_mib=0,
            gpu_memory_mib=1,
            compute_min=0,
            compute_max=0,
            cpu_millis=cpu_millis,
            host_memory_mib=host_memory_mib,
        )

    @property
    def is_whole(self) -> bool:
        return self.fraction >= 1

    @property
    def is_cpu_only(self) -> bool:
        """Whether this holds no GPU, only its node's CPU and memory."""
        return not self.gpu_uuids

    @property
    def memory_fraction(self) -> float:
        """Share of each GPU's memory this slice may use (1.0 for whole GPUs)."""
        return min(1.0, self.memory_mib / self.gpu_memory_mib)

    def describe(self) -> str:
        """One line for progress messages: ``1/4 of RTX3090 GPU-3f2a... on node gpu-07``."""
        if self.is_cpu_only:
            return (
                f"no GPU, {self.cpu_millis / 1000:g} CPU and {self.host_memory_mib} MiB memory "
                f"on node {self.node}"
            )
        if self.is_whole:
            what = f"{self.fraction} x {self.gpu_type}"
            where = ", ".join(_short_uuid(u) for u in self.gpu_uuids)
        else:
            what = f"{self.fraction} of {self.gpu_type}"
            where = _short_uuid(self.gpu_uuids[0])
        suffix = " (simulated)" if self.simulated else ""
        return f"{what} {where} on node {self.node}{suffix}"


def _short_uuid(uuid: str) -> str:
    """``GPU-3f2a1b2c...`` for NVIDIA's long UUIDs; short identifiers stay whole."""
    return uuid if len(uuid) <= 16 else uuid[:12] + "..."


def free_share(gpu: GPU, free_memory_mib: int, free_compute: int) -> Fraction:
    """The GPU's free part: the smaller of its free memory and free compute (a slice needs
    both), as an exact fraction of the GPU."""
    memory = Fraction(max(0, free_memory_mib), gpu.memory_mib) if gpu.memory_mib else Fraction(0)
    return max(Fraction(0), min(memory, Fraction(max(0, free_compute), 100)))
