"""The background worker process: `python -m activelearn.worker` (the app starts one on demand,
activelearn.services.rounds.ensure_worker). Nothing imports this module; the loop it runs is
activelearn.services.worker_loop, which `activelearn worker` runs as well.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from activelearn.cli_rounds import add_worker_arguments
from activelearn.services.worker_loop import run_from_args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="activelearn-worker", description="Run queued active-learning rounds."
    )
    add_worker_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
