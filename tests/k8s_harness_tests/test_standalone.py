"""``python -m tests.k8s_harness`` as a separate process, as a separately started hub uses it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[2]


def test_standalone_process(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps([{"name": "gpu-a", "labels": {"gpu": "rtx3090"}}, "cpu-b"]))
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.k8s_harness",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
            "--nodes-json",
            str(nodes),
            "--namespace",
            "jhub",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("K8S_HARNESS_URL=http://127.0.0.1:")
        api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        assert sorted(n.metadata.name for n in api.list_node().items) == ["cpu-b", "gpu-a"]
        assert api.read_namespace("jhub").status.phase == "Active"
        assert api.api_client.configuration.host == line.split("=", 1)[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
