"""Alembic environment: migrations run on the connection the ledger hands over."""

from __future__ import annotations

from alembic import context

from ledger.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "ledger migrations run through ledger.engine.migrate(), which passes a "
        "connection; run `jellyfish migrate` instead of calling alembic directly"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
