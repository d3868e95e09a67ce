"""Alembic environment: runs on the connection :func:`..store.upgrade` hands over."""

from alembic import context

from server_extension.jobs.store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
