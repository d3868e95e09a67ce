"""Publishing the node's GPU list: to a file, and to a (local, recording) Kubernetes API."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gpu_fraction import keys
from gpu_fraction.agent.kube_api import KubeAPI
from gpu_fraction.agent.publish import (
    FilePublisher,
    NodeAnnotationPublisher,
    annotation_value,
    node_patch,
)

GPUS = [
    {"index": 0, "uuid": "GPU-aaa", "product": "NVIDIA GeForce RTX 3090", "memory_mib": 24576},
    {"index": 1, "uuid": "GPU-bbb", "product": "NVIDIA GeForce RTX 3090", "memory_mib": 24576},
]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeApi:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def api() -> Iterator[FakeApi]:
    """A plain-HTTP stand-in for the API server on 127.0.0.1 that records every request."""
    state = FakeApi(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.requests.append(
                Recorded(
                    method="PATCH",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length),
                )
            )
            if state.status == 200:
                payload = {"kind": "Node", "metadata": {"name": "gpu-07"}}
            else:
                payload = {"kind": "Status", "status": "Failure", "message": "etcd is on fire"}
            data = json.dumps(payload).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_annotation_value_is_the_json_list() -> None:
    assert json.loads(annotation_value(GPUS)) == GPUS
    assert node_patch(GPUS) == {
        "metadata": {"annotations": {keys.ANN_NODE_GPUS: annotation_value(GPUS)}}
    }


def test_file_target_writes_the_json_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "node-gpus.json"
    publisher = FilePublisher(path)
    assert publisher.publish(GPUS)
    assert json.loads(path.read_text()) == GPUS
    assert publisher.publish(GPUS[:1])  # replaced, not appended
    assert json.loads(path.read_text()) == GPUS[:1]
    # No temporary file is left behind.
    assert [p.name for p in path.parent.iterdir()] == ["node-gpus.json"]


def test_file_target_failure_returns_false(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    assert FilePublisher(blocker / "gpus.json").publish(GPUS) is False


def test_node_target_sends_a_merge_patch_with_the_token(api: FakeApi, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    publisher = NodeAnnotationPublisher(
        "gpu-07", KubeAPI(base_url=api.url, token_file=token, ca_file=tmp_path / "missing-ca.crt")
    )
    assert publisher.publish(GPUS) is True

    [request] = api.requests
    assert request.method == "PATCH"
    assert request.path == "/api/v1/nodes/gpu-07"
    assert request.headers["content-type"] == "application/merge-patch+json"
    assert request.headers["authorization"] == "Bearer s3cr3t-token"
    body = json.loads(request.body)
    assert set(body) == {"metadata"}
    assert set(body["metadata"]) == {"annotations"}
    annotations = body["metadata"]["annotations"]
    assert set(annotations) == {keys.ANN_NODE_GPUS}
    assert json.loads(annotations[keys.ANN_NODE_GPUS]) == GPUS


def test_node_target_finds_the_api_server_from_the_pod_environment(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    publisher = NodeAnnotationPublisher("gpu-07", KubeAPI(token_file=tmp_path / "t", environ=env))
    # In a pod the API is HTTPS; the URL is built from the environment as client libraries do.
    assert publisher.base_url == "https://10.96.0.1:6443"
    ipv6 = NodeAnnotationPublisher("n", KubeAPI(environ={"KUBERNETES_SERVICE_HOST": "fd00::1"}))
    assert ipv6.base_url == "https://[fd00::1]:443"


def test_node_target_server_error_returns_false(
    api: FakeApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api.status = 500
    token = tmp_path / "token"
    token.write_text("t")
    publisher = NodeAnnotationPublisher("gpu-07", KubeAPI(base_url=api.url, token_file=token))
    assert publisher.publish(GPUS) is False
    assert len(api.requests) == 1
    assert "HTTP 500" in caplog.text and "etcd is on fire" in caplog.text


def test_node_target_connection_refused_returns_false(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = KubeAPI(base_url=f"http://127.0.0.1:{port}", token_file=tmp_path / "none", timeout=2)
    publisher = NodeAnnotationPublisher("gpu-07", api)
    assert publisher.publish(GPUS) is False


def test_node_target_outside_a_pod_returns_false(tmp_path: Path) -> None:
    publisher = NodeAnnotationPublisher("gpu-07", KubeAPI(token_file=tmp_path / "t", environ={}))
    assert publisher.base_url is None
    assert publisher.publish(GPUS) is False
