"""What a finished round writes besides its status: training curves, metrics and pool scores.

Each write is its own short transaction so that labels interleave with a long save.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from sqlalchemy import Engine

from activelearn.score_fields import SCORE_FIELDS
from activelearn.services.honesty import RoundHonesty, stored_columns
from activelearn.services.pipeline import SAVING_SHARE, PoolScoreTable, RoundProgress, TrainResult
from db import rounds as round_queries
from db.engine import with_write_retry

SCORE_CHUNK_ROWS = 500  # sample_scores rows per write transaction: a label waits for one at most


def store_metrics(
    engine: Engine, round_id: int, result: TrainResult, eval_source: str | None
) -> None:

    history = result.history
    epochs = [
        {
            "round_id": round_id,
            "member": member,
            "epoch": epoch + 1,
            "train_loss": float(loss),
            "val_loss": float(history.val_loss[member][epoch]) if history.val_loss else None,
        }
        for member, losses in enumerate(history.train_loss)
        for epoch, loss in enumerate(losses)
    ]
    metrics = [
        {
            "round_id": round_id,
            "member": m.member,
            "eval_source": eval_source or "none",
            "n_eval": m.n_eval,
            "accuracy": m.accuracy,
            "accuracy_se": m.accuracy_se,
            "nll": m.nll,
            "nll_se": m.nll_se,
            "brier": m.brier,
            "brier_se": m.brier_se,
            "ece": m.ece,
            "details": m.details,
        }
        for m in result.metrics
    ]

    def work(session: Any) -> None:
        round_queries.add_training_epochs(session, epochs)
        round_queries.add_round_metrics(session, metrics)

    with_write_retry(engine, work)


def store_scores(
    engine: Engine,
    round_id: int,
    sample_ids: list[int],
    pool: PoolScoreTable | None,
    judged: RoundHonesty | None,
    progress: Callable[[RoundProgress], None],
) -> None:
    """sample_scores in chunks, each its own short write transaction (labels interleave)."""
    if pool is None:
        return
    n = len(sample_ids)
    stored = (*SCORE_FIELDS, "predicted_class", "priority")
    columns = {name: getattr(pool, name).tolist() for name in stored}
    columns.update(stored_columns(judged, n))
    columns["reason"] = [pool.reasons.get(row) for row in range(n)]  # pool row -> why chosen
    names = list(columns)
    ranks = [rank or None for rank in pool.rank.tolist()]  # 0: not ranked
    # 4 decimals, rounded as one tensor op (a float64 k / 10^4 is the double round() gives)
    mean_probs = (pool.mean_probs.to(torch.float64) * 1e4).round().div(1e4).tolist()
    votes = pool.member_predictions.T.tolist()  # (N, M) python ints
    for lo in range(0, n, SCORE_CHUNK_ROWS):
        hi = min(lo + SCORE_CHUNK_ROWS, n)
        progress(
            RoundProgress(
                "saving",
                1 - SAVING_SHARE + SAVING_SHARE * lo / max(n, 1),
                {"saved": lo, "total": n},
            )
        )
        rows = [
            {
                **dict(zip(names, values, strict=True)),
                "rank": rank,
                "round_id": round_id,
                "sample_id": int(sample_id),
                "mean_probs": probs,
                "member_predictions": vote,
            }
            for values, rank, sample_id, probs, vote in zip(
                zip(*(column[lo:hi] for column in columns.values()), strict=True),
                ranks[lo:hi],
                sample_ids[lo:hi],
                mean_probs[lo:hi],
                votes[lo:hi],
                strict=True,
            )
        ]
        with_write_retry(engine, lambda s, rows=rows: round_queries.add_sample_scores(s, rows))
