"""``nerloop serve`` with ``NER_SERVE_PROCESSES``: several server processes on one port (issue #10, part 6).

One interpreter serves about one core; a webhook burst beside a training is bound by it (bench/RESULTS.md, webhook
burst). The real command as a subprocess on 127.0.0.1, stopped by the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import alive, child_pids, command_line, free_port
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("processes", [1, 2])
def test_serve_runs_the_configured_number_of_server_processes(processes: int, tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
    env |= {
        "NER_DATABASE_URL": f"sqlite:///{tmp_path / 'nerloop.db'}",
        "NER_REDIS_URL": redis_url,
        "NER_MODEL_ROOT": str(tmp_path / "models"),
        "NER_SERVE_PROCESSES": str(processes),
    }
    nerloop = Path(sys.executable).with_name("nerloop")
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [str(nerloop), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/health"

    def healthy() -> bool:
        assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=300, message=lambda: (tmp_path / "serve.log").read_text()[-3000:])
        # uvicorn's workers are the serve process's children, started by multiprocessing's spawn (one process: it
        # serves itself, no child)
        workers = [pid for pid in child_pids(serve.pid) if "spawn_main" in command_line(pid)]
        assert len(workers) == (0 if processes == 1 else processes), workers
        for _ in range(20):  # each on a new connection, as Label Studio sends webhooks
            assert httpx.get(url, timeout=30, headers={"connection": "close"}).status_code == 200
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=120)
        wait_until(lambda: not any(alive(pid) for pid in workers), 60, "a worker outlived serve")
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        log.close()
