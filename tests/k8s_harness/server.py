"""The HTTP front end: routes, bearer-token auth, fault injection, watches and pod logs."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

import tornado.iostream
import tornado.web
import yaml

from . import resources as res
from .common import parse_time, utcnow
from .errors import (
    ApiError,
    FieldError,
    bad_request,
    invalid_error,
    method_not_allowed,
    path_not_found,
    unauthorized,
    unsupported_media_type,
)
from .faults import FaultDecision, FaultInjector
from .kubelet import Kubelet
from .patch import APPLY_PATCH, PATCH_TYPES
from .registry import DeleteOptions, Registry
from .selectors import parse_field_selector, parse_label_selector
from .store import Store
from .watch import WatchFilter

log = logging.getLogger(__name__)
_DEFAULT_WATCH_TIMEOUT = 1800.0
_NS_SUBRESOURCES = ("status", "finalize")


@dataclass
class Route:
    """What a URL names."""

    rt: res.ResourceType
    namespace: str | None  # None: all namespaces (or cluster-scoped)
    name: str | None = None
    subresource: str | None = None
    watch_path: bool = False


@dataclass
class ServerCore:
    """Shared state of all request handlers."""

    registry: Registry
    store: Store
    kubelet: Kubelet
    faults: FaultInjector
    token: str
    address: str
    bookmark_interval: float = 5.0

    def __post_init__(self) -> None:
        self.closing = asyncio.Event()


def _bool(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise bad_request(f'invalid boolean value "{value}" for {name}')


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f'invalid integer value "{value}" for {name}') from None


def _option_forbidden(field: str, detail: str) -> ApiError:
    return invalid_error(
        "ListOptions", "meta.k8s.io", "", [FieldError("Forbidden", field, detail=detail)]
    )


def parse_route(path: str) -> Route | dict | None:
    """Map a URL path to a resource route, a discovery document, or None (404)."""
    parts = [p for p in path.strip("/").split("/") if p]
    discovery: dict[tuple[str, ...], Any] = {
        (): lambda: {
            "paths": ["/api", "/api/v1", "/apis", "/apis/batch", "/apis/batch/v1", "/version"]
        },
        ("version",): res.version_info,
        ("apis",): res.api_group_list,
        ("api", "v1"): lambda: res.api_resource_list("", "v1"),
    }
    if tuple(parts) in discovery:
        return discovery[tuple(parts)]()
    if parts[:1] == ["api"]:
        if len(parts) == 1:
            return {"__api__": True}
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 2:
        if len(parts) == 2:
            return res.api_group(parts[1])
        if len(parts) == 3:
            return res.api_resource_list(parts[1], parts[2])
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if version not in res.GROUP_VERSIONS.get(group, ()):
        return None
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace: str | None = None
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and not (len(rest) == 3 and rest[2] in _NS_SUBRESOURCES)
    ):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    rt = res.lookup(group, version, rest[0])
    if rt is None or (namespace is not None and not rt.namespaced):
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if rt.namespaced and namespace is None and name is not None:
        return None
    if sub is not None and sub not in rt.subresources:
        return None
    return Route(rt, namespace, name, sub, watch_path)


class ApiHandler(tornado.web.RequestHandler):
    """One handler for every URL; dispatches on method and route."""

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

    def initialize(self, core: ServerCore) -> None:
        self.core = core
        self._client_gone = asyncio.Event()

    def on_connection_close(self) -> None:
        self._client_gone.set()

    def compute_etag(self) -> None:
        return None

    async def get(self, path: str) -> None:
        await self._handle(path)

    async def post(self, path: str) -> None:
        await self._handle(path)

    async def put(self, path: str) -> None:
        await self._handle(path)

    async def patch(self, path: str) -> None:
        await self._handle(path)

    async def delete(self, path: str) -> None:
        await self._handle(path)

    # --- responses ----------------------------------------------------------------------------

    def _json(self, code: int, body: Any) -> None:
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache, private")
        self.finish(json.dumps(body, separators=(",", ":")))

    def _error(self, err: ApiError) -> None:
        for key, value in err.headers.items():
            self.set_header(key, value)
        self._json(err.code, err.status())

    # --- dispatch -----------------------------------------------------------------------------

    def _authorized(self) -> bool:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), self.core.token)

    async def _handle(self, path: str) -> None:
        try:
            if not self._authorized():
                raise unauthorized()
            route = parse_route(path)
            if route is None:
                raise path_not_found()
            if isinstance(route, dict):
                if self.request.method != "GET":
                    raise method_not_allowed()
                body = res.api_versions(self.core.address) if route.get("__api__") else route
                self._json(200, body)
                return
            verb = self._verb(route)
            resource = route.rt.plural + (f"/{route.subresource}" if route.subresource else "")
            decision = self.core.faults.decide(verb, resource, route.namespace)
            if decision.delay:
                await asyncio.sleep(decision.delay)
            if decision.error is not None and not decision.after:
                raise decision.error
            if verb == "watch":
                await self._watch(route, decision)
                return
            if route.subresource == "log":
                await self._pod_log(route)
                return
            code, body = self._run_verb(verb, route)
            if decision.error is not None:
                raise decision.error  # the write happened, but the response is "lost"
            self._json(code, body)
        except ApiError as err:
            if not self._finished:
                self._error(err)
        except tornado.iostream.StreamClosedError:
            pass
        except Exception as exc:
            log.exception("k8s harness failed on %s %s", self.request.method, self.request.uri)
            if not self._finished:
                self._error(ApiError(500, "InternalError", f"Internal error occurred: {exc!r}"))

    def _verb(self, route: Route) -> str:
        method = self.request.method
        collection = route.name is None
        if route.watch_path:
            if method != "GET":
                raise method_not_allowed()
            return "watch"
        if method == "GET":
            if collection:
                return "watch" if _bool(self.get_query_argument("watch", None), "watch") else "list"
            return "get"
        table = {
            ("POST", True): "create",
            ("PUT", False): "update",
            ("PATCH", False): "patch",
            ("DELETE", False): "delete",
            ("DELETE", True): "deletecollection",
        }
        verb = table.get((method, collection))
        if verb is None or (route.subresource and verb not in ("update", "patch")):
            raise method_not_allowed()
        if verb == "create" and route.rt.namespaced and route.namespace is None:
            raise method_not_allowed()
        if verb not in route.rt.verbs and not route.subresource:
            raise method_not_allowed()
        return verb

    def _body(self, allow_empty: bool = False) -> Any:
        raw = self.request.body
        if not raw:
            if allow_empty:
                return None
            raise bad_request("the request body is empty")
        ctype = (
            (self.request.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        )
        try:
            if ctype in ("application/yaml", "text/yaml"):
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding the request body: {exc}") from None

    def _delete_options(self) -> DeleteOptions:
        body = self._body(allow_empty=True) or {}
        if not isinstance(body, dict):
            raise bad_request("DeleteOptions must be a JSON object")
        grace = _int(self.get_query_argument("gracePeriodSeconds", None), "gracePeriodSeconds")
        if grace is None:
            grace = body.get("gracePeriodSeconds")
        policy = self.get_query_argument("propagationPolicy", None) or body.get("propagationPolicy")
        orphan = self.get_query_argument("orphanDependents", None)
        if policy is None and (orphan is not None or "orphanDependents" in body):
            flag = (
                _bool(orphan, "orphanDependents")
                if orphan is not None
                else body["orphanDependents"]
            )
            policy = "Orphan" if flag else "Background"
        dry_run = self.get_query_argument("dryRun", None) == "All" or body.get("dryRun") == ["All"]
        return DeleteOptions(grace, policy, body.get("preconditions"), dry_run)

    def _run_verb(self, verb: str, route: Route) -> tuple[int, Any]:
        reg, rt = self.core.registry, route.rt
        ns = route.namespace or ""
        q = self.get_query_argument
        dry_run = q("dryRun", None) == "All"
        if verb == "list":
            return 200, reg.list(
                rt,
                route.namespace,
                label_selector=q("labelSelector", None),
                field_selector=q("fieldSelector", None),
                resource_version=q("resourceVersion", None),
                resource_version_match=q("resourceVersionMatch", None),
                limit=_int(q("limit", None), "limit"),
                continue_token=q("continue", None),
            )
        if verb == "get":
            return 200, reg.get(rt, ns, route.name or "")
        if verb == "create":
            return 201, reg.create(rt, ns, self._body(), dry_run=dry_run)
        if verb == "update":
            return 200, reg.update(
                rt,
                ns,
                route.name or "",
                self._body(),
                subresource=route.subresource,
                dry_run=dry_run,
            )
        if verb == "patch":
            ctype = (self.request.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype not in PATCH_TYPES:
                raise unsupported_media_type(
                    ctype, [*PATCH_TYPES, APPLY_PATCH + " (not supported by the k8s harness)"]
                )
            return 200, reg.patch(
                rt,
                ns,
                route.name or "",
                self._body(),
                ctype,
                subresource=route.subresource,
                dry_run=dry_run,
            )
        if verb == "delete":
            return reg.delete(rt, ns, route.name or "", self._delete_options())
        return 200, reg.delete_collection(
            rt,
            route.namespace,
            self._delete_options(),
            label_selector=q("labelSelector", None),
            field_selector=q("fieldSelector", None),
        )

    # --- watch --------------------------------------------------------------------------------

    async def _watch(self, route: Route, decision: FaultDecision) -> None:
        q = self.get_query_argument
        rt = route.rt
        wf = WatchFilter(
            rt,
            parse_label_selector(q("labelSelector", None)),
            parse_field_selector(q("fieldSelector", None), rt.plural),
        )
        rv_text = q("resourceVersion", None) or ""
        rv_match = q("resourceVersionMatch", None)
        bookmarks = _bool(q("allowWatchBookmarks", None), "allowWatchBookmarks")
        initial = q("sendInitialEvents", None)
        send_initial = _bool(initial, "sendInitialEvents")
        if initial is not None:
            if not bookmarks or rv_match != "NotOlderThan":
                raise _option_forbidden(
                    "sendInitialEvents",
                    "sendInitialEvents is forbidden for watch unless resourceVersionMatch is "
                    "NotOlderThan and allowWatchBookmarks is true",
                )
        elif rv_match:
            raise _option_forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )
        since: int | None = None
        if rv_text not in ("", "0") and not send_initial:
            since = _int(rv_text, "resourceVersion")
        timeout = float(_int(q("timeoutSeconds", None), "timeoutSeconds") or _DEFAULT_WATCH_TIMEOUT)
        if decision.watch_close_after_seconds is not None:
            timeout = min(timeout, decision.watch_close_after_seconds)
        self.set_status(200)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache, private")
        await self.flush()
        try:
            backlog, sub, progress = self.core.store.watch(rt.plural, route.namespace, since)
        except ApiError as err:
            await self._send({"type": "ERROR", "object": err.status()})
            self.finish()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sent = 0
        limit = decision.watch_close_after_events
        try:
            pending = list(backlog)
            if send_initial:
                pending.append(None)  # marker for the initial-events-end bookmark
            while True:
                if pending:
                    ev = pending.pop(0)
                    out = wf.bookmark(progress, True) if ev is None else wf.apply(ev)
                    if ev is not None:
                        progress = max(progress, ev.rv)
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or self._client_gone.is_set() or self.core.closing.is_set():
                        break
                    wait = min(remaining, self.core.bookmark_interval) if bookmarks else remaining
                    ev = await self._next(sub.queue, wait)
                    if ev is None:
                        out = (
                            wf.bookmark(progress)
                            if bookmarks
                            and loop.time() < deadline
                            and not self._client_gone.is_set()
                            and not self.core.closing.is_set()
                            else None
                        )
                    else:
                        progress = max(progress, ev.rv)
                        out = wf.apply(ev)
                if out is None:
                    continue
                if decision.watch_event_delay:
                    await asyncio.sleep(decision.watch_event_delay)
                await self._send(out)
                if out["type"] != "BOOKMARK":
                    sent += 1
                if limit is not None and sent >= limit:
                    break
        finally:
            sub.close()
        if not self._client_gone.is_set():
            self.finish()

    async def _next(self, queue: asyncio.Queue, wait: float) -> Any:
        getter = asyncio.ensure_future(queue.get())
        stoppers = [
            asyncio.ensure_future(self._client_gone.wait()),
            asyncio.ensure_future(self.core.closing.wait()),
        ]
        try:
            done, _ = await asyncio.wait(
                [getter, *stoppers], timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for s in stoppers:
                s.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        return None

    async def _send(self, event: dict) -> None:
        self.write(json.dumps(event, separators=(",", ":")) + "\n")
        await self.flush()

    # --- logs ---------------------------------------------------------------------------------

    async def _pod_log(self, route: Route) -> None:
        q = self.get_query_argument
        pod = self.core.registry.get(route.rt, route.namespace or "", route.name or "")
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in pod["spec"]["containers"]]
        init = [c["name"] for c in pod["spec"].get("initContainers") or []]
        container = q("container", None)
        if not container:
            if len(containers) != 1:
                choices = " ".join(containers)
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{choices}]"
                )
            container = containers[0]
        if container not in containers + init:
            raise bad_request(f"container {container} is not valid for pod {name}")
        errors = []
        tail = _int(q("tailLines", None), "tailLines")
        limit_bytes = _int(q("limitBytes", None), "limitBytes")
        since = _int(q("sinceSeconds", None), "sinceSeconds")
        for field, value, floor in (
            ("tailLines", tail, 0),
            ("limitBytes", limit_bytes, 1),
            ("sinceSeconds", since, 1),
        ):
            if value is not None and value < floor:
                bound = "greater than or equal to 0" if floor == 0 else "greater than 0"
                errors.append(FieldError("Invalid value", field, value, f"must be {bound}"))
        if errors:
            raise invalid_error("PodLogOptions", "", name, errors)
        previous = _bool(q("previous", None), "previous")
        timestamps = _bool(q("timestamps", None), "timestamps")
        follow = _bool(q("follow", None), "follow")
        statuses = (pod.get("status") or {}).get("containerStatuses", []) + (
            pod.get("status") or {}
        ).get("initContainerStatuses", [])
        status = next((s for s in statuses if s.get("name") == container), {})
        state = status.get("state", {})
        path = self.core.kubelet.log_file(
            pod["metadata"]["uid"], container, previous, status.get("restartCount")
        )
        if path is None:
            if previous:
                raise bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        since_time = q("sinceTime", None)
        cutoff = None
        if since is not None:
            cutoff = utcnow().timestamp() - since
        elif since_time:
            cutoff = parse_time(since_time).timestamp()
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        if cutoff is not None:
            lines = [ln for ln in lines if parse_time(ln.split(" ", 1)[0]).timestamp() >= cutoff]
        if tail is not None:
            lines = lines[-tail:] if tail else []
        self.set_status(200)
        self.set_header("Content-Type", "text/plain")
        budget = limit_bytes

        def render(chunk: list[str]) -> str:
            nonlocal budget
            text = "".join(ln if timestamps else ln.split(" ", 1)[1] for ln in chunk)
            if budget is not None:
                text = text.encode()[:budget].decode("utf-8", "ignore")
                budget -= len(text.encode())
            return text

        if not follow:
            self.finish(render(lines))
            return
        await self._follow(path, render(lines), render, pod, container)

    async def _follow(self, path: Any, first: str, render: Any, pod: dict, container: str) -> None:
        self.write(first)
        await self.flush()
        offset = path.stat().st_size
        uid, ns, name = (
            pod["metadata"]["uid"],
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
        )
        while not self._client_gone.is_set() and not self.core.closing.is_set():
            await asyncio.sleep(0.1)
            with path.open("r", encoding="utf-8", errors="replace") as fh:
                fh.seek(offset)
                data = fh.read()
                offset = fh.tell()
            if data:
                self.write(render(data.splitlines(keepends=True)))
                await self.flush()
                continue
            current = self.core.store.get("pods", ns, name)
            if current is None or current["metadata"]["uid"] != uid:
                break
            statuses = (current.get("status") or {}).get("containerStatuses", [])
            state = next((s.get("state", {}) for s in statuses if s.get("name") == container), {})
            if "running" not in state:
                break
        if not self._client_gone.is_set():
            self.finish()


def make_app(core: ServerCore) -> tornado.web.Application:
    """The tornado application serving the harness API."""
    return tornado.web.Application(
        [(r"(/.*)", ApiHandler, {"core": core})],
        log_function=lambda handler: log.debug(
            "%s %s %s", handler.get_status(), handler.request.method, handler.request.uri
        ),
    )
