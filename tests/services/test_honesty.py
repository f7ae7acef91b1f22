"""A real round judges its labels out of sample and scores how foreign each open sample is."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from activelearn import Workspace
from activelearn.services import export
from activelearn.services.honesty import judge_round
from tests.services.test_rounds import CLASSES, SIZE, TINY, run_one, write_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _foreign_png(seed: int) -> bytes:
    """A checkerboard: bright in every region at once, unlike any class."""
    rng = np.random.default_rng(seed)
    board = (np.indices((SIZE, SIZE)).sum(0) % 2) * 255
    pixels = np.clip(board + rng.integers(-20, 20, size=(SIZE, SIZE)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_round_finds_the_planted_wrong_label_and_the_foreign_images(
    workspace: Workspace, tmp_path: Path
) -> None:
    project = workspace.create_project("honest", CLASSES, settings={**TINY, "epochs": 5})
    rows = []
    for cls, label in enumerate(CLASSES):
        rows += [(cls, seed, label, "pool") for seed in range(12)]
        rows += [(cls, 100 + seed, None, "pool") for seed in range(10)]
    planted_path = tmp_path / "img" / "honest-0-0.png"  # a "left" image labeled "top"
    rows[0] = (0, 0, "top", "pool")
    manifest = write_manifest(tmp_path / "img", rows, name="honest")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for seed in range(3):
        (foreign / f"board-{seed}.png").write_bytes(_foreign_png(seed))
    with manifest.open("a", newline="") as handle:
        writer = csv.writer(handle)
        for seed in range(3):
            writer.writerow([str(foreign / f"board-{seed}.png"), "", "pool"])
    assert not project.import_manifest(manifest).rejected

    project.request_round(requested_by="test")
    assert run_one(workspace, project) == "succeeded"

    issues = project.label_issues()
    planted = project.labels().set_index("path").loc[str(planted_path), "sample_id"]
    assert int(issues["sample_id"].iloc[0]) == int(planted)
    assert issues["suggested_label"].iloc[0] == "left" and issues["score"].iloc[0] > 0.5
    assert len(issues) == 36 and issues["score"].between(0, 1).all()

    frame = pd.read_csv(io.BytesIO(export.predictions_csv_bytes(project)))
    open_rows = frame[frame["status"] == "open"].sort_values("ood_score", ascending=False)
    top3 = {Path(p).name for p in open_rows["path"].head(3)}
    assert top3 == {f"board-{seed}.png" for seed in range(3)}
    assert frame.loc[frame["status"] == "labeled", "ood_score"].isna().all()
    assert frame.loc[frame["status"] == "open", "label_issue"].isna().all()

    project.relabel(int(planted), "left", annotator="lead")  # fixed: not judged until next round
    after = project.label_issues()
    assert int(planted) not in set(after["sample_id"]) and len(after) == 35


def test_judge_round_on_hand_made_features() -> None:
    # Two tight clusters; the 4th labeled row sits in cluster 0 but is labeled 1.
    gen = torch.Generator().manual_seed(0)
    centre = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labeled_y = torch.tensor([0] * 10 + [1] * 10)
    labeled_y[3] = 1
    labeled_x = centre[torch.tensor([0] * 10 + [1] * 10)] + 0.02 * torch.randn(20, 3, generator=gen)
    open_x = torch.cat([centre[[0, 1]], torch.tensor([[0.0, 0.0, 1.0]])])  # the last: foreign
    features = torch.cat([open_x, labeled_x])
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]] + [[0.5, 0.5]] * 20)
    result = judge_round(
        features=features, mean_probs=probs, n_open=3, labels=labeled_y, n_classes=2
    )
    assert int(result.ood_score[:3].argmax()) == 2 and result.ood_score[3:].isnan().all()
    issues = result.label_issue[3:]
    assert int(issues.argmax()) == 3 and int(result.suggested_class[3 + 3]) == 0
    assert result.label_issue[:3].isnan().all() and (result.suggested_class[:3] == -1).all()
