"""GPU-hours and GPU utilisation per project, user and GPU type, recorded by the hub and kept
across restarts.

Every ``interval`` seconds the hub adds, for each committed slice, its share times the time
since the last sample (a 1/4 slice held for an hour is 0.25 GPU-hours) to an hourly row in a
SQLite file. Reserved slices whose pod or process does not exist yet are not counted. A gap
longer than ``max_gap`` (the hub was down) counts nothing: what ran meanwhile is unknown, and
counting it as held would bill users for a hub outage.

Where the node agents report a slice's GPU, the same share x time is also counted as
*measured*, and as *in use* when the slice is busy by the idle rule of
``spawner.agent_samples`` (its processes hold GPU memory; a whole GPU also above the idle
utilisation): in use / measured is the part of the GPU-hours held that was used, the figure
that shows what idle notebooks cost. Per GPU type the agents' utilisation of every reported GPU
is kept too (GPU-hours reported and GPU-hours busy, utilisation x time), the hardware's
utilisation over time.

Prometheus has the same figures only while it keeps them; this file is the record a course
admin downloads as CSV at the end of term.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from traitlets import Float, Unicode
from traitlets.config import SingletonConfigurable

from gpu_fraction.model import Allocation

HOUR = 3600.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    hour INTEGER NOT NULL,          -- start of the hour, seconds since the epoch (UTC)
    project TEXT NOT NULL,
    user TEXT NOT NULL,
    gpu_type TEXT NOT NULL,
    kind TEXT NOT NULL,             -- notebook or job
    gpu_hours REAL NOT NULL,
    measured_gpu_hours REAL NOT NULL DEFAULT 0,  -- of gpu_hours, those an agent reported on
    in_use_gpu_hours REAL NOT NULL DEFAULT 0,    -- of measured, those the slice was busy
    PRIMARY KEY (hour, project, user, gpu_type, kind)
);
CREATE TABLE IF NOT EXISTS gpu_utilization (
    hour INTEGER NOT NULL,
    gpu_type TEXT NOT NULL,
    reported_gpu_hours REAL NOT NULL,  -- GPUs an agent reported, x time
    busy_gpu_hours REAL NOT NULL,      -- their utilisation (0..1) x time
    PRIMARY KEY (hour, gpu_type)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
#: Columns added since the first release, for history files written by it.
ADDED_COLUMNS = {
    "measured_gpu_hours": "REAL NOT NULL DEFAULT 0",
    "in_use_gpu_hours": "REAL NOT NULL DEFAULT 0",
}
CSV_FIELDS = (
    "hour_utc",
    "project",
    "user",
    "gpu_type",
    "kind",
    "gpu_hours",
    "measured_gpu_hours",
    "in_use_gpu_hours",
)
USAGE_COLUMNS = ("hour", *CSV_FIELDS[1:])
UTILIZATION_CSV_FIELDS = ("hour_utc", "gpu_type", "reported_gpu_hours", "busy_gpu_hours")


@dataclass(frozen=True)
class UsageRow:
    hour: int
    project: str
    user: str
    gpu_type: str
    kind: str
    gpu_hours: float
    measured_gpu_hours: float = 0.0
    in_use_gpu_hours: float = 0.0


@dataclass(frozen=True)
class UtilizationRow:
    hour: int
    gpu_type: str
    reported_gpu_hours: float
    busy_gpu_hours: float


class UsageHistory(SingletonConfigurable):
    """The hub's record of GPU-hours."""

    db_path = Unicode(
        "",
        config=True,
        help="""SQLite file of the GPU-hours history (created if missing). Empty: no history
        is recorded. The hub's configuration puts it next to the hub's own database.""",
    )
    interval = Float(
        60.0,
        config=True,
        help="Seconds between two samples of the slices held; each adds share x elapsed time.",
    )
    max_gap = Float(
        300.0,
        config=True,
        help="""A gap between two samples longer than this many seconds (the hub was down)
        counts no usage: what ran meanwhile is unknown.""",
    )

    def __init__(self, clock: Callable[[], float] = time.time, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self._task: asyncio.Task | None = None
        if self.db_path:
            Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db, db:
                db.executescript(SCHEMA)
                present = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
                for column, declaration in ADDED_COLUMNS.items():
                    if column not in present:
                        db.execute(f"ALTER TABLE usage ADD COLUMN {column} {declaration}")

    @property
    def enabled(self) -> bool:
        return bool(self.db_path)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=10)

    def record(
        self,
        allocations: Iterable[Allocation],
        committed: Callable[[str], bool],
        busy: Callable[[Allocation], bool | None] = lambda _: None,
        utilization: Mapping[str, Iterable[float]] | None = None,
    ) -> float:
        """Add the usage since the last sample; returns the seconds counted (0 on the first
        sample and after a gap longer than ``max_gap``). ``busy`` says whether a slice is in
        use now (None: no agent reports it); ``utilization`` is, per GPU type, the utilisation
        (0..100) of each GPU an agent reports."""
        now = self.clock()
        with closing(self._connect()) as db, db:
            last = db.execute("SELECT value FROM meta WHERE key = 'last_sample'").fetchone()
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_sample', ?)", (now,))
            elapsed = now - last[0] if last else 0.0
            if not 0 < elapsed <= self.max_gap:
                return 0.0
            hour = int(now // HOUR * HOUR)
            for allocation in allocations:
                if not committed(allocation.id):
                    continue
                owner = allocation.owner
                amount = float(allocation.fraction) * elapsed / HOUR
                in_use = busy(allocation)
                measured = 0.0 if in_use is None else amount
                db.execute(
                    "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
                    "(hour, project, user, gpu_type, kind) DO UPDATE SET "
                    "gpu_hours = gpu_hours + excluded.gpu_hours, "
                    "measured_gpu_hours = measured_gpu_hours + excluded.measured_gpu_hours, "
                    "in_use_gpu_hours = in_use_gpu_hours + excluded.in_use_gpu_hours",
                    (
                        hour,
                        owner.project,
                        owner.user,
                        allocation.gpu_type,
                        owner.kind,
                        amount,
                        measured,
                        amount if in_use else 0.0,
                    ),
                )
            for gpu_type, percents in (utilization or {}).items():
                percents = [min(100.0, max(0.0, p)) for p in percents]
                if not percents:
                    continue
                db.execute(
                    "INSERT INTO gpu_utilization VALUES (?, ?, ?, ?) ON CONFLICT "
                    "(hour, gpu_type) DO UPDATE SET "
                    "reported_gpu_hours = reported_gpu_hours + excluded.reported_gpu_hours, "
                    "busy_gpu_hours = busy_gpu_hours + excluded.busy_gpu_hours",
                    (
                        hour,
                        gpu_type,
                        len(percents) * elapsed / HOUR,
                        sum(percents) / 100 * elapsed / HOUR,
                    ),
                )
        return elapsed

    def rows(
        self,
        since: float = 0.0,
        until: float | None = None,
        projects: Iterable[str] | None = None,
    ) -> list[UsageRow]:
        """Hourly rows from ``since`` to ``until`` (epoch seconds), of ``projects`` (None: all)."""
        if not self.enabled:
            return []
        query = f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage WHERE hour >= ? AND hour < ?"
        args: list = [int(since // HOUR * HOUR), until if until is not None else float("inf")]
        if projects is not None:
            wanted = sorted(projects)
            query += f" AND project IN ({', '.join('?' * len(wanted))})"
            args.extend(wanted)
        with closing(self._connect()) as db:
            found = db.execute(query + " ORDER BY hour, project, user, gpu_type, kind", args)
            return [UsageRow(*row) for row in found.fetchall()]

    def utilization_rows(self, since: float = 0.0) -> list[UtilizationRow]:
        """Hourly GPU utilisation per GPU type from ``since`` (epoch seconds)."""
        if not self.enabled:
            return []
        with closing(self._connect()) as db:
            found = db.execute(
                "SELECT hour, gpu_type, reported_gpu_hours, busy_gpu_hours FROM gpu_utilization"
                " WHERE hour >= ? ORDER BY hour, gpu_type",
                (int(since // HOUR * HOUR),),
            )
            return [UtilizationRow(*row) for row in found.fetchall()]

    def start(
        self,
        allocations: Callable[[], list[Allocation]],
        committed: Callable[[str], bool],
        busy: Callable[[Allocation], bool | None] = lambda _: None,
        utilization: Callable[[], Mapping[str, list[float]]] = dict,
    ) -> None:
        """Sample every ``interval`` seconds on the running event loop (once); ``busy`` and
        ``utilization`` as for :meth:`record`, the latter called at each sample."""
        if self.enabled and self._task is None:
            self._task = asyncio.ensure_future(
                self._loop(allocations, committed, busy, utilization)
            )

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(
        self,
        allocations: Callable[[], list[Allocation]],
        committed: Callable[[str], bool],
        busy: Callable[[Allocation], bool | None],
        utilization: Callable[[], Mapping[str, list[float]]],
    ) -> None:
        while True:
            try:
                await asyncio.to_thread(self.record, allocations(), committed, busy, utilization())
            except (sqlite3.Error, OSError) as err:  # a full disk must not stop the hub
                self.log.error("could not record GPU usage in %s: %s", self.db_path, err)
            await asyncio.sleep(self.interval)


def _stamp(hour: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour))


def to_csv(rows: Iterable[UsageRow]) -> str:
    """The rows as CSV, hours in ISO 8601 UTC, GPU-hours to 4 decimals."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        hours = (row.gpu_hours, row.measured_gpu_hours, row.in_use_gpu_hours)
        writer.writerow(
            [_stamp(row.hour), row.project, row.user, row.gpu_type, row.kind]
            + [f"{value:.4f}" for value in hours]
        )
    return out.getvalue()


def daily_totals(rows: Iterable[UsageRow], by: str = "project") -> dict[str, dict[str, float]]:
    """GPU-hours per day (``YYYY-MM-DD``, UTC) per ``by`` (project or user)."""
    totals: dict[str, dict[str, float]] = {}
    for row in rows:
        day = time.strftime("%Y-%m-%d", time.gmtime(row.hour))
        key = getattr(row, by)
        per_day = totals.setdefault(day, {})
        per_day[key] = per_day.get(key, 0.0) + row.gpu_hours
    return totals


def daily_utilization(
    rows: Iterable[UtilizationRow], days: list[str]
) -> dict[str, list[float | None]]:
    """Per GPU type, its mean utilisation (percent) on each of ``days`` (None: not reported)."""
    sums: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        day = time.strftime("%Y-%m-%d", time.gmtime(row.hour))
        reported_busy = sums.setdefault(row.gpu_type, {}).setdefault(day, [0.0, 0.0])
        reported_busy[0] += row.reported_gpu_hours
        reported_busy[1] += row.busy_gpu_hours
    return {
        gpu_type: [
            round(100 * per_day[day][1] / per_day[day][0], 1)
            if per_day.get(day, [0.0])[0] > 0
            else None
            for day in days
        ]
        for gpu_type, per_day in sorted(sums.items())
    }


def utilization_csv(rows: Iterable[UtilizationRow]) -> str:
    """GPU utilisation rows as CSV, hours in ISO 8601 UTC, GPU-hours to 4 decimals."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(UTILIZATION_CSV_FIELDS)
    for row in rows:
        writer.writerow(
            [_stamp(row.hour), row.gpu_type]
            + [f"{value:.4f}" for value in (row.reported_gpu_hours, row.busy_gpu_hours)]
        )
    return out.getvalue()
