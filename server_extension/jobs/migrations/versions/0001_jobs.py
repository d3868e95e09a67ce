"""The jobs table.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("input_path", sa.Text, nullable=False),
        sa.Column("snapshot_path", sa.Text, nullable=False),
        sa.Column("project", sa.String(63), nullable=True, index=True),
        sa.Column("flavor", sa.String(64), nullable=False),
        sa.Column("gpu_type", sa.String(64), nullable=True),
        sa.Column("image", sa.String(63), nullable=True),
        sa.Column("image_ref", sa.Text, nullable=True),
        sa.Column("cpu", sa.Float, nullable=True),
        sa.Column("memory", sa.String(32), nullable=True),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("environment", sa.JSON, nullable=False),
        sa.Column("timeout_seconds", sa.Integer, nullable=True),
        sa.Column("max_retries", sa.Integer, nullable=False),
        sa.Column("output_formats", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("status_message", sa.Text, nullable=True),
        sa.Column("pending_reason", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("allocation_id", sa.String(64), nullable=True),
        sa.Column("gpu_slice", sa.JSON, nullable=True),
        sa.Column("backend_ref", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("rerun_of", sa.String(32), nullable=True),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=True),
        sa.Column("end_time", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_owner_idempotency"),
    )


def downgrade() -> None:
    op.drop_table("jobs")
