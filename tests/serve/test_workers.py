"""`cnnkit serve RUN --workers 2` as a user runs it: two processes answer on one port, each with
the model's own answers, and Ctrl+C (SIGINT) stops them all."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serve_helpers import png_bytes

from cnnkit.inference import Predictor

SOURCE = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _multiprocessing_unavailable() -> str | None:
    """Why uvicorn's worker processes cannot start here (no semaphores, as in some sandboxes), or None."""
    try:
        multiprocessing.get_context("spawn").Lock()
    except (ImportError, OSError) as error:
        return f"multiprocessing is unavailable here ({error}): --workers needs it"
    return None


def _wait_ready(url: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"cnnkit serve exited ({process.returncode}): {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"cnnkit serve --workers 2 was not ready within {seconds} s")


def test_two_workers_both_answer_and_stop_cleanly(random_run: Path) -> None:
    if reason := _multiprocessing_unavailable():
        pytest.skip(reason)
    port, image = _free_port(), png_bytes(21)
    expected = Predictor.from_run(random_run).predict(image, top_k=3)[0]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(SOURCE), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", str(random_run), "--port", str(port),
                                "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pids: set[int] = set()
    try:
        _wait_ready(url, process, 60)

        def ask(_: int) -> tuple[int, int, list[str]]:
            headers = {"Connection": "close"}  # a new connection each time: either worker may accept it
            info = httpx.get(f"{url}/info", headers=headers, timeout=30).json()
            answer = httpx.post(f"{url}/predict?top_k=3", headers=headers, timeout=30,
                                files={"file": ("x.png", image, "image/png")})
            return info["pid"], answer.status_code, [p["label"] for p in answer.json()["predictions"]]

        deadline, answers = time.monotonic() + 30, []
        with ThreadPoolExecutor(8) as pool:
            while len(pids) < 2 and time.monotonic() < deadline:
                for pid, status, labels in pool.map(ask, range(16)):
                    pids.add(pid)
                    answers.append((status, labels))
        assert len(pids) == 2, f"only process {pids} answered {len(answers)} requests"
        assert process.pid not in pids, "the supervisor itself must not serve"
        assert all(status == 200 and labels == [c.label for c in expected.top] for status, labels in answers)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            returncode = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    stderr = process.stderr.read().decode()
    assert returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids), "a worker outlived the server"
