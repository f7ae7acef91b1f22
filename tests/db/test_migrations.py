"""Schema migrations: an older database is upgraded at start-up and keeps every label."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError

from activelearn import Workspace
from db.engine import make_engine
from db.migrate import alembic_config, current_revision, head_revision, upgrade
from db.models import Base


def test_models_match_migrations(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_pool_summaries_migration_round_trips(db_url: str) -> None:
    """0003 adds round_pool_summaries (the dashboard's per-round cache) and drops it again."""
    engine = make_engine(db_url)
    upgrade(engine, "0002")
    assert "round_pool_summaries" not in inspect(engine).get_table_names()
    upgrade(engine, "0003")
    assert "round_pool_summaries" in inspect(engine).get_table_names()
    with engine.begin() as connection:
        command.downgrade(_config(connection), "0002")
    assert "round_pool_summaries" not in inspect(engine).get_table_names()
    assert "sample_scores" in inspect(engine).get_table_names()
    engine.dispose()


def _config(connection: Connection) -> Config:
    config = alembic_config()
    config.attributes["connection"] = connection
    return config


def test_upgrade_from_first_schema_keeps_labels(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0001")
    now = "2026-01-01 00:00:00.000000"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO projects (id, name, classes, settings, created_at) "
                "VALUES (1, 'old', '[\"a\", \"b\"]', '{}', :now)"
            ),
            {"now": now},
        )
        for sample_id, label in [(1, "a"), (2, "b"), (3, None)]:
            connection.execute(
                text(
                    "INSERT INTO samples (id, project_id, path, sha256, width, height, split, "
                    "status, label, skip_count, random_key, cache_shard, cache_index, created_at) "
                    "VALUES (:id, 1, :path, :sha, 8, 8, 'pool', :status, :label, 0, 0.5, 0, :id, "
                    ":now)"
                ),
                {
                    "id": sample_id,
                    "path": f"/x/{sample_id}.png",
                    "sha": f"{sample_id:064d}",
                    "status": "labeled" if label else "open",
                    "label": label,
                    "now": now,
                },
            )
            if label:
                connection.execute(
                    text(
                        "INSERT INTO annotations (project_id, sample_id, label, annotator, "
                        "created_at, superseded) VALUES (1, :id, :label, 'ana', :now, 0)"
                    ),
                    {"id": sample_id, "label": label, "now": now},
                )
    engine.dispose()
    assert current_revision(make_engine(url)) == "0001"

    with Workspace(url, data_dir=tmp_path) as ws:  # start-up applies the newer migrations
        assert current_revision(ws.engine) == head_revision()
        labels = ws.project("old").labels()
        assert sorted(zip(labels["sample_id"], labels["label"], strict=True)) == [
            (1, "a"),
            (2, "b"),
        ]
        with ws.engine.connect() as connection:
            columns = {
                row[1] for row in connection.exec_driver_sql("PRAGMA table_info(sample_scores)")
            }
        assert {"mean_probs", "member_predictions", "rank"} <= columns
        assert "round_pool_summaries" in inspect(ws.engine).get_table_names()


def test_one_live_label_migration_keeps_the_newest_of_doubled_labels(db_url: str) -> None:
    """0004: a sample with two live labels (the old relabel bug) keeps the newest live one;
    afterwards the database refuses a second live label."""
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    now = "2026-01-01 00:00:00"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO projects (id, name, classes, settings, created_at) "
                "VALUES (1, 'old', '[\"a\", \"b\"]', '{}', :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO samples (id, project_id, path, sha256, width, height, split, "
                "status, label, skip_count, random_key, cache_shard, cache_index, created_at) "
                "VALUES (1, 1, '/x/1.png', :sha, 8, 8, 'pool', 'labeled', 'b', 0, 0.5, 0, 0, :now)"
            ),
            {"sha": "1" * 64, "now": now},
        )
        for annotation_id, label, annotator in [(1, "a", "import"), (2, "b", "ana")]:
            connection.execute(
                text(
                    "INSERT INTO annotations (id, project_id, sample_id, label, annotator, "
                    "created_at, superseded) VALUES (:id, 1, 1, :label, :who, :now, :no)"
                ),
                {"id": annotation_id, "label": label, "who": annotator, "now": now, "no": False},
            )
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, superseded FROM annotations ORDER BY id")).all()
    assert [(i, bool(s)) for i, s in rows] == [(1, True), (2, False)]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO annotations (project_id, sample_id, label, annotator, created_at, "
                "superseded) VALUES (1, 1, 'a', 'eve', :now, :no)"
            ),
            {"now": now, "no": False},
        )
    with engine.begin() as connection:
        command.downgrade(_config(connection), "0003")
    engine.dispose()


def test_representations_migration_round_trips(db_url: str) -> None:
    """0007 adds the representations table (one active job per project) and drops it again."""
    engine = make_engine(db_url)
    upgrade(engine, "0005")
    assert "representations" not in inspect(engine).get_table_names()
    upgrade(engine, "0007")
    assert "representations" in inspect(engine).get_table_names()
    now = "2026-01-01 00:00:00"
    insert = text(
        "INSERT INTO representations (project_id, status, phase, progress, detail, n_images, "
        "n_embedded, cancel_requested, attempts, created_at) "
        "VALUES (1, 'queued', 'queued', 0, '{}', 0, 0, :no, 0, :now)"
    )
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO projects (id, name, classes, settings, created_at) "
                "VALUES (1, 'p', '[\"a\"]', '{}', :now)"
            ),
            {"now": now},
        )
        connection.execute(insert, {"no": False, "now": now})
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert, {"no": False, "now": now})  # a second active job
    with engine.begin() as connection:
        command.downgrade(_config(connection), "0005")
    assert "representations" not in inspect(engine).get_table_names()
    engine.dispose()
