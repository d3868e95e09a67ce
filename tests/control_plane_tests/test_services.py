"""Services on the process kubelet: a pod reaches another through a Service by each of the
names cluster DNS gives it, from Python and from Node.js, at the Service's port forwarded to
the ready endpoint's named targetPort; a Service with no ready endpoint refuses."""

from __future__ import annotations

import shutil
import socket
import sys
import time

import pytest
import requests

PY = sys.executable
# Binds the IPv4 wildcard in its own code: the pod's sitecustomize points it at the pod's address.
SERVER = (
    "import http.server as h, os\n"
    "class H(h.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = os.environ['HOSTNAME'].encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers(); self.wfile.write(body)\n"
    "h.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n"
)
CLIENT = (
    "import sys, time, urllib.request\n"
    "for name in sys.argv[1:]:\n"
    "    for _ in range(100):\n"
    "        try:\n"
    "            answer = urllib.request.urlopen(f'http://{name}/', timeout=2)\n"
    "            print(name, answer.read().decode())\n"
    "            break\n"
    "        except OSError:\n"
    "            time.sleep(0.1)\n"
    "    else:\n"
    "        print(name, 'unreachable')\n"
)
NODE_CLIENT = (
    "require('http').get(process.argv[1], r => { let b = ''; r.on('data', d => b += d);"
    " r.on('end', () => console.log('node', b)); })"
    ".on('error', e => { console.log('node', e.message); process.exit(1); });"
)


def container(name: str, command: list[str], **extra) -> dict:
    return {"name": name, "image": "python:3.11", "command": command, **extra}


def pod(name: str, labels: dict, body: dict, restart: str = "Always") -> dict:
    return {
        "metadata": {"name": name, "labels": {"run": "process", **labels}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "restartPolicy": restart,
            "containers": [body],
        },
    }


def finished(obj: dict | None) -> bool:
    return (obj or {}).get("status", {}).get("phase") in ("Succeeded", "Failed")


def ready(obj: dict | None) -> bool:
    conditions = (obj or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_a_pod_reaches_another_through_a_service_by_name(node):
    ns, admin = node.namespace, node.admin
    probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
    web = container(
        "web",
        [PY, "-u", "-c", SERVER],
        ports=[{"name": "http", "containerPort": 8080}],
        readinessProbe=probe,
    )
    admin.create("pods", pod("web-1", {"app": "web"}, web), ns)
    service = {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}
    admin.create("services", {"metadata": {"name": "web"}, "spec": service}, ns)
    admin.wait_for("pods", "web-1", ns, ready, timeout=30)

    names = ["web", f"web.{ns}", f"web.{ns}.svc", f"web.{ns}.svc.cluster.local"]
    client = container("client", [PY, "-u", "-c", CLIENT, *names])
    admin.create("pods", pod("client", {}, client, restart="Never"), ns)
    done = admin.wait_for("pods", "client", ns, finished, timeout=60)
    log = admin.request("GET", f"/api/v1/namespaces/{ns}/pods/client/log")
    assert done["status"]["phase"] == "Succeeded", log
    assert log.split("\n")[:4] == [f"{name} web-1" for name in names], log

    if shutil.which("node"):  # configurable-http-proxy's runtime: dns.lookup sees the names
        script = container("node", ["node", "-e", NODE_CLIENT, f"http://web.{ns}.svc:80/"])
        admin.create("pods", pod("node-client", {}, script, restart="Never"), ns)
        done = admin.wait_for("pods", "node-client", ns, finished, timeout=60)
        log = admin.request("GET", f"/api/v1/namespaces/{ns}/pods/node-client/log")
        assert log.strip() == "node web-1", log

    # Where an admin's port-forward would land: the Service's own address, from this process.
    address = node.kubelet.service_address(ns, "web")
    assert requests.get(f"http://{address}:80/", timeout=5).text == "web-1"

    # No ready endpoint: the connection is refused or closed, as kube-proxy rejects it.
    admin.delete("pods", "web-1", ns, grace=0)
    admin.wait_for_deletion("pods", "web-1", ns, timeout=30)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{address}:80/", timeout=5)

    admin.delete("services", "web", ns)
    deadline = time.monotonic() + 10
    while node.kubelet.services.address(ns, "web") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.kubelet.services.address(ns, "web") is None
    with pytest.raises(OSError):
        socket.create_connection((address, 80), timeout=2).close()
