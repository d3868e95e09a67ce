"""Spawn benchmark: 200 concurrent spawns on the real control plane (kube-apiserver, scheduler,
controllers, the process kubelet), stock KubeSpawner versus FractionalGPUKubeSpawner, same
profiles minus the GPU block, both as the hub's ServiceAccount.

The control plane and its kubelet run in their own processes (``python -m tests.control_plane``),
so the hub's CPU figure is the hub's alone.

Run: ``python benchmarks/spawn.py --json``. The last line printed is one JSON object with
``spawns``, ``kubespawner_s`` and ``ours_s`` (wall time until every server started, best of
``--rounds``), ``ratio`` (ours / stock; target <= 1.10), ``kubespawner_hub_cpu_s`` and
``ours_hub_cpu_s`` (CPU the hub process spent), ``median_ratio`` (the same over the rounds'
medians), ``ours_hook_in_image_s`` and ``ratio_hook_in_image`` (ours with the start-up hook
baked into the image, so pods mount no ConfigMap: what the hook's volume costs),
``oversubscribed`` (must be 0) and ``control_plane_start_s``. Before each round the
previous round's pods are gone and the namespace's events deleted, and the order alternates.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner

from gpu_fraction import keys
from spawner.kube import FractionalGPUKubeSpawner
from spawner.manager import GPUSliceManager
from tests.control_plane.fixtures import reset_client_caches
from tests.spawner.kube_setup import PROFILES, RTX_LABELS, make_spawner, spawner_config

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"


def stock_profiles() -> list[dict]:
    """The same profiles without our GPU block (what a z2jh user would run)."""
    profiles = copy.deepcopy(PROFILES)
    for profile in profiles:
        profile.pop("ai_console", None)
    return profiles


async def spawn_all(cls, config, count: int, tag: str) -> tuple[float, float]:
    spawners = [make_spawner(config, f"{tag}{i:03d}", "quarter", cls=cls) for i in range(count)]
    if cls is FractionalGPUKubeSpawner:
        await GPUSliceManager.instance(config=config).ready()  # the hub builds it at start
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(s.start() for s in spawners))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await asyncio.gather(*(s.stop(now=True) for s in spawners))
    return elapsed, cpu


def gpu_nodes(count: int) -> list[dict]:
    """Nodes with 4 RTX 3090s each, labelled as GPU feature discovery and our agent do."""
    nodes = []
    for n in range(count):
        name = f"gpu-{n:03d}"
        published = [
            {
                "index": i,
                "uuid": f"GPU-{name}-{i}",
                "product": "NVIDIA GeForce RTX 3090",
                "memory_mib": 24576,
            }
            for i in range(4)
        ]
        nodes.append(
            {
                "name": name,
                "labels": {**RTX_LABELS, keys.GFD_COUNT: "4"},
                "annotations": {keys.ANN_NODE_GPUS: json.dumps(published)},
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            }
        )
    return nodes


def wait_until_ready(process: subprocess.Popen) -> float:
    """Seconds the control plane said it took to start."""
    for line in process.stdout:  # type: ignore[union-attr]
        if line.startswith("CONTROL_PLANE_READY"):
            return float(line.split()[2])
    raise RuntimeError("the control plane exited before it was ready")


def settle(admin_kubeconfig: Path, timeout: float = 120) -> None:
    """Wait until the last round's pods are gone, then delete the namespace's events, so each
    round starts from the same state: KubeSpawner's event reflector lists and sorts every event
    in the namespace on each spawn, and a later round would otherwise pay for the earlier ones."""
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(admin_kubeconfig)))
    deadline = time.monotonic() + timeout
    while api.list_namespaced_pod(NAMESPACE).items:
        if time.monotonic() > deadline:
            raise RuntimeError(f"pods of the last round still in {NAMESPACE} after {timeout} s")
        time.sleep(0.5)
    api.delete_collection_namespaced_event(NAMESPACE)


#: What each round runs: stock KubeSpawner, ours as installed, and ours with the start-up hook
#: in the image instead of the ConfigMap volume (the kubelet then fetches no ConfigMap per pod).
VARIANTS = {
    "kubespawner": (KubeSpawner, {}),
    "ours": (FractionalGPUKubeSpawner, {}),
    "ours_hook_in_image": (
        FractionalGPUKubeSpawner,
        {"GPUSliceManager__startup_hook_configmap": ""},
    ),
}


def run_round(variant: str, count: int, tag: str) -> tuple[float, float, int]:
    reset_client_caches(load=True)
    GPUSliceManager.clear_instance()
    cls, settings = VARIANTS[variant]
    profiles = PROFILES if cls is FractionalGPUKubeSpawner else stock_profiles()
    config = spawner_config(
        NAMESPACE,
        KubeSpawner__profile_list=profiles,
        KubeSpawner__start_timeout=120,
        **settings,
    )
    elapsed, cpu = asyncio.run(spawn_all(cls, config, count, tag))
    oversubscribed = 0
    if GPUSliceManager.initialized():
        oversubscribed = GPUSliceManager.instance().allocator.oversubscribed()
    return elapsed, cpu, oversubscribed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")
    parser.add_argument("--spawns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    log = (lambda *a: None) if args.json else print

    with tempfile.TemporaryDirectory() as tmp:
        nodes_file = Path(tmp) / "nodes.json"
        nodes_file.write_text(json.dumps(gpu_nodes(max(1, -(-args.spawns // 16)))))
        kubeconfig = Path(tmp) / "root" / "hub.kubeconfig"
        plane = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.control_plane",
                "--root",
                str(Path(tmp) / "root"),
                "--nodes-json",
                str(nodes_file),
                "--namespace",
                NAMESPACE,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            plane_start_s = wait_until_ready(plane)
            os.environ["KUBECONFIG"] = str(kubeconfig)
            # The client read KUBECONFIG into a module default when it was imported.
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(kubeconfig)
            times: dict[str, list[float]] = {name: [] for name in VARIANTS}
            cpus: dict[str, list[float]] = {name: [] for name in VARIANTS}
            oversubscribed = 0
            for round_ in range(args.rounds):
                # Alternate the order, so drift on a busy machine hits all alike.
                order = list(VARIANTS) if round_ % 2 == 0 else list(VARIANTS)[::-1]
                for name in order:
                    settle(Path(tmp) / "root" / "admin.kubeconfig")
                    elapsed, cpu, over = run_round(name, args.spawns, f"r{round_}u")
                    times[name].append(elapsed)
                    cpus[name].append(cpu)
                    oversubscribed += over
                    log(f"round {round_} {name}: {elapsed:.2f}s, hub CPU {cpu:.2f}s")
        finally:
            plane.terminate()
            plane.wait(timeout=60)
    stock, ours, hook = times["kubespawner"], times["ours"], times["ours_hook_in_image"]
    result = {
        "spawns": args.spawns,
        "rounds": args.rounds,
        "kubespawner_s": round(min(stock), 3),
        "ours_s": round(min(ours), 3),
        "ratio": round(min(ours) / min(stock), 3),
        # CPU the hub process spent on the spawns (the control plane runs in its own processes).
        "kubespawner_hub_cpu_s": round(min(cpus["kubespawner"]), 3),
        "ours_hub_cpu_s": round(min(cpus["ours"]), 3),
        "median_ratio": round(statistics.median(ours) / statistics.median(stock), 3),
        "ours_hook_in_image_s": round(min(hook), 3),
        "ratio_hook_in_image": round(min(hook) / min(stock), 3),
        "oversubscribed": oversubscribed,
        "control_plane_start_s": plane_start_s,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
