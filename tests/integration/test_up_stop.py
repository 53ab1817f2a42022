"""``nerloop up``'s stop, on real processes that handle signals as a Celery worker's main process does.

SIGTERM first (warm), SIGQUIT after the stop timeout or at a second Ctrl-C (cold), never a signal to the worker's
children, and a kill only for what is still there at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workers import up

pytestmark = pytest.mark.integration

# A worker's main process: notes each signal; a warm shutdown waits for its "job" (forever here), a cold one exits.
# Its child (a pool process) notes any signal it gets.
WORKER = """
import os, signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
child = os.fork()
if child == 0:
    for s in (signal.SIGTERM, signal.SIGQUIT):
        signal.signal(s, lambda n, f: log.write(f"child {signal.Signals(n).name}\\n"))
    while True:
        time.sleep(0.1)
signal.signal(signal.SIGTERM, lambda n, f: log.write("main SIGTERM\\n"))
def cold(n, f):
    log.write("main SIGQUIT\\n")
    os.kill(child, signal.SIGKILL)
    sys.exit(0)
signal.signal(signal.SIGQUIT, cold)
log.write("ready\\n")
while True:
    time.sleep(0.1)
"""


def _worker(cfg: up.UpConfig, tmp_path: Path, name: str) -> Path:
    log = tmp_path / f"{name}.signals"
    process = subprocess.Popen([sys.executable, "-c", WORKER, str(log)], start_new_session=True)
    cfg.services.append(up.Service(name, process, log, worker=True))
    deadline = time.monotonic() + 30
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the stand-in worker did not start"
        time.sleep(0.05)
    return log


def test_workers_get_sigterm_on_the_main_process_then_sigquit_after_the_timeout(tmp_path: Path) -> None:
    cfg = up.UpConfig(home=tmp_path, guide=tmp_path / "g.yaml", tasks=None, stop_timeout_s=1)
    logs = [_worker(cfg, tmp_path, "worker-a"), _worker(cfg, tmp_path, "worker-b")]
    said: list[str] = []
    up.stop_all(cfg, said.append)
    for log in logs:
        assert log.read_text().splitlines() == ["ready", "main SIGTERM", "main SIGQUIT"]  # never the child
    assert all(s.process.poll() == 0 for s in cfg.services)
    assert said[-1] == "stopped", said
    assert any("cancelling the jobs of worker-a, worker-b" in m for m in said), said


def test_a_second_ctrl_c_cancels_the_jobs_at_once(tmp_path: Path) -> None:
    cfg = up.UpConfig(home=tmp_path, guide=tmp_path / "g.yaml", tasks=None, stop_timeout_s=600)
    log = _worker(cfg, tmp_path, "worker-a")
    # what SIGINT did before the stop: Python's KeyboardInterrupt, or SIG_IGN when the test run was started in the
    # background by a non-interactive shell (which makes its jobs ignore SIGINT); the stop must give back either
    before = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))  # the user's second Ctrl-C
    timer.start()
    started = time.monotonic()
    up.stop_all(cfg, lambda message: None)
    timer.join()
    assert log.read_text().splitlines() == ["ready", "main SIGTERM", "main SIGQUIT"]
    assert time.monotonic() - started < 300, "the stop waited out the stop timeout"
    assert signal.getsignal(signal.SIGINT) is before  # restored after the stop
