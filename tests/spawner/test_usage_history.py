"""GPU-hours history: share x time of committed slices, hourly rows in SQLite that outlive the
hub, a hub outage counted as nothing, CSV export; with a controllable clock."""

from __future__ import annotations

import asyncio
import csv
import io
from fractions import Fraction
from pathlib import Path

import pytest
from traitlets.config import Config

from gpu_fraction.model import Allocation, Owner, SliceRequest
from hub_config.console_page import history_span
from spawner.manager import GPUSliceManager
from spawner.usage_history import UsageHistory, daily_totals, to_csv
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
