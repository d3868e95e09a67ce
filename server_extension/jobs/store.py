"""The job records: SQLAlchemy over SQLite by default, PostgreSQL by URL; Alembic migrations.

The schema is created and upgraded by Alembic at start (``migrations/``), never by
``create_all``, so a database made by an older release is upgraded in place.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from .model import Status

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def now_ms() -> int:
    return int(time.time() * 1000)


class Base(DeclarativeBase):
    pass


class JobRecord(Base):
    """One job. Times are milliseconds since the epoch, as jupyter-scheduler has them."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key", name="uq_owner_idempotency"),)

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    input_path: Mapped[str] = mapped_column(Text)
    snapshot_path: Mapped[str] = mapped_column(Text)
    project: Mapped[str | None] = mapped_column(String(63), index=True, nullable=True)
    flavor: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    image: Mapped[str | None] = mapped_column(String(63), nullable=True)
    image_ref: Mapped[str | None] = mapped_column(Text, nullable=True)
    cpu: Mapped[float | None] = mapped_column(nullable=True)
    memory: Mapped[str | None] = mapped_column(String(32), nullable=True)
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    environment: Mapped[dict] = mapped_column(JSON, default=dict)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    output_formats: Mapped[list] = mapped_column(JSON, default=list)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=Status.CREATED.value, index=True)
    status_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    pending_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    allocation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    gpu_slice: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    backend_ref: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The node the job must run on (None: any), where its user's storage is attached.
    node: Mapped[str | None] = mapped_column(String(253), nullable=True)
    #: The end of the log once the job finished, where the backend loses it with the pod.
    final_log: Mapped[str | None] = mapped_column(Text, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    rerun_of: Mapped[str | None] = mapped_column(String(32), nullable=True)
    create_time: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    start_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    end_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    @property
    def state(self) -> Status:
        return Status(self.status)

    def as_json(self) -> dict[str, Any]:
        """The REST shape (see server_extension/openapi.yaml, schema Job)."""
        job_dir = self.snapshot_path.rsplit("/", 1)[0]
        outputs = {fmt: f"{job_dir}/output.{fmt}" for fmt in self.output_formats}
        outputs["log"] = f"{job_dir}/job.log"
        return {
            "job_id": self.job_id,
            "name": self.name,
            "owner": self.owner,
            "input_path": self.input_path,
            "snapshot_path": self.snapshot_path,
            "project": self.project,
            "flavor": self.flavor,
            "gpu_type": self.gpu_type,
            "image": self.image,
            "parameters": self.parameters,
            "environment": self.environment,
            "timeout_seconds": self.timeout_seconds,
            "max_retries": self.max_retries,
            "output_formats": list(self.output_formats),
            "tags": list(self.tags),
            "status": self.status,
            "status_message": self.status_message,
            "pending_reason": self.pending_reason,
            "attempts": self.attempts,
            "gpu_slice": _public_slice(self.gpu_slice),
            "output_files": outputs,
            "rerun_of": self.rerun_of,
            "create_time": self.create_time,
            "start_time": self.start_time,
            "end_time": self.end_time,
        }


class KeptOutput(Base):
    """An output file of a job as its runner sent it (one row per job and file name)."""

    __tablename__ = "job_outputs"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    kept_time: Mapped[int] = mapped_column(BigInteger, default=now_ms)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: readers do not wait for the writer, and a commit is one append, not two syncs."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Store:
    """Sessions over one database, upgraded to the newest schema when opened."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error (no half-written row)."""
        with self._sessions() as session, session.begin():
            yield session

    def get(self, job_id: str) -> JobRecord | None:
        with self._sessions() as session:
            return session.get(JobRecord, job_id)

    def find(self, **where: Any) -> list[JobRecord]:
        with self._sessions() as session:
            query = session.query(JobRecord).filter_by(**where)
            return list(query.order_by(JobRecord.create_time.desc()))

    def to_watch(self) -> list[JobRecord]:
        """Jobs not finished, and finished ones whose slice is not released yet."""
        finished = [s.value for s in Status if s.finished]
        with self._sessions() as session:
            query = session.query(JobRecord).filter(
                JobRecord.status.not_in(finished) | JobRecord.allocation_id.is_not(None)
            )
            return list(query)

    def waiting(self) -> list[Any]:
        """Jobs recorded but not handed to the backend yet, oldest first: rows of
        ``job_id, pending_reason, allocation_id`` only (asked on every submit, so no records)."""
        with self._sessions() as session:
            query = session.query(
                JobRecord.job_id, JobRecord.pending_reason, JobRecord.allocation_id
            ).filter(JobRecord.status == Status.QUEUED.value, JobRecord.backend_ref.is_(None))
            return list(query.order_by(JobRecord.create_time))

    def started(self) -> int:
        """How many unfinished jobs the backend holds (started, not ended)."""
        finished = [s.value for s in Status if s.finished]
        with self._sessions() as session:
            query = session.query(JobRecord).filter(
                JobRecord.status.not_in(finished), JobRecord.backend_ref.is_not(None)
            )
            return query.count()

    def all(self) -> list[JobRecord]:
        with self._sessions() as session:
            return list(session.query(JobRecord).order_by(JobRecord.create_time.desc()))

    def update(self, job_id: str, **values: Any) -> JobRecord | None:
        with self.session() as session:
            row = session.get(JobRecord, job_id)
            if row is None:
                return None
            for key, value in values.items():
                setattr(row, key, value)
            return row

    def keep_output(self, job_id: str, name: str, data: bytes) -> None:
        """Keep (or replace: a retried attempt sends again) one output file of a job."""
        with self.session() as session:
            session.merge(KeptOutput(job_id=job_id, name=name, data=data, kept_time=now_ms()))

    def kept_output(self, job_id: str, name: str) -> bytes | None:
        with self._sessions() as session:
            row = session.get(KeptOutput, (job_id, name))
            return None if row is None else row.data

    def close(self) -> None:
        self.engine.dispose()


def upgrade(engine: Any) -> None:
    """Bring the database to the newest migration (Alembic, on this engine's connection)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _public_slice(held: dict | None) -> dict | None:
    """The slice as users see it (without the launch details kept for retries)."""
    if not held:
        return None
    if held.get("gpu_type") == "none":
        return None  # a node's CPU held for a CPU job: no GPU slice to show
    keys = ("description", "fraction", "gpu_type", "any_type", "node")
    return {k: held[k] for k in keys if k in held}
