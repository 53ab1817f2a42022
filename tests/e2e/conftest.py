"""A real Label Studio 1.23 (its own virtual environment, .venv-ls) and the real backend over HTTP."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.api.app import create_app
from backend.db.session import upgrade
from backend.settings import LabelStudioSettings, LLMSettings, Settings
from tests.conftest import ROOT, free_port, serve_in_thread, stop_process, wait_for_http
from workers.up import label_studio_env

LS_BIN = Path(os.environ.get("NERLOOP_LABEL_STUDIO_BIN", ROOT / ".venv-ls" / "bin" / "label-studio"))
TOKEN = "nerloop-e2e-token-0123456789"
# the e2e tests empty this Redis database: one per concurrent test run
E2E_REDIS_URL = os.environ.get("NERLOOP_TEST_REDIS_E2E", "redis://127.0.0.1:6379/14")


@dataclass(frozen=True)
class LabelStudioServer:
    url: str
    token: str


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """Label Studio on 127.0.0.1 with a fresh SQLite database, offline, stopped after the session."""
    if not LS_BIN.exists():
        pytest.fail(f"Label Studio is not installed at {LS_BIN}: run scripts/install-label-studio.sh")
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {
        **label_studio_env(
            data_dir=data,
            port=port,
            username="e2e@nerloop.dev",
            password="nerloop-e2e-pw",
            token=TOKEN,
            secret="nerloop-e2e-secret",
        ),
        "HOME": str(data),
    }
    log = (data / "label-studio.log").open("w")
    process = subprocess.Popen(
        [str(LS_BIN), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(process, f"{url}/health", timeout=600, what="Label Studio", log=log.name)  # migrates first
        yield LabelStudioServer(url, TOKEN)
    finally:
        stop_process(process, 30)
        log.close()


@dataclass(frozen=True)
class BackendServer:
    url: str
    settings: Settings


@pytest.fixture
def backend_server(label_studio: LabelStudioServer, llama_server: str, tmp_path: Path) -> Iterator[BackendServer]:
    """The real backend (uvicorn, 127.0.0.1) on a fresh SQLite file, talking to the real llama.cpp server."""
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'nerloop.db'}",
        redis_url=E2E_REDIS_URL,
        backend_url=f"http://127.0.0.1:{port}",
        model_root=tmp_path / "models",
        label_studio=LabelStudioSettings(url=label_studio.url, api_key=label_studio.token),  # type: ignore[arg-type]
        # the tiny model on a machine shared with other jobs: /predict waits for it rather than answer without it
        llm=LLMSettings(base_url=llama_server, max_tokens=120, demonstrations=1, concurrency=2, predict_wait_s=150),
    )
    upgrade(settings.database_url)
    with serve_in_thread(create_app(settings), port=port):
        yield BackendServer(settings.backend_url, settings)
