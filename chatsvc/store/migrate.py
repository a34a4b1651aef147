"""Applies the Alembic history (``migrations/``) to the configured database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade through a connection of ``engine`` (works inside a running loop)."""
    config = alembic_config()

    def run(sync_connection: object) -> None:
        config.attributes["connection"] = sync_connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    config = alembic_config()

    def run(sync_connection: object) -> None:
        config.attributes["connection"] = sync_connection
        command.downgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)
