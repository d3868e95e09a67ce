"""Small builders shared by the gpu_fraction tests."""

from __future__ import annotations

from gpu_fraction.model import GPU, NodeCapacity

RTX3090_MIB = 24576
A100_MIB = 81920


def make_gpus(
    nodes: int = 2,
    per_node: int = 4,
    gpu_type: str = "RTX3090",
    memory_mib: int = RTX3090_MIB,
    prefix: str = "gpu",
) -> list[GPU]:
    return [
        GPU(
            node=f"{prefix}-{n:02d}",
            index=i,
            uuid=f"GPU-{gpu_type}-{n:02d}-{i}",
            product=f"NVIDIA {gpu_type}",
            memory_mib=memory_mib,
            gpu_type=gpu_type,
        )
        for n in range(nodes)
        for i in range(per_node)
    ]


def make_nodes(gpus: list[GPU], cpu_millis: int | None = None, memory_mib: int | None = None):
    return {g.node: NodeCapacity(g.node, cpu_millis, memory_mib) for g in gpus}
