"""Alembic environment: one history for SQLite and PostgreSQL.

chatsvc passes an open connection (``config.attributes["connection"]``); the
plain ``alembic`` command line falls back to ``CHATSVC_DATABASE_URL``."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from chatsvc.settings import load_settings
from chatsvc.store.db import create_engine
from chatsvc.store.models import Base

target_metadata = Base.metadata


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_engine(load_settings())
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
        await connection.commit()
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
