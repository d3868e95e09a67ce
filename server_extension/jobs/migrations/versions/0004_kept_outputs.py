"""Executed notebooks (and their html) that a job's runner sends to the service at its end, for
readers who cannot reach the owner's storage once the pod is gone.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_outputs",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("kept_time", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_outputs")
