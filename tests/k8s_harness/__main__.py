"""Run the harness as a standalone process, e.g. for a separately started JupyterHub::

    python -m tests.k8s_harness --port 0 --kubeconfig /tmp/kubeconfig --nodes-json nodes.json

``--nodes-json`` holds a list of node names or ``add_node`` keyword objects
(``{"name": ..., "labels": {...}, "allocatable": {"cpu": "8", "nvidia.com/gpu": "4"}}``);
``--behaviors-json`` a list of ``{"selector": "component=singleuser-server", "behavior":
{"mode": "process", "append_args": ["--allow-root"]}}`` rules. The process prints
``K8S_HARNESS_URL=<url>`` once it serves, and stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from .behavior import PodBehavior
from .harness import KubeHarness


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m tests.k8s_harness", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument(
        "--kubeconfig", type=Path, required=True, help="where to write the kubeconfig"
    )
    parser.add_argument("--nodes-json", type=Path, help="JSON list of nodes")
    parser.add_argument("--behaviors-json", type=Path, help="JSON list of pod behaviour rules")
    parser.add_argument(
        "--namespace", action="append", default=[], help="extra namespace (repeatable)"
    )
    parser.add_argument("--token", help="bearer token (default: random)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root-dir", type=Path, help="directory for pod sandboxes and logs")
    parser.add_argument("--default-mode", choices=("simulate", "process"), default="simulate")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    nodes = json.loads(args.nodes_json.read_text()) if args.nodes_json else ["harness-node-1"]
    harness = KubeHarness(
        host=args.host,
        port=args.port,
        token=args.token,
        seed=args.seed,
        nodes=nodes,
        namespaces=args.namespace,
        default_behavior=PodBehavior(mode=args.default_mode),
        root_dir=args.root_dir,
    )
    if args.behaviors_json:
        harness.policy.load(json.loads(args.behaviors_json.read_text()))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    harness.start()
    try:
        harness.write_kubeconfig(args.kubeconfig)
        print(f"K8S_HARNESS_URL={harness.url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        harness.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
