"""The fault-injecting proxy, in front of a small HTTPS server that answers like the API server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, watch

from tests.control_plane.proxy import FaultProxy, RequestInfo, classify

SEED = 7
EVENTS = ["ADDED", "BOOKMARK", "ADDED", "MODIFIED", "DELETED"]


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "x"}}


class Upstream(tornado.web.RequestHandler):
    """A pod GET, a pod list and watch, a pod POST, a followed log and ``/version``."""

    def initialize(self, seen: list[dict], gone: threading.Event) -> None:
        self.seen, self.gone = seen, gone
        self.closed = asyncio.Event()

    def prepare(self) -> None:
        self.seen.append({"body": self.request.body, **self.request.headers})

    def on_connection_close(self) -> None:
        self.closed.set()
        self.gone.set()

    async def get(self, path: str) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Audit-Id", "audit-1")
        if path == "/version":
            self.finish({"major": "1", "minor": "33"})
        elif path.endswith("/log"):
            await self._stream([f"line {i}" for i in range(3)], 0.3)
        elif self.get_query_argument("watch", None):
            events = [
                json.dumps({"type": t, "object": _pod(f"p{i}")}) for i, t in enumerate(EVENTS)
            ]
            # Then it stays open like the API server does, until timeoutSeconds.
            await self._stream(events, 0.05, float(self.get_query_argument("timeoutSeconds", "1")))
        elif path.endswith("/pods"):
            self.finish({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})
        else:
            self.finish(_pod(path.rsplit("/", 1)[1]))

    async def _stream(self, lines: list[str], pause: float, hold: float = 0.0) -> None:
        with contextlib.suppress(tornado.iostream.StreamClosedError):  # the proxy dropped it
            for line in lines:
                self.write(line + "\n")
                await self.flush()
                await asyncio.sleep(pause)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.closed.wait(), hold)

    def post(self, path: str) -> None:
        self.set_status(201)
        self.set_header("Content-Type", "application/json")
        self.finish(json.loads(self.request.body))


def _issue(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and two serving certificates (for the upstream and the proxy) for 127.0.0.1."""
    root = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("test-ca", ca_key, None, ca_key)
    files = {"ca": root / "ca.crt"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("upstream", "proxy"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert, pem = _issue(name, key, ca, ca_key), serialization.Encoding.PEM
        files[name], files[f"{name}-key"] = root / f"{name}.crt", root / f"{name}.key"
        files[name].write_bytes(cert.public_bytes(pem))
        pkcs8, plain = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        files[f"{name}-key"].write_bytes(key.private_bytes(pem, pkcs8, plain))
    return files


class Env:
    """The proxy, what reached the upstream, and clients configured for the proxy."""

    def __init__(
        self, proxy: FaultProxy, ca: Path, seen: list[dict], gone: threading.Event
    ) -> None:
        self.proxy, self.faults, self.ca, self.seen, self.gone = proxy, proxy.faults, ca, seen, gone
        config = client.Configuration(host=proxy.url)
        config.ssl_ca_cert = str(ca)
        config.api_key = {"authorization": "Bearer x"}
        self.core = client.CoreV1Api(client.ApiClient(config))

    def get(self, path: str, **kwargs: object) -> requests.Response:
        """A GET through the proxy on a fresh connection."""
        auth = {"Authorization": "Bearer x"}
        return requests.get(self.proxy.url + path, verify=self.ca, headers=auth, **kwargs)


@pytest.fixture
def env(pki: dict[str, Path]) -> Iterator[Env]:
    """The upstream in its own thread and loop, and a proxy in front of it."""
    seen: list[dict] = []
    gone = threading.Event()
    loop = asyncio.new_event_loop()
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["upstream"], pki["upstream-key"])

    app = tornado.web.Application([(r"(.*)", Upstream, {"seen": seen, "gone": gone})])
    server = tornado.httpserver.HTTPServer(app, ssl_options=ctx)

    async def serve() -> None:
        server.add_sockets(sockets)

    async def shut_down() -> None:
        server.stop()
        await server.close_all_connections()
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        if tasks:  # handlers end once their connection is closed
            await asyncio.wait(tasks, timeout=5)

    loop.run_until_complete(serve())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    upstream = f"https://127.0.0.1:{sockets[0].getsockname()[1]}"
    proxy = FaultProxy(upstream, pki["ca"], pki["proxy"], pki["proxy-key"], seed=SEED).start()
    env = Env(proxy, pki["ca"], seen, gone)
    try:
        yield env
    finally:
        env.core.api_client.close()
        proxy.stop()
        proxy.stop()  # idempotent
        asyncio.run_coroutine_threadsafe(shut_down(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.mark.parametrize(
    ("method", "uri", "expected"),
    [
        ("GET", "/api/v1/namespaces/x/pods/p", ("get", "pods", "x")),
        ("GET", "/api/v1/namespaces/x/pods?labelSelector=a%3Db", ("list", "pods", "x")),
        ("GET", "/api/v1/pods?watch=1", ("watch", "pods", None)),
        ("GET", "/api/v1/namespaces/x/pods?watch=true", ("watch", "pods", "x")),
        ("GET", "/api/v1/namespaces/x/pods?watch=false", ("list", "pods", "x")),
        ("GET", "/api/v1/watch/namespaces/x/pods", ("watch", "pods", "x")),
        ("GET", "/api/v1/namespaces/x/pods/p/log?follow=true", ("get", "pods/log", "x")),
        ("PUT", "/api/v1/namespaces/x/pods/p/status", ("update", "pods/status", "x")),
        ("PATCH", "/api/v1/nodes/n/status", ("patch", "nodes/status", None)),
        ("GET", "/api/v1/nodes", ("list", "nodes", None)),
        ("POST", "/apis/batch/v1/namespaces/x/jobs", ("create", "jobs", "x")),
        ("DELETE", "/apis/batch/v1/namespaces/x/jobs/j", ("delete", "jobs", "x")),
        ("DELETE", "/api/v1/namespaces/x/pods", ("deletecollection", "pods", "x")),
        ("POST", "/api/v1/namespaces", ("create", "namespaces", None)),
        ("GET", "/api/v1/namespaces/x", ("get", "namespaces", "x")),
        ("DELETE", "/api/v1/namespaces/x", ("delete", "namespaces", "x")),
        ("PUT", "/api/v1/namespaces/x/finalize", ("update", "namespaces/finalize", "x")),
        *[("GET", p, None) for p in ("/version", "/api", "/api/v1", "/apis", "/apis/batch/v1")],
        *[("GET", p, None) for p in ("/openapi/v2", "/openapi/v3/api/v1", "/healthz")],
    ],
)
def test_classify(method: str, uri: str, expected: tuple | None) -> None:
    assert classify(method, uri) == (RequestInfo(*expected) if expected else None)


def test_passthrough(env: Env) -> None:
    pod, code, headers = env.core.read_namespaced_pod_with_http_info("p", "x")
    assert (pod.metadata.name, code, headers["Audit-Id"]) == ("p", 200, "audit-1")
    assert env.seen[-1]["Authorization"] == "Bearer x"
    assert env.core.create_namespaced_pod("x", _pod("new")).metadata.name == "new"
    assert json.loads(env.seen[-1]["body"])["metadata"]["name"] == "new"
    env.faults.fail(1.0, 503)  # every resource request; non-resource ones are never faulted
    assert env.get("/version").json()["minor"] == "33"
    assert env.faults.injected == 0 and env.proxy.requests == 3


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
        (429, "TooManyRequests"),
        (504, "Timeout"),
    ],
)
def test_fault_status(env: Env, code: int, reason: str) -> None:
    # A create, because urllib3 itself retries idempotent requests answered 429/503 + Retry-After.
    rule = env.faults.fail(1.0, code, verbs="create", resources="pods", times=1)
    with pytest.raises(client.ApiException) as info:
        env.core.create_namespaced_pod("x", _pod("p"))
    body = json.loads(info.value.body)
    assert (info.value.status, body["reason"], body["code"]) == (code, reason, code)
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert "injected fault" in body["message"]
    assert info.value.headers.get("Retry-After") == ("1" if code == 429 else None)
    assert env.seen == []  # refused without contacting the API server
    env.core.create_namespaced_pod("x", _pod("p"))  # times=1: the retry works
    assert rule.injected == 1 and len(env.seen) == 1


def test_lost_response_after_write(env: Env) -> None:
    env.faults.fail(1.0, 504, verbs="create", times=1, after=True)
    with pytest.raises(client.ApiException) as info:
        env.core.create_namespaced_pod("x", _pod("maybe"))
    assert info.value.status == 504
    assert [json.loads(s["body"])["metadata"]["name"] for s in env.seen] == ["maybe"]


def test_share_is_deterministic(env: Env) -> None:
    rule = env.faults.fail(0.1, 503, verbs="list")
    draws = random.Random(SEED)
    expected = [draws.random() < 0.1 for _ in range(200)]

    def failed(_: int) -> bool:
        return env.get("/api/v1/namespaces/x/pods").status_code == 503

    with ThreadPoolExecutor(50) as pool:  # concurrent clients draw the same numbers
        assert sum(pool.map(failed, range(200))) == sum(expected) == rule.injected
    env.faults.reseed(SEED)
    assert [failed(i) for i in range(200)] == expected
    assert 0 < sum(expected) < 200 and rule.matched == 400


def test_delay(env: Env) -> None:
    rule = env.faults.delay(0.3, verbs="get", resources="pods", times=1)
    took = []
    for _ in range(2):
        start = time.monotonic()
        env.core.read_namespaced_pod("p", "x")
        took.append(time.monotonic() - start)
    assert took[0] >= 0.3 > took[1] and rule.injected == 1


def _watch(env: Env, stop_after: int | None = None, timeout: int = 1) -> tuple[list[str], float]:
    """The event types of a pod watch (the upstream ends it after ``timeout``) and its duration."""
    start = time.monotonic()
    w = watch.Watch()
    kinds = []
    for event in w.stream(env.core.list_namespaced_pod, "x", timeout_seconds=timeout):
        kinds.append(event["type"])
        if len(kinds) == stop_after:
            w.stop()
    return kinds, time.monotonic() - start


def test_dropped_watches(env: Env) -> None:
    assert _watch(env)[0] == EVENTS
    env.faults.drop_watches(after_events=2, times=1)
    kinds, took = _watch(env, timeout=5)
    assert kinds == ["ADDED", "BOOKMARK", "ADDED"] and took < 2  # bookmarks do not count
    env.faults.drop_watches(after_seconds=0.5)
    kinds, took = _watch(env, timeout=5)
    assert kinds == EVENTS and 0.5 <= took < 2


def test_slow_watches(env: Env) -> None:
    assert _watch(env, stop_after=3)[1] < 0.4
    env.faults.slow_watches(0.2, resources="pods")
    assert _watch(env, stop_after=3)[1] >= 0.6


def test_client_disconnect_cancels_upstream(env: Env) -> None:
    with env.get("/api/v1/namespaces/x/pods?watch=1&timeoutSeconds=30", stream=True) as resp:
        lines = resp.iter_lines()
        assert [json.loads(next(lines))["type"] for _ in EVENTS] == EVENTS
        time.sleep(0.2)  # the upstream has gone quiet: only the disconnect can end its request
    assert env.gone.wait(2)


def test_followed_logs_stream(env: Env) -> None:
    start = time.monotonic()
    with env.get("/api/v1/namespaces/x/pods/p/log?follow=true", stream=True) as resp:
        lines = [(line, time.monotonic() - start) for line in resp.iter_lines()]
    assert [line for line, _ in lines] == [b"line 0", b"line 1", b"line 2"]
    assert lines[0][1] < 0.5 and lines[-1][1] >= 0.6  # each line as the upstream sent it
