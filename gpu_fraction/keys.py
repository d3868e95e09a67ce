"""Names shared between the allocator, the enforcer, the node agent and the inventory.

Pod annotations carry each allocation (the cluster is the ledger); environment variables carry
it into the container (for framework caps and for the node agent to map a process to its slice);
node labels and one node annotation describe the GPUs a node offers.
"""

from __future__ import annotations

#: Prefix of every annotation and label the product writes.
PREFIX = "ai-console/"

# --- pod annotations: one allocation, see gpu_fraction.annotations -----------------------------
ANN_ALLOCATION = PREFIX + "allocation"
ANN_NODE = PREFIX + "node"
ANN_GPU_TYPE = PREFIX + "gpu-type"
ANN_GPU_UUIDS = PREFIX + "gpu-uuids"
ANN_FRACTION = PREFIX + "fraction"
ANN_MEMORY_MIB = PREFIX + "memory-mib"
ANN_COMPUTE_MIN = PREFIX + "compute-min"
ANN_COMPUTE_MAX = PREFIX + "compute-max"
ANN_CPU_MILLIS = PREFIX + "cpu-millis"
ANN_HOST_MEMORY_MIB = PREFIX + "host-memory-mib"
ANN_OWNER_KIND = PREFIX + "owner-kind"
ANN_OWNER_USER = PREFIX + "owner-user"
ANN_OWNER_PROJECT = PREFIX + "owner-project"
ANN_OWNER_NAME = PREFIX + "owner-name"

# --- node labels and annotation ------------------------------------------------------------------
#: Node label that puts a node's GPUs under the allocator ("true"); other nodes stay with the
#: NVIDIA device plugin.
LABEL_SHARING = PREFIX + "gpu-sharing"
#: Optional node label overriding the GPU type derived from the product name.
LABEL_GPU_TYPE = PREFIX + "gpu-type"
#: Optional node label naming the zone (falls back to topology.kubernetes.io/zone).
LABEL_ZONE = PREFIX + "zone"
LABEL_TOPOLOGY_ZONE = "topology.kubernetes.io/zone"
#: Node annotation the node agent publishes: JSON list of
#: ``{"index": 0, "uuid": "GPU-...", "product": "...", "memory_mib": 24576}``.
ANN_NODE_GPUS = PREFIX + "gpus"
# NVIDIA GPU feature discovery labels.
GFD_PRODUCT = "nvidia.com/gpu.product"
GFD_MEMORY = "nvidia.com/gpu.memory"
GFD_COUNT = "nvidia.com/gpu.count"

# --- container environment -----------------------------------------------------------------------
ENV_ALLOCATION_ID = "AI_CONSOLE_ALLOCATION_ID"
ENV_GPU_MEMORY_MIB = "AI_CONSOLE_GPU_MEMORY_MIB"
ENV_GPU_MEMORY_FRACTION = "AI_CONSOLE_GPU_MEMORY_FRACTION"
ENV_COMPUTE_MIN = "AI_CONSOLE_GPU_COMPUTE_MIN"
ENV_COMPUTE_MAX = "AI_CONSOLE_GPU_COMPUTE_MAX"
#: What the slice is, for the server to show its user (Lab's status bar); enforces nothing.
ENV_GPU_TYPE = "AI_CONSOLE_GPU_TYPE"
#: The slice's size as annotated: ``1/4`` of one GPU, or a whole number of GPUs (``2``).
ENV_GPU_SHARE = "AI_CONSOLE_GPU_SHARE"
#: The memory of each of the slice's GPUs (the cap of a whole-GPU slice).
ENV_GPU_DEVICE_MEMORY_MIB = "AI_CONSOLE_GPU_DEVICE_MEMORY_MIB"
#: ``true`` when the slice is on a simulated GPU (no device; nothing to measure).
ENV_GPU_SIMULATED = "AI_CONSOLE_GPU_SIMULATED"
ENV_OWNER_KIND = "AI_CONSOLE_OWNER_KIND"
ENV_OWNER_USER = "AI_CONSOLE_OWNER_USER"
ENV_OWNER_PROJECT = "AI_CONSOLE_OWNER_PROJECT"
ENV_OWNER_NAME = "AI_CONSOLE_OWNER_NAME"
