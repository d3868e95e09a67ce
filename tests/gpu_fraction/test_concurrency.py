"""1,000 concurrent reserve/release calls from asyncio tasks and threads: no GPU oversubscribed."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor

from gpu_fraction.allocator import Allocator
from gpu_fraction.errors import AllocationRefused
from gpu_fraction.model import Owner, SliceRequest

from .helpers import make_gpus, make_nodes

SIZES = ["1/8", "1/4", "1/2", 1, 2]


def _cycle(allocator: Allocator, seed: int, results: list, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    request = SliceRequest("RTX3090", rng.choice(SIZES), cpu_millis=rng.choice([0, 500]))
    try:
        allocation = allocator.reserve(request, Owner("job", f"user{seed % 17}"))
    except AllocationRefused:
        with lock:
            results.append("refused")
        return
    # Check what this caller holds is really its own while others race.
    assert allocator.get(allocation.id) == allocation
    if rng.random() < 0.5:
        allocator.commit(allocation.id)
    assert allocator.release(allocation.id)
    with lock:
        results.append("placed")


def test_threads_and_asyncio_tasks_together():
    gpus = make_gpus(4, 4)
    allocator = Allocator(gpus, make_nodes(gpus, cpu_millis=16000))
    initial = allocator.free_state()
    results: list[str] = []
    lock = threading.Lock()
    # Half the load holds slices while the rest races, so GPUs really fill up.
    held = [
        allocator.reserve(SliceRequest("RTX3090", "1/4"), Owner("notebook", "h")) for _ in range(40)
    ]
    oversubscribed_seen = []

    def watcher(stop: threading.Event) -> None:
        while not stop.is_set():
            oversubscribed_seen.append(allocator.oversubscribed())

    stop = threading.Event()
    watch = threading.Thread(target=watcher, args=(stop,))
    watch.start()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=16) as pool:
            thread_jobs = [
                loop.run_in_executor(pool, _cycle, allocator, seed, results, lock)
                for seed in range(500)
            ]

            async def task(seed: int) -> None:
                await asyncio.sleep(0)
                _cycle(allocator, seed, results, lock)

            await asyncio.gather(*thread_jobs, *(task(s) for s in range(500, 1000)))

    asyncio.run(main())
    stop.set()
    watch.join()
    assert len(results) == 1000
    assert results.count("placed") > 500
    assert set(oversubscribed_seen) <= {0} and allocator.audit() == []
    for allocation in held:
        allocator.release(allocation.id)
    assert allocator.free_state() == initial
    assert allocator.allocations() == []
