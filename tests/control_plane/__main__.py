"""Run the test control plane on its own, for a hub or a benchmark in another process.

``python -m tests.control_plane --root DIR [--nodes-json nodes.json] [--namespace NS]``
starts etcd, the API server, the controllers, the scheduler, the process kubelet (with the
nodes listed: ``[{"name": ..., "labels": {...}, "annotations": {...}, "allocatable": {...}}]``)
and the fault proxy, makes the namespace with the hub's ServiceAccount and Role, writes
``DIR/hub.kubeconfig`` (the hub's token, through the proxy) and ``DIR/admin.kubeconfig``, prints
``CONTROL_PLANE_READY in <seconds the control plane took to start> s`` and runs until SIGTERM
or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .fixtures import Cluster, TestCluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--nodes-json", type=Path)
    parser.add_argument("--namespace", default="ai-console")
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cluster = Cluster(args.root)
    try:
        view = TestCluster(cluster, args.namespace, args.root)
        view.create_namespace()
        view.bind_hub()
        cluster.plane.write_kubeconfig(
            args.root / "admin.kubeconfig", cluster.plane.admin_credentials
        )
        for node in json.loads(args.nodes_json.read_text()) if args.nodes_json else []:
            view.add_node(node.pop("name"), **node)
        print(f"CONTROL_PLANE_READY in {cluster.plane.started_in_s:.1f} s", flush=True)
        stop.wait()
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
