"""An unexpected error answers 500 and closes the connection openly, so a keep-alive client never sends its next
request on a connection the server is closing (bench/RESULTS.md, "Connections closed without a reply")."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from backend.api import errors
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_every_request_after_a_500_on_a_kept_alive_connection_is_answered() -> None:
    app = FastAPI()
    errors.install(app)
    calls = [0]

    @app.get("/flaky")
    def flaky() -> dict[str, int]:
        calls[0] += 1
        if calls[0] % 3 == 0:
            raise RuntimeError("a bug")
        return {"call": calls[0]}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:  # one kept-alive connection
            replies = [client.get("/flaky") for _ in range(30)]
    finally:
        server.should_exit = True
        thread.join(10)
    statuses = [r.status_code for r in replies]
    assert statuses.count(500) == 10 and statuses.count(200) == 20  # no request lost
    failed = [r for r in replies if r.status_code == 500]
    assert all(r.headers["connection"] == "close" and "internal error" in r.json()["error"] for r in failed)
