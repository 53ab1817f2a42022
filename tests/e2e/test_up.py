"""``nerloop up`` end to end: start, create the project, print the token, stop.

The whole loop starts on embedded defaults, creates its project, prints the API token, and stops cleanly on SIGTERM
(workers first, warm; nothing stranded in the broker).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import free_port
from tests.e2e.conftest import E2E_REDIS_URL
from workers.celery_app import POOLS

pytestmark = pytest.mark.e2e
NERLOOP = str(Path(sys.executable).parent / "nerloop")


def _in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if process.poll() is not None:
            pytest.fail(f"nerloop up exited with {process.returncode} before printing {text!r}")
        time.sleep(1)
    pytest.fail(f"nerloop up did not print {text!r} within {timeout:.0f} s")


def test_up_starts_everything_prints_the_token_and_stops_cleanly(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"text": f"Sentence {i} about Paris ."}) + "\n" for i in range(10)))
    ports = [free_port(), free_port(), free_port()]
    state = tmp_path / "state"
    broker = redis.Redis.from_url(E2E_REDIS_URL)
    broker.flushdb()
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        up = subprocess.Popen(
            [
                *(NERLOOP, "up", "--home", str(state), "--tasks", str(tasks), "--stop-timeout", "10"),
                *("--ls-port", str(ports[0]), "--backend-port", str(ports[1]), "--llm-port", str(ports[2])),
            ],
            env={**os.environ, "NER_REDIS_URL": E2E_REDIS_URL},
            stdout=stdout,
            stderr=stderr,
        )
    try:
        banner = _wait_for(out, "Ctrl-C stops everything", up, 900)
        progress = err.read_text()
        assert "the LLM answered its first completion" in progress, progress
        assert "Label Studio is up" in progress
        assert "the backend is up" in progress
        assert "workers are ready" in progress
        assert "about 40 s" not in progress
        project = json.loads((state / "project.json").read_text())
        assert "10 tasks" in project["summary"]
        assert f"dashboard:    http://127.0.0.1:{ports[1]}/dashboard" in banner

        # the printed token is the one Label Studio's API (and SDK) takes, and `nerloop token` prints it too
        match = re.search(r"API token:\s+(\S+)", banner)
        assert match is not None, banner
        token = match[1]
        projects = httpx.get(
            f"http://127.0.0.1:{ports[0]}/api/projects", headers={"Authorization": f"Token {token}"}, timeout=30
        )
        assert projects.status_code == 200, projects.text
        assert projects.json()["count"] == 1, projects.text
        printed = subprocess.run(
            [NERLOOP, "token", "--home", str(state)], capture_output=True, text=True, timeout=120, check=True
        )
        assert printed.stdout.strip() == token
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=300)
    stopping = err.read_text()
    assert code == 0, stopping[-3000:]
    assert "stopping the workers" in stopping, stopping[-2000:]
    assert stopping.rstrip().endswith("stopped"), stopping[-2000:]
    for queue, _ in POOLS:
        log = (state / "logs" / f"worker-{queue}.log").read_text()
        assert "Warm shutdown" in log, log[-2000:]  # SIGTERM reached the worker's main process
        assert "WorkerLostError" not in log, log[-3000:]  # ... and never a pool child
    # no message stranded as unacknowledged: what a worker held is either done or back in its queue
    assert broker.hlen("unacked") == 0
    assert not any(_in_use(p) for p in ports)  # everything it started is stopped
    broker.flushdb()
