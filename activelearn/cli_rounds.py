"""The `train`, `worker` and `simulate` subcommands of the `activelearn` command."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from activelearn.clock import utcnow
from activelearn.core.learners import DEFAULT_LEARNER, LEARNERS
from activelearn.services import rounds
from activelearn.services.dashboard import simulation_dir
from activelearn.services.rounds import DEFAULT_HEARTBEAT_TIMEOUT_S
from activelearn.services.settings import HOG_BACKBONE, ProjectSettings
from activelearn.services.workspace import Project, Workspace
from activelearn.types import RoundInfo, RoundStatus
from db import rounds as round_queries
from db.engine import read_session, with_write_retry


def register(subparsers: Any, add_common: Callable[..., None]) -> None:
    """Add `train`, `worker` and `simulate` to the `activelearn` parser's subcommands;
    `add_common(parser, project=...)` adds the --db / --data-dir (/ --project) options."""
    train = subparsers.add_parser("train", help="queue a retraining round (a worker runs it)")
    add_common(train, project=True)
    train.add_argument(
        "--wait", action="store_true", help="wait for the round, running it here if no worker is"
    )
    train.add_argument(
        "--timeout", type=float, default=None, help="with --wait: give up after this many seconds"
    )
    train.set_defaults(handler=cmd_train)

    run = subparsers.add_parser("worker", help="run queued rounds in the background (all projects)")
    add_worker_arguments(run)
    run.set_defaults(handler=cmd_worker)

    sim = subparsers.add_parser(
        "simulate", help="oracle simulation of active learning on a labeled manifest"
    )
    sim.add_argument("--manifest", help="pool CSV with path,label columns")
    sim.add_argument("--test", dest="test_manifest", help="test CSV with path,label columns")
    sim.add_argument("--demo", action="store_true", help="use the built-in MNIST subset")
    sim.add_argument(
        "--strategy",
        action="append",
        dest="strategies",
        help="acquisition strategy (repeatable; default: bald and random); any registry name",
    )
    sim.add_argument(
        "--init",
        type=int,
        default=20,
        help="initial random labels (default 20; 0: the strategy picks from the first label on)",
    )
    sim.add_argument(
        "--learner",
        choices=tuple(LEARNERS),
        default=DEFAULT_LEARNER,
        help=f"what each round trains (default {DEFAULT_LEARNER}; embedding: heads on the "
        "pool's embeddings, see --backbone)",
    )
    sim.add_argument(
        "--backbone",
        default=HOG_BACKBONE,
        help="the representation, as the project setting of that name makes the app's "
        "representation stage compute it, once per run, fitted on the pool's images only, "
        "when the learner or a strategy (typiclust, auto) needs it: hog (the default: HOG at "
        "two scales joined with a 30-d pixel PCA), ssl (the same joined with a SimCLR encoder "
        "trained on the pool, --ssl-epochs) or torchvision:<architecture> (--backbone-weights)",
    )
    sim.add_argument(
        "--backbone-weights",
        default="",
        help="local weights file (.safetensors, .pth, .pt) of a torchvision:<arch> backbone",
    )
    sim.add_argument(
        "--ssl-epochs",
        type=int,
        default=ProjectSettings().ssl_epochs,
        help="self-supervised epochs of the encoder with --backbone ssl "
        f"(default {ProjectSettings().ssl_epochs}, a new project's)",
    )
    sim.add_argument("--batch", type=int, default=10, help="labels revealed per round (10)")
    sim.add_argument("--budget", type=int, default=300, help="stop at this many labels (300)")
    sim.add_argument("--members", type=int, default=5, help="ensemble members (5)")
    sim.add_argument("--epochs", type=int, default=20, help="training epochs per round (20)")
    sim.add_argument("--batch-size", type=int, default=64, help="training batch size (64)")
    sim.add_argument("--repeats", type=int, default=3, help="repeats per strategy (3)")
    sim.add_argument("--seed", type=int, default=0, help="random seed of the first repeat (0)")
    sim.add_argument(
        "--first-repeat", type=int, default=0, help="number repeats from here (extend a run)"
    )
    sim.add_argument(
        "--image-size", type=int, default=28, help="images are resized to this (28 px)"
    )
    sim.add_argument(
        "--channels", type=int, choices=(1, 3), default=1, help="1: grayscale, 3: RGB (1)"
    )
    sim.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda", "mps"),
        help="training device (auto: CUDA when available)",
    )
    sim.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: cores - 1, at least 1)"
    )
    sim.add_argument(
        "--balanced-init", action="store_true", help="spread the initial labels over classes"
    )
    sim.add_argument("--out", default=None, help="CSV file, one row per round")
    add_common(sim, project=False)
    sim.add_argument(
        "--project",
        default=None,
        help="also keep the results with this project, where its dashboard draws the "
        "random-sampling curve beside the learning curves",
    )
    sim.set_defaults(handler=cmd_simulate)


def _niceness(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 19:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 19")
    return value


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=None,
        help="SQLAlchemy URL (default: $ACTIVELEARN_DB_URL, else sqlite:///data/activelearn.db)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder for caches, stored files and checkpoints "
        "(default: $ACTIVELEARN_DATA_DIR, else beside the SQLite file)",
    )
    parser.add_argument(
        "--once", action="store_true", help="run at most one queued round, then exit"
    )
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between queue checks")
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=DEFAULT_HEARTBEAT_TIMEOUT_S,
        help="a running round without a heartbeat for this long is failed (seconds)",
    )
    parser.add_argument(
        "--idle-exit", type=float, default=None, help="exit after this many idle seconds"
    )
    parser.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="training device"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for training (default: cores - 1)"
    )
    parser.add_argument(
        "--nice",
        type=_niceness,
        default=0,
        help="lower the worker's CPU priority by this much (0-19; the app starts its own at 10 "
        "so that labeling stays responsive while rounds train)",
    )


def _worker_loop() -> ModuleType:
    # torch: loaded by the commands that run rounds, not by every `activelearn` command
    from activelearn.services import worker_loop

    return worker_loop


def cmd_train(args: argparse.Namespace) -> int:
    with Workspace(args.db, data_dir=args.data_dir, create=False) as ws:
        project = ws.only_project(args.project)
        info = project.request_round(requested_by="cli")
        try:
            return _train(ws, project, info, args)
        except KeyboardInterrupt:
            final = _cancel_interrupted(project, info.id)
            print(f"error: interrupted: round {info.id} {final}", file=sys.stderr)
            return 130


def _cancel_interrupted(project: Any, round_id: int) -> str:
    """Ctrl-C during `train --wait`: the round is cancelled, whether it was still queued,
    claimed by this process but not started, or running here; returns its status."""
    project.cancel_round(round_id)
    with_write_retry(
        project.engine,
        lambda s: round_queries.finish_round(
            s,
            round_id,
            # Only a round this process holds. Not through worker_loop: an interrupt during
            # its first import leaves torch half-imported, and a second import fails.
            worker=rounds.worker_name(),
            status=RoundStatus.CANCELLED,
            now=utcnow(),
            error="cancelled (interrupted)",
        ),
    )
    with read_session(project.engine) as session:
        row = round_queries.get_round(session, round_id)
        return row.status if row is not None else "gone"


def _train(ws: Workspace, project: Project, info: RoundInfo, args: argparse.Namespace) -> int:
    print(f"round {info.id} {info.status} for project {project.name!r}")
    if not args.wait:
        if not rounds.worker_alive(ws):
            print("no worker is running: start one with `activelearn worker`")
        return 0
    if info.status == RoundStatus.QUEUED and not rounds.worker_alive(ws):
        # No worker: run this round right here (the same code path as a worker); only
        # this one, not another project's older queued round.
        loop = _worker_loop()
        loop.set_threads(None)
        loop.run_worker(
            loop.WorkerConfig(url=ws.url, data_dir=ws.data_dir, once=True, round_id=info.id)
        )
    last: list[str] = []

    def show(update: Any) -> None:
        line = f"  {update.status} {update.phase} {update.progress:.0%}"
        if not last or last[-1] != line:
            last.append(line)
            print(line, flush=True)

    final = rounds.wait_for_round(project, info.id, timeout_s=args.timeout, on_update=show)
    if final.status == RoundStatus.SUCCEEDED:
        print(f"round {final.id} succeeded on {final.n_labels} labels ({final.device})")
        return 0
    if final.status in (RoundStatus.QUEUED, RoundStatus.RUNNING):  # --timeout passed
        print(f"round {final.id} still {final.status} after {args.timeout:g} s", file=sys.stderr)
        return 0
    print(f"error: round {final.id} {final.status}: {final.error or ''}".rstrip(), file=sys.stderr)
    return 1


def cmd_worker(args: argparse.Namespace) -> int:
    return _worker_loop().run_from_args(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    # torch: imported by the simulate command only, not by every `activelearn` command
    from activelearn.simulate import SimulationConfig, SimulationError, run_cli

    _worker_loop().set_threads(args.threads)

    config = SimulationConfig(
        strategies=tuple(args.strategies or ("bald", "random")),
        init=args.init,
        batch=args.batch,
        budget=args.budget,
        members=args.members,
        epochs=args.epochs,
        batch_size=args.batch_size,
        repeats=args.repeats,
        seed=args.seed,
        device=args.device,
        balanced_init=args.balanced_init,
        first_repeat=args.first_repeat,
        learner=args.learner,
        backbone=args.backbone,
        backbone_weights=args.backbone_weights,
        ssl_epochs=args.ssl_epochs,
    )
    out, keep = args.out, None
    if args.project is not None:
        keep = _project_simulation_file(args)  # fails early on an unknown project
        out = out or str(keep)
    try:
        code = run_cli(
            manifest=args.manifest,
            test_manifest=args.test_manifest,
            demo=args.demo,
            config=config,
            out=out,
            image_size=args.image_size,
            channels=args.channels,
        )
    except SimulationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if keep is not None:
        if str(keep) != out:
            shutil.copyfile(out, keep)
        print(f"results kept for project {args.project!r}: {keep}")
    return code


def _project_simulation_file(args: argparse.Namespace) -> Path:
    with Workspace(args.db, data_dir=args.data_dir, create=False) as ws:
        folder = simulation_dir(ws.project(args.project))
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return folder / f"simulate-{stamp}.csv"
