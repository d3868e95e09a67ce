"""API errors and the ``Status`` bodies the real API server sends with them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_NO_VALUE = object()

# Field error types (k8s.io/apimachinery/pkg/util/validation/field) and their cause reasons.
REQUIRED = "Required value"
INVALID = "Invalid value"
NOT_SUPPORTED = "Unsupported value"
DUPLICATE = "Duplicate value"
FORBIDDEN = "Forbidden"
NOT_FOUND = "Not found"
TOO_LONG = "Too long"

_CAUSE_REASONS = {
    REQUIRED: "FieldValueRequired",
    INVALID: "FieldValueInvalid",
    NOT_SUPPORTED: "FieldValueNotSupported",
    DUPLICATE: "FieldValueDuplicate",
    FORBIDDEN: "FieldValueForbidden",
    NOT_FOUND: "FieldValueNotFound",
    TOO_LONG: "FieldValueTooLong",
}
# Go prints no value for these error types.
_VALUELESS = {REQUIRED, FORBIDDEN, TOO_LONG}


def _format_value(value: Any) -> str:
    """Format a bad value like Go's field.Error does (%q for strings)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(str(value))


@dataclass
class FieldError:
    """One validation error on one field, rendered like ``field.Error``."""

    type: str
    field: str
    value: Any = _NO_VALUE
    detail: str = ""

    def body(self) -> str:
        """The message without the field path (what a Status cause carries)."""
        if self.type in _VALUELESS or self.value is _NO_VALUE:
            text = self.type
        else:
            text = f"{self.type}: {_format_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict:
        """A StatusCause entry."""
        return {
            "reason": _CAUSE_REASONS.get(self.type, "FieldValueInvalid"),
            "message": self.body(),
            "field": self.field,
        }


def required(path: str, detail: str = "") -> FieldError:
    """A ``Required value`` error."""
    return FieldError(REQUIRED, path, detail=detail)


def invalid(path: str, value: Any, detail: str = "") -> FieldError:
    """An ``Invalid value`` error."""
    return FieldError(INVALID, path, value, detail)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    """An ``Unsupported value`` error listing the accepted values."""
    return FieldError(
        NOT_SUPPORTED, path, value, "supported values: " + ", ".join(f'"{s}"' for s in supported)
    )


def duplicate(path: str, value: Any) -> FieldError:
    """A ``Duplicate value`` error."""
    return FieldError(DUPLICATE, path, value)


def forbidden(path: str, detail: str) -> FieldError:
    """A ``Forbidden`` error."""
    return FieldError(FORBIDDEN, path, detail=detail)


def not_found(path: str, value: Any, detail: str = "") -> FieldError:
    """A ``Not found`` error."""
    return FieldError(NOT_FOUND, path, value, detail)


def too_long(path: str, limit: int) -> FieldError:
    """A ``Too long`` error."""
    return FieldError(TOO_LONG, path, detail=f"must have at most {limit} bytes")


@dataclass
class ApiError(Exception):
    """An error answered with a ``Status`` body; raised anywhere below the HTTP layer."""

    code: int
    reason: str
    message: str
    details: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict:
        """The ``Status`` object for the response body."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(name: str, group: str, kind: str) -> dict:
    out: dict[str, Any] = {"name": name}
    if group:
        out["group"] = group
    out["kind"] = kind
    return out


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found_error(plural: str, group: str, name: str) -> ApiError:
    """404 NotFound, e.g. ``pods "x" not found``."""
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(plural, group)} "{name}" not found',
        _details(name, group, plural),
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    """409 AlreadyExists."""
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(plural, group)} "{name}" already exists',
        _details(name, group, plural),
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> ApiError:
    """409 Conflict (optimistic concurrency or precondition failure)."""
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        _details(name, group, plural),
    )


def invalid_error(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid with one cause per field error."""
    joined = ", ".join(str(e) for e in errors)
    summary = joined if len(errors) == 1 else f"[{joined}]"
    qualified_kind = f"{kind}.{group}" if group else kind
    details = _details(name, group, kind)
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {summary}', details)


def forbidden_error(plural: str, group: str, name: str, why: str) -> ApiError:
    """403 Forbidden."""
    return ApiError(
        403,
        "Forbidden",
        f'{_qualified(plural, group)} "{name}" is forbidden: {why}',
        _details(name, group, plural),
    )


def bad_request(message: str) -> ApiError:
    """400 BadRequest (no details, like errors.NewBadRequest)."""
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    """401 Unauthorized."""
    return ApiError(401, "Unauthorized", "Unauthorized")


def path_not_found() -> ApiError:
    """404 for URLs that name no resource."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    """405 for verbs a resource does not support."""
    return ApiError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def expired(message: str) -> ApiError:
    """410 Expired (too old resourceVersion)."""
    return ApiError(410, "Expired", message)


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    """415 UnsupportedMediaType."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)} (got {content_type or 'none'})",
    )
