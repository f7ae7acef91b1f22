"""0006 adds users, login_sessions, login_throttle and audit_log, and drops them again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from db.engine import make_engine
from db.migrate import alembic_config, upgrade

TABLES = {"users", "login_sessions", "login_throttle", "audit_log"}


def test_roles_migration_round_trips(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    assert not TABLES & set(inspect(engine).get_table_names())
    assert "round_pool_summaries" in inspect(engine).get_table_names()
    engine.dispose()
