"""Key-press-to-next-image latency of the label page, measured in a real Chromium.

Starts `streamlit run app.py` on 127.0.0.1 over a fresh database, types a name, then presses class
keys and times each press until the next sample's image is in the page and decoded. Prints the
median, p95 and max in milliseconds.

    .venv/bin/python benchmarks/label_latency.py                    # the 5,000-digit demo project
    .venv/bin/python benchmarks/label_latency.py --pool 100000      # plus a 100,000-image pool

Needs Debian's chromium at /usr/bin/chromium (never `playwright install`).
By default automatic retraining is switched off so that a background round does not share the
CPU with the measurement; the queue path measured is the cold-start order (no round has run).
`--retrain-every N` keeps it on (N labels between rounds; the default learner, so the
representation stage runs first): the figure while rounds run as annotators label.

    .venv/bin/python benchmarks/label_latency.py --retrain-every 1   # a round after every label

`--backbone ssl` makes the representation stage train a contrastive encoder (minutes on this CPU)
instead of the default HOG features (seconds), so the presses are measured while it trains; the
end of the run says which representation jobs were still running.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activelearn import Workspace, paths  # noqa: E402
from tests.browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    IMAGE,
    NEXT_IMAGE_JS,
    sign_in,
    start_app,
)


def write_pool(folder: Path, count: int, *, seed: int = 0) -> None:
    """`count` distinct 28x28 grayscale PNGs (seeded noise), written once per folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        path = folder / f"img{index:06d}.png"
        if path.exists():
            continue
        array = rng.integers(0, 256, size=(28, 28), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array, mode="L").save(buffer, format="PNG", compress_level=1)
        path.write_bytes(buffer.getvalue())


def prepare(data: Path, pool: int, retrain_every: int = 0, backbone: str | None = None) -> str:
    """Create the database; returns the project's name."""
    workspace = Workspace(f"sqlite:///{data / 'al.db'}", data_dir=data / "data")
    try:
        if pool == 0:
            project = workspace.ensure_demo()
        else:
            started = time.perf_counter()
            write_pool(data / "pool", pool)
            project = workspace.create_project(
                "pool", [str(digit) for digit in range(10)], settings={"audit_share": 0.0}
            )
            report = project.import_images(data / "pool")
            took = time.perf_counter() - started
            print(f"imported {len(report.accepted):,} images in {took:.0f} s", flush=True)
        extra = {"backbone": backbone} if backbone else {}
        project.update_settings(retrain_every=retrain_every, **extra)
        return project.name
    finally:
        workspace.close()


def measure(url: str, presses: int, warmup: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    keys = [*"0123456789"]
    rng = random.Random(0)
    timings: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(url)
        sign_in(page, "bench")
        for index in range(warmup + presses):
            old = page.locator(IMAGE).get_attribute("src")
            started = time.perf_counter()
            page.keyboard.press(rng.choice(keys))
            page.wait_for_function(NEXT_IMAGE_JS, arg=old, polling="raf", timeout=30_000)
            elapsed = (time.perf_counter() - started) * 1000
            if index >= warmup:
                timings.append(elapsed)
            # A person looks at the image before pressing the next key; the page settles.
            time.sleep(0.15)
        browser.close()
    return timings


def stop_worker(data_dir: Path) -> None:
    """The app's background worker outlives the server: stop it before its folder goes."""
    pid_path = paths.pid_file(data_dir)
    try:
        pid = int(pid_path.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)


def report(name: str, timings: list[float]) -> None:
    ordered = sorted(timings)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(
        f"| {name} | {len(ordered)} | {statistics.median(ordered):.0f} | {p95:.0f} | "
        f"{ordered[-1]:.0f} |",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=0, help="synthetic pool size; 0: the demo")
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="reuse this folder (no cleanup)")
    parser.add_argument(
        "--retrain-every", type=int, default=0, help="labels between automatic rounds (0: off)"
    )
    parser.add_argument("--backbone", default=None, help="the project's backbone (default: hog)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="al-latency-") as scratch:
        data = args.keep or Path(scratch)
        data.mkdir(parents=True, exist_ok=True)
        project = prepare(data, args.pool, args.retrain_every, args.backbone)
        server, url = start_app(f"sqlite:///{data / 'al.db'}", data / "data", timeout_s=60)
        try:
            timings = measure(url, args.presses, args.warmup)
            # Read before the worker is stopped (a stopped worker puts its job back in the queue).
            with Workspace(f"sqlite:///{data / 'al.db'}", data_dir=data / "data") as workspace:
                rounds = workspace.project(project).rounds()
                status = workspace.project(project).representation_status()
        finally:
            server.terminate()
            server.wait(timeout=20)
            stop_worker(data / "data")
        print("| pool | presses | median ms | p95 ms | max ms |")
        print("|---|---|---|---|---|")
        label = "demo (4,000 pool)" if args.pool == 0 else f"{args.pool:,} pool ({project})"
        if args.retrain_every:
            label += f", a round every {args.retrain_every} label(s)"
        if args.backbone:
            label += f", backbone {args.backbone}"
        report(label, timings)
        done = [r for r in rounds if r.status == "succeeded"]
        print(f"rounds: {len(rounds)} requested, {len(done)} succeeded during the run")
        latest = status.latest
        if latest is not None:
            print(f"representation job {latest.id} at the end: {latest.status} ({latest.phase})")
        print("(removing the temporary folder...)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
