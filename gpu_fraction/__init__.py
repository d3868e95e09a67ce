"""GPU slices: the model, the allocator, the pod-annotation ledger, inventory and enforcement.

No Jupyter imports here: the spawner, the jobs service and the node agent all build on this.
"""

from .allocator import POLICIES, Allocator
from .errors import (
    AllocationRefused,
    AnnotationError,
    InvalidFieldError,
    InvalidRequestError,
    InventoryError,
    UnknownAllocationError,
    UnknownGPUTypeError,
)
from .model import GPU, STANDARD_SIZES, Allocation, NodeCapacity, Owner, SliceRequest

__all__ = [
    "GPU",
    "POLICIES",
    "STANDARD_SIZES",
    "Allocation",
    "AllocationRefused",
    "Allocator",
    "AnnotationError",
    "InvalidFieldError",
    "InvalidRequestError",
    "InventoryError",
    "NodeCapacity",
    "Owner",
    "SliceRequest",
    "UnknownAllocationError",
    "UnknownGPUTypeError",
]
