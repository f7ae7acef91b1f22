"""A real `streamlit run app.py` on 127.0.0.1 and Debian's Chromium: what the browser tests, the
crash test and benchmarks/label_latency.py share. No pytest here (the benchmark imports it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IMAGE = ".st-key-label_image img"
NEXT_IMAGE_JS = """old => {
  const img = document.querySelector('.st-key-label_image img');
  return img !== null && img.src !== old && img.complete && img.naturalWidth > 0;
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health in {timeout_s:.0f} s")


def start_app(
    db_url: str,
    data_dir: Path,
    *,
    log: IO[bytes] | int = subprocess.DEVNULL,
    timeout_s: float = 90,
    import_roots: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """`streamlit run app.py` on a free port of 127.0.0.1 over `db_url`; (process, url) once it
    answers its health check. `import_roots`: where the setup page may import from by path."""
    port = free_port()
    env = {**os.environ, "ACTIVELEARN_DB_URL": db_url, "ACTIVELEARN_DATA_DIR": str(data_dir)}
    if import_roots is not None:
        env["ACTIVELEARN_IMPORT_ROOTS"] = str(import_roots)
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, timeout_s)
    except BaseException:
        process.kill()
        raise
    return process, url


def sign_in(page: object, annotator: str) -> None:
    """Type the annotator's name into the who-is-labeling form and start; a sample on screen."""
    page.locator(".st-key-annotator_name input").fill(annotator)  # type: ignore[attr-defined]
    page.locator(".st-key-annotator_start button").click()  # type: ignore[attr-defined]
    page.wait_for_selector(IMAGE)  # type: ignore[attr-defined]
