"""An unexpected error answers 500 and closes the connection openly.

Then a keep-alive client never sends its next request on a connection the server is closing (bench/RESULTS.md,
"Connections closed without a reply").
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from backend.api import errors
from tests.conftest import serve_in_thread

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

    with (
        serve_in_thread(app, log_level="critical") as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,  # one kept-alive connection
    ):
        replies = [client.get("/flaky") for _ in range(30)]
    statuses = [r.status_code for r in replies]
    # no request lost
    assert statuses.count(500) == 10
    assert statuses.count(200) == 20
    failed = [r for r in replies if r.status_code == 500]
    assert all(r.headers["connection"] == "close" and "internal error" in r.json()["error"] for r in failed)
