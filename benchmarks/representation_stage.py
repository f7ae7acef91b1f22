"""The representation stage on the demo, end to end through the database and the worker's code.

Creates a fresh workspace, imports the demo (4,000 pool digits, 1,000 test digits), which
queues the project's representation job, runs it in this process (as `activelearn worker`
would) and prints its timings, then the quality of the stored features: 1-nearest-neighbour
test accuracy with every pool image's gold label (test images classified by their pool
neighbours; the encoder never saw a test image).

    PYTHONPATH=. .venv/bin/python benchmarks/representation_stage.py --threads 1 [--epochs 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select

from activelearn import Workspace
from activelearn.services.representation_runner import claim_representation, run_representation
from db.engine import read_session
from db.models import Sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="default: the setting's")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        ws = Workspace(f"sqlite:///{Path(folder) / 'bench.db'}", data_dir=Path(folder))
        started = time.perf_counter()
        project = ws.ensure_demo()
        print(f"demo import: {time.perf_counter() - started:.1f} s")
        if args.epochs is not None:
            project.update_settings(ssl_epochs=args.epochs)
        job_id = claim_representation(ws.engine, worker="bench:1")
        assert job_id is not None, "the import queued no representation job"
        started = time.perf_counter()
        status = run_representation(
            ws.engine, job_id, data_dir=ws.data_dir, worker="bench:1", device=args.device
        )
        total = time.perf_counter() - started
        current = project.representation_status().current
        assert status == "succeeded" and current is not None, status
        detail = current.detail
        print(
            f"job {job_id} {status}: {detail['epochs']} epochs on {current.n_images} pool images, "
            f"training {detail['train_seconds']:.0f} s (last epoch "
            f"{detail['images_per_second']:.0f} images/s, loss {detail['loss']:.3f}), "
            f"whole job {total:.0f} s on {current.device} with {args.threads} thread(s); "
            f"{current.n_embedded} samples embedded, {detail['dim']} dimensions"
        )
        ids, vectors = project.embeddings()
        with read_session(ws.engine) as session:
            rows = session.execute(
                select(Sample.id, Sample.split, Sample.gold_label).where(
                    Sample.project_id == project.id
                )
            ).all()
        split = {int(i): s for i, s, _ in rows}
        gold = {int(i): g for i, _, g in rows}
        is_pool = np.array([split[int(i)] == "pool" for i in ids])
        labels = np.array([gold[int(i)] for i in ids])
        pool_x, test_x = vectors[is_pool], vectors[~is_pool]
        nearest = (test_x @ pool_x.T).argmax(1)  # unit rows: cosine similarity
        accuracy = float((labels[is_pool][nearest] == labels[~is_pool]).mean())
        print(f"1-NN test accuracy of the stored features (all pool labels): {accuracy:.3f}")
        ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
