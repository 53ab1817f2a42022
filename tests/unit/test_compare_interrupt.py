"""An interrupted comparison stops asking the LLM at once (``ml.compare_prompted._ask_all``).

SIGTERM or Ctrl-C raises ``KeyboardInterrupt`` in the main thread (``ml.cli.sigterm_as_interrupt``). It must reach the
caller at once, so that the caller stops the llama.cpp server it started: waiting for the requests in flight first
(a minute each for a 5-shot prompt on a CPU, up to ``--llm-timeout``) kept a study's ``nerloop compare`` alive long
after SIGTERM. The queued requests are never sent and no answer is cached half-written. The real server's side (the
server ``nerloop compare`` started is stopped) is ``tests/training/test_compare_cli.py``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from annotation_guide import load_guide
from ml.cli import sigterm_as_interrupt
from ml.compare import CompareOptions
from ml.compare_prompted import _ask_all
from ml.compare_rows import CompareResult, LLMCallError, LLMReply, Tracker

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 40


@pytest.mark.parametrize("concurrency", [1, 3])
def test_an_interrupt_returns_at_once_and_sends_no_queued_request(tmp_path: Path, concurrency: int) -> None:
    guide = load_guide(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")
    result = CompareResult([], {}, [], 0, 0, CompareOptions(concurrency=concurrency, llm_name="fake", progress=False))
    requests = [[{"role": "user", "content": f"text {i}"}] for i in range(REQUESTS)]
    started: list[str] = []
    finished: list[str] = []
    in_flight = threading.Semaphore(0)
    server_stopped = threading.Event()

    def annotate(messages: Sequence[Mapping[str, str]], schema: Mapping[str, Any]) -> LLMReply:
        started.append(messages[0]["content"])
        in_flight.release()
        # the answer takes until the server is stopped, then the request fails as a stopped server's does
        server_stopped.wait(timeout=120)
        finished.append(messages[0]["content"])
        raise LLMCallError("connection refused")

    def terminate_once_all_slots_are_busy() -> None:
        for _ in range(concurrency):
            in_flight.acquire(timeout=120)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)  # `kill PID`, `timeout`, a supervisor

    trigger = threading.Thread(target=terminate_once_all_slots_are_busy)
    trigger.start()
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
            _ask_all(result, requests, guide, annotate, cache=tmp_path, what="test", tracker=Tracker(1, None))
        # _ask_all gave the interrupt back at once, its requests in flight still blocked: the caller can now stop
        # the server (waiting for them first kept a study's `nerloop compare` alive for minutes after SIGTERM)
        assert (len(started), finished) == (concurrency, [])
    finally:
        server_stopped.set()
        trigger.join(timeout=120)
    # the workers drain: the in-flight requests fail, no queued one is sent, and no answer file is left
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and thread.name.startswith("ThreadPoolExecutor"):
            thread.join(timeout=120)
    assert len(started) == len(finished) == concurrency
    assert not list(tmp_path.rglob("*.json"))
    assert not list(tmp_path.rglob("*.partial"))
