"""A fault-injecting HTTPS reverse proxy in front of kube-apiserver.

Each request under ``/api/v1`` or ``/apis/<group>/<version>`` is classified the way
kube-apiserver's RequestInfo does it (verb, ``resource[/subresource]``, namespace) and put to a
:class:`~tests.control_plane.faults.FaultInjector`; its decision is applied like the old
in-process stand-in applied it: the delay first, then the error (without contacting the API
server, or after it answered with ``after``), and for watches per-event delays and early,
clean closes. Non-resource paths (``/version``, ``/healthz``, ``/openapi/...``, discovery) are
forwarded untouched and never faulted.

The proxy terminates TLS, so client certificates cannot reach the API server through it:
clients of the proxy must authenticate with bearer tokens, which are forwarded in the
``Authorization`` header. Watch events are relayed as JSON lines, so watching clients must not
ask for protobuf (the Python clients do not); connection upgrades (exec, attach, port-forward)
are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
import yarl

from .faults import FaultDecision, FaultInjector

log = logging.getLogger(__name__)

_MARK = "injected fault"
# Watches and followed logs stay open for as long as their client wants.
_UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=3600, sock_connect=10)
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# aiohttp sets Host and Content-Length itself; tornado has already answered any Expect; asking
# for identity bodies keeps watch streams splittable into lines.
_NOT_FORWARDED = _HOP_BY_HOP | {"host", "content-length", "expect", "accept-encoding"}
# tornado computes Content-Length, or chunks a stream.
_NOT_RETURNED = _HOP_BY_HOP | {"content-length"}
_METHOD_VERBS = {
    "GET": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})  # Go's strconv.ParseBool
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class RequestInfo:
    """What a resource request does, as fault rules see it."""

    verb: str
    resource: str  # "pods", "pods/status", "pods/log", "jobs", "namespaces", ...
    namespace: str | None


def classify(method: str, uri: str) -> RequestInfo | None:
    """Classify a request like kube-apiserver; None for non-resource requests."""
    url = urllib.parse.urlsplit(uri)
    parts = [p for p in url.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        rest = parts[3:]
    else:
        return None
    verb = _METHOD_VERBS.get(method)
    if rest[:1] == ["watch"]:
        verb, rest = "watch", rest[1:]
    if not rest or verb is None:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 1:
        # /namespaces/NAME[/status|/finalize] is the namespace itself, in its own namespace.
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if len(rest) < 3 else f"{rest[0]}/{rest[2]}"
    if len(rest) == 1 and verb == "get":
        watch = urllib.parse.parse_qs(url.query).get("watch", [""])[0]
        verb = "watch" if watch in _TRUE else "list"
    elif len(rest) == 1 and verb == "delete":
        verb = "deletecollection"
    return RequestInfo(verb, resource, namespace)


def status_object(code: int, reason: str, message: str, details: dict | None) -> dict[str, Any]:
    """A ``Status`` failure body like the API server sends."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def fault_status(code: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The Status body and headers the API server (or its load balancer) sends for ``code``."""
    if code == 429:
        message = f"Too many requests, please try again later. ({_MARK})"
        return status_object(code, "TooManyRequests", message, {"retryAfterSeconds": 1}), {
            "Retry-After": "1"
        }
    if code == 503:
        message = f"the server is currently unable to handle the request ({_MARK})"
        details = {"causes": [{"reason": "UnexpectedServerResponse", "message": _MARK}]}
        return status_object(code, "ServiceUnavailable", message, details), {}
    if code == 504:
        message = (
            "the server was unable to return a response in the time allotted, but may still be "
            f"processing the request ({_MARK})"
        )
        return status_object(code, "Timeout", message, {"retryAfterSeconds": 1}), {}
    message = f"Internal error occurred: {_MARK}"
    return status_object(code, "InternalError", message, {"causes": [{"message": _MARK}]}), {}


class _ProxyHandler(tornado.web.RequestHandler):
    """Forwards one request, applying the faults drawn for it."""

    SUPPORTED_METHODS = tuple(_METHOD_VERBS)

    def initialize(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self._work: asyncio.Task | None = None

    def compute_etag(self) -> None:
        return None  # the API server's answers pass unchanged

    def on_connection_close(self) -> None:
        if self._work is not None:
            self._work.cancel()  # leaving aiohttp's request context closes the upstream request

    async def _serve(self) -> None:
        self._work = asyncio.ensure_future(self._forward())
        # Cancellation and a vanished client are how a stream ordinarily ends.
        with contextlib.suppress(asyncio.CancelledError, tornado.iostream.StreamClosedError):
            await self._work

    get = post = put = patch = delete = _serve

    def _answer(self, code: int, body: dict, headers: dict[str, str]) -> None:
        self.set_status(code)
        for name, value in headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache, private")
        self.finish(json.dumps(body, separators=(",", ":")))

    async def _forward(self) -> None:
        req = self.request
        self.proxy._requests += 1
        info = classify(req.method or "", req.uri or "")
        decision = (
            FaultDecision()
            if info is None
            else self.proxy.faults.decide(info.verb, info.resource, info.namespace)
        )
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if decision.status is not None and not decision.after:
            self._answer(decision.status, *fault_status(decision.status))
            return
        headers = [(k, v) for k, v in req.headers.get_all() if k.lower() not in _NOT_FORWARDED]
        url = yarl.URL(self.proxy.upstream + (req.uri or ""), encoded=True)
        try:
            async with self.proxy._session.request(
                req.method or "", url, headers=headers, data=req.body or None
            ) as resp:
                if decision.status is not None:
                    # The API server has answered, so the write is applied; its response is lost.
                    self._answer(decision.status, *fault_status(decision.status))
                    return
                self._copy_head(resp)
                if info is not None and info.verb == "watch" and resp.status == 200:
                    await self._relay_watch(resp, decision)
                elif resp.content_length is None:  # followed logs, and other chunked bodies
                    async for chunk in resp.content.iter_any():
                        self.write(chunk)
                        await self.flush()
                else:
                    self.write(await resp.read())
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning(
                "upstream failed on %s %s: %s: %s", req.method, req.uri, type(exc).__name__, exc
            )
            if not self._headers_written:
                self.clear()
                message = f"the proxy could not reach the API server: {type(exc).__name__}: {exc}"
                self._answer(503, status_object(503, "ServiceUnavailable", message, None), {})
                return
        self.finish()

    def _copy_head(self, resp: aiohttp.ClientResponse) -> None:
        self.set_status(resp.status, resp.reason)
        self.clear_header("Content-Type")  # tornado's default; the API server sets its own
        seen: set[str] = set()
        for name, value in resp.headers.items():
            key = name.lower()
            if key in _NOT_RETURNED:
                continue
            if key in seen:
                self.add_header(name, value)
            else:
                self.set_header(name, value)
                seen.add(key)

    async def _relay_watch(self, resp: aiohttp.ClientResponse, decision: FaultDecision) -> None:
        await self.flush()  # the API server sends the headers before the first event
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                self._relay_events(resp, decision), decision.watch_close_after_seconds
            )

    async def _relay_events(self, resp: aiohttp.ClientResponse, decision: FaultDecision) -> None:
        limit = decision.watch_close_after_events
        sent = 0
        pending = b""
        async for chunk in resp.content.iter_any():
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if decision.watch_event_delay:
                    await asyncio.sleep(decision.watch_event_delay)
                self.write(line + b"\n")
                await self.flush()
                if limit is not None and json.loads(line).get("type") != "BOOKMARK":
                    sent += 1
                    if sent >= limit:
                        return
        self.write(pending)  # an unterminated last line


class FaultProxy:
    """An HTTPS reverse proxy for one API server, with its own event loop thread."""

    def __init__(
        self,
        upstream: str,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        seed: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = FaultInjector(seed)
        self.host = host
        self.port = 0
        self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_ssl.load_cert_chain(cert_file, key_file)
        self._upstream_ssl = ssl.create_default_context(cafile=str(ca_file))
        self._requests = 0  # only the loop thread writes it
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        """``https://HOST:PORT``."""
        return f"https://{self.host}:{self.port}"

    @property
    def requests(self) -> int:
        """How many requests the proxy received (faulted ones included)."""
        return self._requests

    def start(self) -> FaultProxy:
        """Start the proxy thread; returns once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        sockets = tornado.netutil.bind_sockets(0, self.host, family=socket.AF_INET)
        self.port = sockets[0].getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup(sockets))
            except BaseException as exc:  # surface startup errors in start()
                failure.append(exc)
                loop.close()
                return
            finally:
                ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        # Its own thread, so that both sync tests and tests running an event loop can use it.
        self._thread = threading.Thread(target=main, name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    async def _startup(self, sockets: list[socket.socket]) -> None:
        # 200 concurrent clients may go through; aiohttp's default pool holds 100 connections.
        # Before Python 3.12.8, asyncio leaks TLS transports closed mid-stream unless aiohttp
        # aborts them (at the latest when the session closes).
        connector = aiohttp.TCPConnector(
            ssl=self._upstream_ssl,
            limit=1000,
            enable_cleanup_closed=aiohttp.connector.NEEDS_CLEANUP_CLOSED,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=_UPSTREAM_TIMEOUT,
            auto_decompress=False,  # a body the API server encoded anyway passes unchanged
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
        )
        app = tornado.web.Application(
            [(r".*", _ProxyHandler, {"proxy": self})],
            # Injected 5xx answers are expected; tornado would log each one as an error.
            log_function=lambda _handler: None,
        )
        self._http = tornado.httpserver.HTTPServer(app, ssl_options=self._server_ssl)
        self._http.add_sockets(sockets)

    async def _shutdown(self) -> None:
        assert self._http is not None
        self._http.stop()
        # Closing the client connections cancels their handlers' upstream requests.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._http.close_all_connections(), 5)
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        await self._session.close()

    def stop(self) -> None:
        """Close the listener and every open stream; wait for the thread to end."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
