"""Errors raised by gpu_fraction.

Bad input is a ``ValueError`` subclass that names the field at fault, so callers (the spawn form,
the jobs API, the admin YAML loader) can turn it into a message that points at what to fix.
A refusal for lack of capacity is not bad input and is a separate class that carries a reason a
person can act on.
"""

from __future__ import annotations


class InvalidFieldError(ValueError):
    """A value is not acceptable; ``field`` names it (e.g. ``"fraction"``)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class InvalidRequestError(InvalidFieldError):
    """A slice request (fraction, memory, compute, owner, ...) is malformed."""


class UnknownGPUTypeError(InvalidRequestError):
    """The request names a GPU type that no GPU in the inventory has."""

    def __init__(self, gpu_type: str, known: list[str]) -> None:
        known_text = ", ".join(sorted(known)) or "none"
        super().__init__(
            "gpu_type", f"unknown GPU type {gpu_type!r}; the inventory has: {known_text}"
        )
        self.gpu_type = gpu_type


class AnnotationError(InvalidFieldError):
    """A pod's ``ai-console/...`` annotations cannot be read back into an allocation."""


class InventoryError(InvalidFieldError):
    """A GPU inventory declaration (node labels, NVML data, simulated spec) is malformed."""


class AllocationRefused(Exception):
    """No GPU can take the request now; ``reason`` says why in words a person can act on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class UnknownAllocationError(KeyError):
    """``commit`` was called for an allocation the allocator does not hold (expired or released)."""

    def __init__(self, allocation_id: str) -> None:
        self.allocation_id = allocation_id
        super().__init__(allocation_id)

    def __str__(self) -> str:
        return f"no live allocation {self.allocation_id!r} (released or expired before commit)"
