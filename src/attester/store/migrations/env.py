"""Alembic environment: runs on the connection ``attester.store.db.upgrade`` passes in, or
on ``sqlalchemy.url`` when the alembic CLI is used by hand."""

from alembic import context
from sqlalchemy import create_engine

from attester.store.db import normalise_url
from attester.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()
else:
    engine = create_engine(normalise_url(config.get_main_option("sqlalchemy.url") or ""))
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        context.run_migrations()
