"""Rounds with the embedding learner: embeddings read from the project's store, or a clear
one-line failure while the representation stage has not written them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

from activelearn import Workspace
from activelearn.core.embedding_fit import EmbeddingModel
from activelearn.core.learners import load_fitted
from activelearn.ingest.embeddings import EmbeddingStore
from activelearn.paths import checkpoint_dir, embeddings_dir
from db import rounds as round_queries
from db.engine import read_session
from db.models import Sample, SampleScore
from tests.services.test_rounds import CLASSES, TINY, make_project, run_one

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_class_embeddings(ws: Workspace, project_id: int) -> None:
    """A 3-d embedding per sample: its class's unit vector (read from the file name the test
    manifest gives it, '<name>-<class>-<seed>.png') plus a little noise."""
    with read_session(ws.engine) as session:
        rows = session.execute(
            select(Sample.id, Sample.path).where(Sample.project_id == project_id)
        ).all()
    ids = np.array([row[0] for row in rows])
    classes = np.array([int(Path(row[1]).stem.split("-")[1]) for row in rows])
    noise = np.random.default_rng(0).normal(scale=0.05, size=(len(rows), 3))
    vectors = (np.eye(3)[classes] + noise).astype(np.float32)
    EmbeddingStore(embeddings_dir(ws.data_dir, project_id)).write("encoder-1", ids, vectors)


def test_an_embedding_round_waits_for_the_representation_then_uses_it(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace
    project = make_project(
        ws, tmp_path / "images", settings={"learner": "embedding", "strategy": "auto"}
    )
    folder = embeddings_dir(ws.data_dir, project.id)
    folder.mkdir(parents=True)
    (folder / ".encoder-1-x7q.npz").write_bytes(b"a write in progress is not a version")
    project.request_round(requested_by="test")
    assert run_one(ws, project) == "failed"
    failed = project.rounds()[-1]
    assert failed.error is not None and "\n" not in failed.error
    assert failed.error.startswith("the representation stage has not finished yet")

    write_class_embeddings(ws, project.id)
    info = project.request_round(requested_by="test")
    assert run_one(ws, project) == "succeeded"
    done = project.rounds()[-1]
    assert done.id == info.id and done.n_labels == 4 * len(CLASSES)
    with read_session(ws.engine) as session:
        metrics = round_queries.round_metrics(session, done.id)
        scores = list(session.scalars(select(SampleScore).where(SampleScore.round_id == done.id)))
    assert metrics[0].member == -1 and metrics[0].eval_source == "test"
    assert metrics[0].accuracy == 1.0  # the classes are the embedding's axes
    assert len(scores) == (4 + 10) * len(CLASSES)  # every pool sample scored, labeled ones too
    model = load_fitted(checkpoint_dir(ws.data_dir, project.id, done.id))
    assert isinstance(model, EmbeddingModel) and model.members == TINY["members"]
    probs = model.predict_proba(torch.eye(3))
    assert probs.shape == (2, 3, 3) and probs.mean(0).argmax(1).tolist() == [0, 1, 2]
