"""The REST verbs (create, get, list, update, patch, delete) with API server semantics.

Both the HTTP layer and the simulated controllers go through here, so every write is defaulted,
validated against the official schema and checked like the real server does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .common import MAX_GENERATE_NAME_PREFIX, deep_copy, prune_nulls, random_suffix, rfc3339, utcnow
from .errors import (
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    forbidden_error,
    invalid_error,
    not_found_error,
    not_supported,
    required,
)
from .patch import apply_patch
from .resources import ResourceType, resolve
from .schema import normalize_times, schema_error
from .selectors import parse_field_selector, parse_label_selector
from .store import Store
from .strategy import Strategies
from .validation import validate_object, validate_update

_PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
_NS_TERMINATING = (
    "The system is ensuring all content is removed from this namespace.  Upon completion, this "
    "namespace will automatically be purged by the system."
)
_PROPAGATION = ("Orphan", "Background", "Foreground")


@dataclass
class DeleteOptions:
    """The parts of metav1.DeleteOptions the harness honours."""

    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    preconditions: dict | None = None
    dry_run: bool = False


def success_status(rt: ResourceType, md: dict) -> dict:
    """The Status a DELETE returns for resources that don't return the deleted object."""
    details: dict[str, Any] = {"name": md["name"]}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    details["uid"] = md.get("uid", "")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def _list_options_error(errors: list[FieldError]) -> ApiError:
    return invalid_error("ListOptions", "meta.k8s.io", "", errors)


class Registry:
    """Verbs over the store."""

    def __init__(self, store: Store, rng: random.Random) -> None:
        self.store = store
        self.rng = rng
        self.strategies = Strategies(rng)

    # --- helpers -------------------------------------------------------------------------------

    def _uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _coerce(self, rt: ResourceType, body: Any, namespace: str) -> dict:
        if not isinstance(body, dict):
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                "the body must be a JSON object"
            )
        obj = prune_nulls(deep_copy(body))
        api_version = obj.setdefault("apiVersion", rt.api_version)
        kind = obj.setdefault("kind", rt.kind)
        if api_version != rt.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        if kind != rt.kind:
            raise bad_request(
                f'{kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        try:
            obj = normalize_times(obj, api_version, kind)
        except ValueError as exc:
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled: {exc}'
            ) from None
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled: metadata')
        if rt.namespaced:
            if md.get("namespace") and md["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        return obj

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.get("namespaces", "", namespace)
        if ns is None:
            raise not_found_error("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise forbidden_error(
                rt.plural,
                rt.group,
                name,
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def _prepare(self, fn: Callable[[], Any]) -> Exception | None:
        # Defaulting can trip over values of the wrong type; the schema check then names them.
        try:
            fn()
        except ApiError:
            raise
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            return exc
        return None

    def _validate(
        self,
        rt: ResourceType,
        obj: dict,
        old: dict | None,
        crash: Exception | None,
        spec_validated: bool = False,
    ) -> None:
        name = obj["metadata"].get("name", "")
        # A status write keeps the spec that was validated when it was written; checking the
        # rest alone is as strict and spares re-walking a large pod spec on every status change.
        checked = {k: v for k, v in obj.items() if k != "spec"} if spec_validated else obj
        schema_err = schema_error(checked)
        if schema_err is not None:
            raise invalid_error(rt.kind, rt.group, name, [schema_err])
        if crash is not None:
            raise ApiError(500, "InternalError", f"k8s harness defaulting failed: {crash!r}")
        errors = validate_object(rt, obj)
        if old is not None:
            errors += validate_update(rt, obj, old)
        if errors:
            raise invalid_error(rt.kind, rt.group, name, errors)

    def _key(self, rt: ResourceType, namespace: str) -> str:
        return namespace if rt.namespaced else ""

    def _remove(self, rt: ResourceType, obj: dict) -> dict:
        md = obj["metadata"]
        gone = self.store.remove(rt.plural, md.get("namespace", ""), md["name"], obj)
        self.strategies.release(rt, obj)
        return gone or obj

    def _should_remove(self, rt: ResourceType, obj: dict) -> bool:
        md = obj["metadata"]
        if not md.get("deletionTimestamp") or md.get("finalizers"):
            return False
        if rt.kind == "Pod":
            return md.get("deletionGracePeriodSeconds", 0) == 0
        if rt.kind == "Namespace":
            return not (obj.get("spec") or {}).get("finalizers")
        return True

    def _commit(self, rt: ResourceType, obj: dict) -> dict:
        if self._should_remove(rt, obj):
            return self._remove(rt, obj)
        return self.store.put(rt.plural, obj)

    # --- create / read -------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str, body: Any, *, dry_run: bool = False) -> dict:
        """POST: defaults, validation, 404 for a missing namespace, 409 AlreadyExists."""
        with self.store.lock:
            obj = self._coerce(rt, body, namespace)
            md = obj["metadata"]
            if not md.get("name"):
                prefix = md.get("generateName")
                if not prefix:
                    raise invalid_error(
                        rt.kind,
                        rt.group,
                        "",
                        [required("metadata.name", "name or generateName is required")],
                    )
                prefix = prefix[:MAX_GENERATE_NAME_PREFIX]
                for _ in range(16):
                    md["name"] = prefix + random_suffix(self.rng)
                    if self.store.get(rt.plural, self._key(rt, namespace), md["name"]) is None:
                        break
            self._check_namespace(rt, namespace, md["name"])
            for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
                md.pop(key, None)
            for key in ("selfLink", "managedFields", "generation"):
                md.pop(key, None)
            md["uid"] = self._uid()
            md["creationTimestamp"] = rfc3339()
            crash = self._prepare(lambda: self.strategies.prepare_for_create(rt, obj))
            self._validate(rt, obj, None, crash)
            if self.store.get(rt.plural, self._key(rt, namespace), md["name"]) is not None:
                self.strategies.release(rt, obj)
                raise already_exists(rt.plural, rt.group, md["name"])
            if dry_run:
                self.strategies.release(rt, obj)
                return obj
            return self.store.put(rt.plural, obj)

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict:
        """GET one object (404 NotFound)."""
        obj = self.store.get(rt.plural, self._key(rt, namespace), name)
        if obj is None:
            raise not_found_error(rt.plural, rt.group, name)
        return obj

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict:
        """LIST with selectors, resourceVersion semantics and limit/continue paging."""
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rt.plural)
        rv = self._parse_list_rv(resource_version, resource_version_match)
        start_after: tuple[str, str] | None = None
        with self.store.lock:
            current = self.store.resource_version
            if continue_token:
                list_rv, start_after = self._decode_continue(continue_token)
                items = self.store.snapshot_at(rt.plural, namespace, list_rv)
            elif resource_version_match == "Exact" and rv is not None:
                list_rv, items = rv, self.store.snapshot_at(rt.plural, namespace, rv)
            else:
                if rv is not None and rv > current:
                    raise ApiError(
                        504,
                        "Timeout",
                        f"Too large resource version: {rv}, current: {current}",
                        {
                            "causes": [
                                {
                                    "reason": "ResourceVersionTooLarge",
                                    "message": "Too large resource version",
                                }
                            ],
                            "retryAfterSeconds": 1,
                        },
                    )
                list_rv, items = current, self.store.list(rt.plural, namespace)
        selected = [
            o
            for o in items
            if labels.matches(o["metadata"].get("labels"))
            and fields.matches(o)
            and (start_after is None or _item_key(o) > start_after)
        ]
        list_meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit and len(selected) > limit:
            last = selected[limit - 1]
            list_meta["continue"] = self._encode_continue(list_rv, _item_key(last))
            if not label_selector and not field_selector:
                list_meta["remainingItemCount"] = len(selected) - limit
            selected = selected[:limit]
        for item in selected:
            # Items of typed lists carry no kind/apiVersion, like the real server's.
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": list_meta,
            "items": selected,
        }

    @staticmethod
    def _parse_list_rv(resource_version: str | None, match: str | None) -> int | None:
        if match is not None and match not in ("Exact", "NotOlderThan"):
            raise _list_options_error(
                [not_supported("resourceVersionMatch", match, ["Exact", "NotOlderThan"])]
            )
        if match and not resource_version:
            raise _list_options_error(
                [
                    FieldError(
                        "Forbidden",
                        "resourceVersionMatch",
                        detail="resourceVersionMatch is forbidden unless resourceVersion is "
                        "provided",
                    )
                ]
            )
        if not resource_version:
            return None
        try:
            rv = int(resource_version)
        except ValueError:
            raise bad_request(f"invalid resource version: {resource_version!r}") from None
        if match == "Exact" and rv == 0:
            raise _list_options_error(
                [
                    FieldError(
                        "Forbidden",
                        "resourceVersionMatch",
                        detail='resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                    )
                ]
            )
        return rv or None

    @staticmethod
    def _encode_continue(rv: int, key: tuple[str, str]) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(key)})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @staticmethod
    def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            return int(data["rv"]), (data["start"][0], data["start"][1])
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
            raise bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion"
            ) from None

    # --- update / patch ------------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict:
        """PUT with optimistic concurrency (409 Conflict on a stale resourceVersion)."""
        with self.store.lock:
            new = self._coerce(rt, body, namespace)
            body_name = new["metadata"].get("name")
            if body_name != name:
                raise bad_request(
                    f"the name of the object ({body_name}) does not match the name on the URL "
                    f"({name})"
                )
            old = self.get(rt, namespace, name)
            rv = new["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            return self._update(rt, old, new, subresource, dry_run)

    def _update(
        self, rt: ResourceType, old: dict, new: dict, subresource: str | None, dry_run: bool
    ) -> dict:
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        holder: dict[str, dict] = {}

        def prepare() -> None:
            holder["obj"] = self.strategies.prepare_for_update(rt, new, old, subresource)

        crash = self._prepare(prepare)
        result = holder.get("obj", new)
        spec_validated = subresource == "status" and result.get("spec") == old.get("spec")
        self._validate(rt, result, old, crash, spec_validated)
        if result == old:
            return old  # a no-op update writes nothing and keeps the resourceVersion
        if dry_run:
            return result
        return self._commit(rt, result)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict:
        """PATCH (merge, JSON, strategic); a resourceVersion in the patch is a precondition."""
        with self.store.lock:
            old = self.get(rt, namespace, name)
            patched = apply_patch(old, patch, content_type, rt.api_version, rt.kind)
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise bad_request("the patch produced an object without metadata")
            rv = patched["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            new = self._coerce(rt, patched, namespace)
            return self._update(rt, old, new, subresource, dry_run)

    def mutate(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        fn: Callable[[dict], Any],
        *,
        subresource: str | None = "status",
        uid: str | None = None,
    ) -> dict | None:
        """Read-modify-write for controllers; None if the object (with that uid) is gone.

        ``subresource="binding"`` lets the scheduler set ``spec.nodeName`` and status together.
        """
        with self.store.lock:
            old = self.store.get(rt.plural, self._key(rt, namespace), name)
            if old is None or (uid is not None and old["metadata"].get("uid") != uid):
                return None
            new = deep_copy(old)
            fn(new)
            new = prune_nulls(new)
            if subresource == "binding":
                # Binding sets spec.nodeName (a plain string, checked by validate_object); the
                # rest of the spec is the one validated when the pod was written.
                spec_validated = _without_node(new.get("spec")) == _without_node(old.get("spec"))
                self._validate(rt, new, None, None, spec_validated)
                return old if new == old else self._commit(rt, new)
            return self._update(rt, old, new, subresource, False)

    # --- delete --------------------------------------------------------------------------------

    def delete(
        self, rt: ResourceType, namespace: str, name: str, opts: DeleteOptions | None = None
    ) -> tuple[int, dict]:
        """DELETE: graceful for pods, finalizers, propagation; returns (code, body)."""
        opts = opts or DeleteOptions()
        with self.store.lock:
            original = self.get(rt, namespace, name)
            obj = deep_copy(original)
            md = obj["metadata"]
            self._check_preconditions(rt, obj, opts.preconditions)
            if opts.propagation_policy is not None and opts.propagation_policy not in _PROPAGATION:
                raise invalid_error(
                    "DeleteOptions",
                    "meta.k8s.io",
                    "",
                    [
                        not_supported(
                            "propagationPolicy", opts.propagation_policy, list(_PROPAGATION)
                        )
                    ],
                )
            if rt.kind == "Namespace":
                return self._delete_namespace(obj, opts)
            if opts.dry_run:
                return 200, obj
            # batch/v1 Jobs still default to orphaning their pods; everything else to Background.
            policy = opts.propagation_policy or ("Orphan" if rt.kind == "Job" else "Background")
            if policy == "Orphan":
                self._orphan_dependents(md["uid"])
            fins = md.setdefault("finalizers", [])
            if policy == "Foreground" and "foregroundDeletion" not in fins:
                fins.append("foregroundDeletion")
            if not fins:
                md.pop("finalizers")
            grace = self._grace_period(rt, obj, opts)
            if md.get("finalizers") or grace > 0:
                previous = md.get("deletionGracePeriodSeconds")
                if md.get("deletionTimestamp") is None or (
                    previous is not None and grace < previous
                ):
                    md["deletionTimestamp"] = rfc3339(utcnow() + dt.timedelta(seconds=grace))
                    md["deletionGracePeriodSeconds"] = grace
                return 200, original if obj == original else self._commit(rt, obj)
            md.setdefault("deletionTimestamp", rfc3339())
            md["deletionGracePeriodSeconds"] = 0
            removed = self._remove(rt, obj)
            if rt.return_deleted_object:
                return 200, removed
            return 200, success_status(rt, md)

    def _check_preconditions(self, rt: ResourceType, obj: dict, pre: dict | None) -> None:
        if not pre:
            return
        md = obj["metadata"]
        for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if pre.get(key) and pre[key] != md.get(key):
                raise conflict(
                    rt.plural,
                    rt.group,
                    md["name"],
                    f"Precondition failed: {label} in precondition: {pre[key]}, {label} in "
                    f"object meta: {md.get(key)}",
                )

    def _grace_period(self, rt: ResourceType, obj: dict, opts: DeleteOptions) -> int:
        if rt.kind != "Pod":
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        grace = opts.grace_period_seconds
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        # Unscheduled and finished pods go away at once (pod CheckGracefulDelete).
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            grace = 0
        return max(int(grace), 0)

    def _orphan_dependents(self, owner_uid: str) -> None:
        for plural, obj in self.store.all_objects():
            refs = obj["metadata"].get("ownerReferences") or []
            kept = [r for r in refs if r.get("uid") != owner_uid]
            if len(kept) != len(refs):
                if kept:
                    obj["metadata"]["ownerReferences"] = kept
                else:
                    obj["metadata"].pop("ownerReferences")
                self.store.put(plural, obj)

    def _delete_namespace(self, ns: dict, opts: DeleteOptions) -> tuple[int, dict]:
        md = ns["metadata"]
        rt = resolve("namespaces")
        if md["name"] in _PROTECTED_NAMESPACES:
            raise forbidden_error("namespaces", "", md["name"], "this namespace may not be deleted")
        if md.get("deletionTimestamp"):
            raise conflict("namespaces", "", md["name"], _NS_TERMINATING)
        if opts.dry_run:
            return 200, ns
        md["deletionTimestamp"] = rfc3339()
        md["deletionGracePeriodSeconds"] = 0
        ns.setdefault("status", {})["phase"] = "Terminating"
        return 200, self._commit(rt, ns)

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        opts: DeleteOptions,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict:
        """DELETE on a collection: deletes each selected object, returns them as a list."""
        with self.store.lock:
            listed = self.list(
                rt, namespace, label_selector=label_selector, field_selector=field_selector
            )
            deleted = []
            for item in listed["items"]:
                md = item["metadata"]
                _, body = self.delete(rt, md.get("namespace", ""), md["name"], opts)
                deleted.append(body if body.get("kind") != "Status" else item)
            listed["items"] = deleted
            return listed


def _item_key(obj: dict) -> tuple[str, str]:
    md = obj["metadata"]
    return (md.get("namespace", ""), md["name"])


def _without_node(spec: dict | None) -> dict:
    return {k: v for k, v in (spec or {}).items() if k != "nodeName"}
