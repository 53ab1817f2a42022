"""A training yields the CPU to the backend (issue #10, part 6).

A real ``nerloop worker`` serving only ``train`` runs, with its pool's processes, at ``workers.cli.TRAIN_NICE``; a
worker of the other queues at the niceness it was started with; ``--nice`` sets it explicitly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import stop_process
from tests.integration.conftest import wait_until
from workers.cli import TRAIN_NICE

pytestmark = pytest.mark.integration
NERLOOP = str(Path(sys.executable).parent / "nerloop")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--queues", "train"], TRAIN_NICE), (["--queues", "score"], 0), (["--queues", "score", "--nice", "5"], 5)],
)
def test_worker_niceness(args: list[str], expected: int, redis_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NER_DATABASE_URL": f"sqlite:///{tmp_path / 'nerloop.db'}",
        "NER_REDIS_URL": redis_url,
        "NER_MODEL_ROOT": str(tmp_path / "models"),
    }
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [NERLOOP, "worker", *args, "--concurrency", "2", "--hostname", f"nice-{expected}@%h"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "ready" in log.read_text(), 120, f"the worker did not start; see {log}")
        wait_until(lambda: len(_children(worker.pid)) >= 2, 60, "the worker's pool did not start")
        base = os.getpriority(os.PRIO_PROCESS, 0)  # the test's own niceness: the worker adds to it
        processes = [worker.pid, *_children(worker.pid)]
        assert [os.getpriority(os.PRIO_PROCESS, p) - base for p in processes] == [expected] * len(processes)
    finally:
        stop_process(worker)
