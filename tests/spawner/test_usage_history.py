"""GPU-hours history: share x time of committed slices, hourly rows in SQLite that outlive the
hub, a hub outage counted as nothing, CSV export; with a controllable clock."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from contextlib import closing
from fractions import Fraction
from pathlib import Path

import pytest
from traitlets.config import Config

from gpu_fraction.agent.metrics import AgentMetrics, MetricsServer
from gpu_fraction.agent.sampler import GpuSample, NodeSample
from gpu_fraction.allocator import Allocator
from gpu_fraction.model import Allocation, Owner, SliceRequest
from gpu_fraction.simulated import simulated
from hub_config.console_page import history_span
from spawner.manager import GPUSliceManager
from spawner.usage_history import (
    UsageHistory,
    daily_totals,
    daily_utilization,
    to_csv,
    utilization_csv,
)
from tests.allocations import allocation

T0 = 1_796_000_400.0  # 2026-11-30 01:00:00 UTC, the start of an hour


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def slice_of(user: str, project: str, fraction: str, kind: str = "notebook") -> Allocation:
    return allocation(f"{user}-{kind}", user, project, fraction, kind)


def history(path: Path, clock: Clock, **settings: float) -> UsageHistory:
    return UsageHistory(clock=clock, db_path=str(path), **settings)


def everything_committed(_id: str) -> bool:
    return True


def test_a_quarter_held_for_an_hour_is_a_quarter_gpu_hour(tmp_path: Path) -> None:
    clock = Clock()
    record = history(tmp_path / "usage.sqlite", clock)
    held = [slice_of("alice", "cs101", "1/4"), slice_of("bob", "vision-lab", "2", "job")]
    assert record.record(held, everything_committed) == 0  # the first sample starts the clock
    for _ in range(60):
        clock.now += 60
        record.record(held, everything_committed)
    rows = {(r.user, r.kind): r for r in record.rows()}
    # Each sample lands in the hour it is taken: 59 minutes in the first hour, one in the next.
    alice = sum(r.gpu_hours for r in record.rows() if r.user == "alice")
    assert alice == pytest.approx(0.25)
    assert sum(r.gpu_hours for r in record.rows() if r.user == "bob") == pytest.approx(2.0)
    assert rows[("bob", "job")].project == "vision-lab"
    hours = sorted({r.hour for r in record.rows()})
    assert hours == [int(T0), int(T0) + 3600]


def test_starting_slices_and_hub_outages_count_nothing(tmp_path: Path) -> None:
    clock = Clock()
    record = history(tmp_path / "usage.sqlite", clock, max_gap=300)
    held = [slice_of("alice", "cs101", "1/2"), slice_of("carol", "cs101", "1/4")]
    starting = {"carol-notebook"}
    record.record(held, lambda i: i not in starting)
    clock.now += 120
    record.record(held, lambda i: i not in starting)
    assert [(r.user, r.gpu_hours) for r in record.rows()] == [("alice", pytest.approx(1 / 60))]
    clock.now += 3600  # the hub was down for an hour: unknown, so not billed
    assert record.record(held, everything_committed) == 0
    assert sum(r.gpu_hours for r in record.rows()) == pytest.approx(1 / 60)


def test_the_history_outlives_the_hub(tmp_path: Path) -> None:
    path, clock = tmp_path / "usage.sqlite", Clock()
    held = [slice_of("alice", "cs101", "1/4")]
    first = history(path, clock)
    first.record(held, everything_committed)
    clock.now += 60
    first.record(held, everything_committed)
    clock.now += 60  # a restart within max_gap: the new hub goes on from the file
    second = history(path, clock)
    second.record(held, everything_committed)
    assert sum(r.gpu_hours for r in second.rows()) == pytest.approx(2 * 0.25 / 60)


def test_rows_filter_by_project_and_time_and_export_as_csv(tmp_path: Path) -> None:
    clock = Clock()
    record = history(tmp_path / "usage.sqlite", clock)
    held = [slice_of("alice", "cs101", "1/4"), slice_of("bob", "vision-lab", "1")]
    record.record(held, everything_committed)
    clock.now += 60
    record.record(held, everything_committed)
    clock.now += 86400 - 60  # the next day
    record.record(held, everything_committed)
    clock.now += 60
    record.record(held, everything_committed)
    assert {r.project for r in record.rows(projects=["cs101"])} == {"cs101"}
    assert record.rows(projects=[]) == []
    assert len(record.rows(since=T0 + 86400)) == 2
    text = to_csv(record.rows(projects={"cs101"}))
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [(r["hour_utc"], r["user"], r["gpu_hours"]) for r in parsed] == [
        ("2026-11-30T01:00:00Z", "alice", "0.0042"),
        ("2026-12-01T01:00:00Z", "alice", "0.0042"),
    ]
    per_day = daily_totals(record.rows(), "project")
    assert per_day["2026-12-01"]["vision-lab"] == pytest.approx(1 / 60)


def test_history_span_days_and_refusals() -> None:
    since, days = history_span("3", T0 + 5 * 3600)
    assert days == ["2026-11-28", "2026-11-29", "2026-11-30"]
    assert since == T0 - 3600 - 2 * 86400
    assert history_span(None, T0)[1][-1] == "2026-11-30" and len(history_span(None, T0)[1]) == 14
    for bad, message in (("0", "between 1 and 366"), ("x", "whole number, not 'x'")):
        with pytest.raises(ValueError, match=message):
            history_span(bad, T0)


async def test_the_hub_records_what_its_allocator_holds(tmp_path: Path) -> None:
    config = Config()
    config.GPUSliceManager.inventory_source = "simulated"
    config.GPUSliceManager.simulated_gpus = "gpu-01=RTX3090:24576x1"
    config.UsageHistory.db_path = str(tmp_path / "usage.sqlite")
    config.UsageHistory.interval = 0.05
    manager = GPUSliceManager.instance(config=config)
    held = await manager.reserve(
        SliceRequest("RTX3090", Fraction(1, 4)), Owner("notebook", "alice", "cs101")
    )
    manager.commit(held.id)
    await asyncio.sleep(0.5)
    rows = UsageHistory.instance().rows()
    assert [(r.user, r.project, r.gpu_type) for r in rows] == [("alice", "cs101", "RTX3090")]
    assert 0 < rows[0].gpu_hours < 0.25 * 1 / 3600


def hours_of(record: UsageHistory, user: str) -> tuple[float, float, float]:
    """The user's GPU-hours held, measured and in use, over every row."""
    rows = [r for r in record.rows() if r.user == user]
    return (
        sum(r.gpu_hours for r in rows),
        sum(r.measured_gpu_hours for r in rows),
        sum(r.in_use_gpu_hours for r in rows),
    )


def test_in_use_hours_and_gpu_utilisation_are_kept_beside_the_hours_held(tmp_path: Path) -> None:
    clock = Clock()
    record = history(tmp_path / "usage.sqlite", clock)
    held = [
        slice_of("alice", "cs101", "1/4"),  # in use
        slice_of("bob", "cs101", "1/2"),  # idle: its processes hold no GPU memory
        slice_of("carol", "cs101", "1/4"),  # on a node whose agent does not answer
    ]
    in_use = {"alice-notebook": True, "bob-notebook": False, "carol-notebook": None}
    load = {"RTX3090": [90.0, 10.0], "A100": []}
    for _ in range(61):
        record.record(held, everything_committed, lambda a: in_use[a.id], load)
        clock.now += 60
    by_user = {user: hours_of(record, user) for user in ("alice", "bob", "carol")}
    assert by_user["alice"] == pytest.approx((0.25, 0.25, 0.25))
    assert by_user["bob"] == pytest.approx((0.5, 0.5, 0))
    assert by_user["carol"] == pytest.approx((0.25, 0, 0))  # unknown is not idle
    # Two RTX 3090s reported for an hour, at 90% and 10%: one busy GPU-hour of two.
    [utilisation] = [r for r in record.utilization_rows() if r.hour == T0]
    assert (utilisation.gpu_type, utilisation.reported_gpu_hours) == (
        "RTX3090",
        pytest.approx(59 / 30),
    )
    assert utilisation.busy_gpu_hours == pytest.approx(59 / 60)
    days = ["2026-11-29", "2026-11-30"]
    assert daily_utilization(record.utilization_rows(), days) == {"RTX3090": [None, 50.0]}
    parsed = list(csv.DictReader(io.StringIO(utilization_csv(record.utilization_rows()))))
    assert parsed[0] == {
        "hour_utc": "2026-11-30T01:00:00Z",
        "gpu_type": "RTX3090",
        "reported_gpu_hours": "1.9667",
        "busy_gpu_hours": "0.9833",
    }
    alice = next(
        r for r in csv.DictReader(io.StringIO(to_csv(record.rows()))) if r["user"] == "alice"
    )
    assert (alice["measured_gpu_hours"], alice["in_use_gpu_hours"]) == ("0.2458", "0.2458")


def test_a_history_written_before_in_use_hours_existed_is_read_and_extended(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite"
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(
            "CREATE TABLE usage (hour INTEGER NOT NULL, project TEXT NOT NULL, user TEXT NOT NULL,"
            " gpu_type TEXT NOT NULL, kind TEXT NOT NULL, gpu_hours REAL NOT NULL,"
            " PRIMARY KEY (hour, project, user, gpu_type, kind));"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value REAL NOT NULL);"
        )
        db.execute(
            "INSERT INTO usage VALUES (?, 'cs101', 'alice', 'RTX3090', 'notebook', 3.0)", (int(T0),)
        )
        db.execute("INSERT INTO meta VALUES ('last_sample', ?)", (T0,))
    clock = Clock(T0 + 60)
    record = history(path, clock)
    record.record([slice_of("alice", "cs101", "1/4")], everything_committed, lambda _: True)
    [row] = record.rows()
    assert row.gpu_hours == pytest.approx(3.0 + 0.25 / 60)
    assert row.in_use_gpu_hours == pytest.approx(0.25 / 60)


async def test_the_hub_records_the_agents_utilisation(tmp_path: Path) -> None:
    spec = "node-a=A100:81920x1"
    [gpu] = Allocator.from_inventory(simulated(spec)).gpus()
    metrics = AgentMetrics("node-a")
    metrics.update(NodeSample((GpuSample(0, gpu.uuid, "NVIDIA A100", 81920, 9000, 40),)), [], 0)
    server = MetricsServer(metrics.registry, 0, "127.0.0.1")
    config = Config()
    config.GPUSliceManager.inventory_source = "simulated"
    config.GPUSliceManager.simulated_gpus = spec
    config.AgentSamples.urls = [f"http://127.0.0.1:{server.port}/metrics"]
    config.AgentSamples.interval = 0.05
    config.UsageHistory.db_path = str(tmp_path / "usage.sqlite")
    config.UsageHistory.interval = 0.05
    try:
        manager = GPUSliceManager.instance(config=config)
        held = await manager.reserve(
            SliceRequest("A100", Fraction(1, 4)), Owner("notebook", "alice", "cs101")
        )
        manager.commit(held.id)
        for _ in range(100):
            if UsageHistory.instance().utilization_rows() and UsageHistory.instance().rows():
                break
            await asyncio.sleep(0.05)
    finally:
        server.close()
    [utilisation] = UsageHistory.instance().utilization_rows()
    assert utilisation.gpu_type == "A100"
    assert utilisation.busy_gpu_hours == pytest.approx(0.4 * utilisation.reported_gpu_hours)
    # The slice's processes hold no GPU memory: measured, and not in use.
    [row] = UsageHistory.instance().rows()
    assert row.measured_gpu_hours > 0 and row.in_use_gpu_hours == 0
