"""The node agent (``ai-console agent``): watches every GPU process on one node.

Each tick it samples the GPUs with NVML (:mod:`.sampler`), maps each GPU process to the pod or
local server that owns it (:mod:`.procmap`), exports Prometheus metrics (:mod:`.metrics`), acts on
processes over their memory slice (:mod:`.policy`) and publishes the node's GPU list for the
allocator's inventory (:mod:`.publish`). :mod:`.main` wires them together.
"""

from __future__ import annotations
