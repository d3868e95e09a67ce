"""GPU-hours per project, user and GPU type, recorded by the hub and kept across restarts.

Every ``interval`` seconds the hub adds, for each committed slice, its share times the time
since the last sample (a 1/4 slice held for an hour is 0.25 GPU-hours) to an hourly row in a
SQLite file. Reserved slices whose pod or process does not exist yet are not counted. A gap
longer than ``max_gap`` (the hub was down) counts nothing: what ran meanwhile is unknown, and
counting it as held would bill users for a hub outage.

Prometheus has the same figures only while it keeps them; this file is the record a course
admin downloads as CSV at the end of term.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
import time
from collections.abc import Callable, Iterable
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
    PRIMARY KEY (hour, project, user, gpu_type, kind)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
CSV_FIELDS = ("hour_utc", "project", "user", "gpu_type", "kind", "gpu_hours")


@dataclass(frozen=True)
class UsageRow:
    hour: int
    project: str
    user: str
    gpu_type: str
    kind: str
    gpu_hours: float


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

    @property
    def enabled(self) -> bool:
        return bool(self.db_path)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=10)

    def record(self, allocations: Iterable[Allocation], committed: Callable[[str], bool]) -> float:
        """Add the usage since the last sample; returns the seconds counted (0 on the first
        sample and after a gap longer than ``max_gap``)."""
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
                db.execute(
                    "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT "
                    "(hour, project, user, gpu_type, kind) "
                    "DO UPDATE SET gpu_hours = gpu_hours + excluded.gpu_hours",
                    (hour, owner.project, owner.user, allocation.gpu_type, owner.kind, amount),
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
        query = "SELECT * FROM usage WHERE hour >= ? AND hour < ?"
        args: list = [int(since // HOUR * HOUR), until if until is not None else float("inf")]
        if projects is not None:
            wanted = sorted(projects)
            query += f" AND project IN ({', '.join('?' * len(wanted))})"
            args.extend(wanted)
        with closing(self._connect()) as db:
            found = db.execute(query + " ORDER BY hour, project, user, gpu_type, kind", args)
            return [UsageRow(*row) for row in found.fetchall()]

    def start(self, allocations: Callable[[], list[Allocation]], committed: Callable) -> None:
        """Sample every ``interval`` seconds on the running event loop (once)."""
        if self.enabled and self._task is None:
            self._task = asyncio.ensure_future(self._loop(allocations, committed))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self, allocations: Callable[[], list[Allocation]], committed: Callable):
        while True:
            try:
                await asyncio.to_thread(self.record, allocations(), committed)
            except (sqlite3.Error, OSError) as err:  # a full disk must not stop the hub
                self.log.error("could not record GPU usage in %s: %s", self.db_path, err)
            await asyncio.sleep(self.interval)


def to_csv(rows: Iterable[UsageRow]) -> str:
    """The rows as CSV, hours in ISO 8601 UTC, GPU-hours to 4 decimals."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.hour))
        writer.writerow(
            [stamp, row.project, row.user, row.gpu_type, row.kind, f"{row.gpu_hours:.4f}"]
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
