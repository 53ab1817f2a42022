"""``nerloop up``: the whole loop starts on embedded defaults, creates its project, and stops cleanly."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e


def _in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_starts_everything_and_creates_the_project(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"text": f"Sentence {i} about Paris ."}) + "\n" for i in range(10)))
    ports = [free_port(), free_port(), free_port()]
    nerloop = str(Path(sys.executable).parent / "nerloop")
    run = subprocess.run(
        [
            nerloop,
            "up",
            "--home",
            str(tmp_path / "state"),
            "--tasks",
            str(tasks),
            "--ls-port",
            str(ports[0]),
            "--backend-port",
            str(ports[1]),
            "--llm-port",
            str(ports[2]),
            "--exit-after-setup",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Label Studio is up" in run.stderr and "the backend is up" in run.stderr
    project = json.loads((tmp_path / "state" / "project.json").read_text())
    assert "10 tasks" in project["summary"]
    assert f"http://127.0.0.1:{ports[0]}" in run.stdout
    assert f"dashboard:    http://127.0.0.1:{ports[1]}/dashboard" in run.stdout
    assert not any(_in_use(p) for p in ports)  # everything it started is stopped
