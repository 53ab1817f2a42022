"""``nerloop up``: the whole loop on one machine with embedded defaults.

Label Studio (its own venv), the llama.cpp server (tiny SmolLM2 unless told otherwise), the backend and one
Celery worker per queue group (``workers.celery_app.POOLS``), all on 127.0.0.1, state under one folder (SQLite
database, models, logs, Label Studio data, generated credentials), and a demo project created from a guide the
first time. httpx and redis are imported inside the functions that use them (the CLI starts without them).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import UpstreamError
from workers.celery_app import POOLS

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class UpConfig:
    """Where everything lives and listens."""

    home: Path
    guide: Path
    tasks: Path | None
    task_limit: int = 0  # the demo imports 300 of CoNLL's sentences; a user's own file is imported whole
    ls_port: int = 8080
    backend_port: int = 9090
    llm_port: int = 8081
    llm_model: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    ls_bin: Path = ROOT / ".venv-ls" / "bin" / "label-studio"
    stop_timeout_s: float = 30.0
    services: list[Service] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)  # what progress messages count from


@dataclass(frozen=True)
class Service:
    """One started process: its name (``logs/<name>.log``) and whether it is a Celery worker."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    worker: bool = False
    log_offset: int = 0  # the log's size when the process started (the log of an earlier start comes before)

    def output(self) -> str:
        """What the process wrote to its log since it started."""
        with self.log.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")


LLM_ALIAS = "local"  # `nerloop llm serve --model_alias`, NER_LLM__MODEL's default


def _secret(path: Path, length: int = 24) -> str:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(length))
        path.chmod(0o600)
    return path.read_text().strip()


def api_token(home: Path) -> str:
    """The Label Studio API token of the deployment in ``home`` (made on its first ``nerloop up``).

    What the Label Studio SDK takes as ``api_key`` and the REST API as ``Authorization: Token <token>``.
    """
    return _secret(home / "label-studio-token")


def database_url(home: Path) -> str:
    """The deployment's database: a SQLite file in the state folder."""
    return f"sqlite:///{home / 'nerloop.db'}"


def retrain_thresholds(home: Path) -> list[tuple[str, int]]:
    """Each project of the deployment in ``home``, oldest first.

    Its name and its own retrain threshold (label changes between retrains), which the
    ``NER_RETRAIN_EVERY_N_LABEL_CHANGES`` of a later start does not change.

    Raises:
        sqlalchemy.exc.DBAPIError: the database cannot be read (``nerloop up`` has not made it yet).
    """
    from sqlalchemy import select

    from backend.db.models import Project
    from backend.db.session import make_engine, session_factory

    engine = make_engine(database_url(home))
    try:
        with session_factory(engine)() as db:
            return [(p.name, p.retrain_threshold) for p in db.scalars(select(Project).order_by(Project.id))]
    finally:
        engine.dispose()


def nerloop_env(cfg: UpConfig) -> dict[str, str]:
    """The ``NER_*`` settings every nerloop process of this deployment gets."""
    token = api_token(cfg.home)
    return {
        **os.environ,
        "NER_DATABASE_URL": database_url(cfg.home),
        "NER_MODEL_ROOT": str(cfg.home / "models"),
        "NER_REDIS_URL": cfg.redis_url,
        "NER_BACKEND_URL": f"http://127.0.0.1:{cfg.backend_port}",
        "NER_LLM__BASE_URL": f"http://127.0.0.1:{cfg.llm_port}/v1",
        "NER_LABEL_STUDIO__URL": f"http://127.0.0.1:{cfg.ls_port}",
        "NER_LABEL_STUDIO__API_KEY": token,
    }


def label_studio_env(
    *, data_dir: Path, port: int, username: str, password: str, token: str, secret: str
) -> dict[str, str]:
    """The environment of a headless, offline Label Studio on 127.0.0.1 that accepts a local ML backend.

    See ../shared/docs/label-studio.md. Stray HOST/PORT/USERNAME/PASSWORD variables are left out (Label Studio reads
    them).
    """
    keep = {k: v for k, v in os.environ.items() if k not in {"HOST", "PORT", "USERNAME", "PASSWORD"}}
    return {
        **keep,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
        "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_SENTRY_DSN": "",
        "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_HOST": f"http://127.0.0.1:{port}",
        "SECRET_KEY": secret,
    }


def _label_studio_env(cfg: UpConfig) -> dict[str, str]:
    return label_studio_env(
        data_dir=cfg.home / "label-studio",
        port=cfg.ls_port,
        username="admin@nerloop.local",
        password=_secret(cfg.home / "label-studio-password", 12),
        token=api_token(cfg.home),
        secret=_secret(cfg.home / "label-studio-secret"),
    )


def worker_commands(nerloop: str) -> list[tuple[str, list[str]]]:
    """``(name, argv)`` of the Celery workers.

    One per queue group of ``POOLS``, each its own process with its own concurrency and node name, so that a long LLM
    pass or a training never holds up another queue's jobs.
    """
    return [
        (
            f"worker-{queue}",
            [nerloop, "worker", "--queues", queue, "--concurrency", str(n), "--hostname", f"{queue}@%h"],
        )
        for queue, n in POOLS
    ]


def _start(cfg: UpConfig, name: str, command: list[str], env: dict[str, str], *, worker: bool = False) -> None:
    path = cfg.home / "logs" / f"{name}.log"
    with path.open("ab") as log:  # the child keeps its own descriptor
        offset = log.tell()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cfg.services.append(Service(name, process, path, worker, offset))


def check_running(cfg: UpConfig) -> None:
    """Raise :class:`UpstreamError` naming the first started process that has exited, and its log."""
    for service in cfg.services:
        if service.process.poll() is not None:
            raise UpstreamError(f"{service.name} stopped (exit code {service.process.returncode}); see {service.log}")


class _Waiting:
    """Says what is awaited, every ``every_s`` seconds, while ``nerloop up`` polls for it.

    Each line gives the seconds since ``nerloop up`` started its processes.
    """

    def __init__(self, what: str, cfg: UpConfig, say: Callable[[str], None], every_s: float = 15.0) -> None:
        self.what, self.cfg, self.say, self.every_s = what, cfg, say, every_s
        self.started = self.last = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds of this wait."""
        return time.monotonic() - self.started

    @property
    def since_start(self) -> str:
        return f"{time.monotonic() - self.cfg.started_at:.0f} s since start"

    def tick(self) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            self.say(f"still waiting for {self.what} ({self.since_start})")


def _wait_http(url: str, what: str, cfg: UpConfig, timeout: float, say: Callable[[str], None]) -> None:
    import httpx

    waiting = _Waiting(what, cfg, say)
    while waiting.elapsed < timeout:
        check_running(cfg)
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                say(f"{what} is up at {url.rsplit('/', 1)[0]} ({waiting.since_start})")
                return
        except httpx.HTTPError:
            pass
        waiting.tick()
        time.sleep(1)
    raise UpstreamError(f"{what} did not answer {url} within {timeout:.0f} s; see {cfg.home / 'logs'}")


def warm_llm(base_url: str, *, timeout: float, say: Callable[[str], None]) -> float:
    """Ask the OpenAI-compatible server at ``base_url`` (``.../v1``) for one real completion.

    Then the first annotator's request does not pay for loading the model into memory (80 s on the 1.5B model, issue
    #11).

    Returns:
        Seconds the completion took.

    Raises:
        UpstreamError: The server answered with an error or not within ``timeout`` seconds.
    """
    import httpx

    say("warming up the LLM: one completion (the first one loads the model) ...")
    started = time.monotonic()
    body = {"model": LLM_ALIAS, "messages": [{"role": "user", "content": "Reply with OK."}], "max_tokens": 4}
    try:
        reply = httpx.post(f"{base_url}/chat/completions", json=body, timeout=timeout)
        reply.raise_for_status()
        reply.json()["choices"][0]["message"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
        raise UpstreamError(f"the LLM server at {base_url} gave no completion: {exc}") from None
    elapsed = time.monotonic() - started
    say(f"the LLM answered its first completion in {elapsed:.1f} s")
    return elapsed


def start_workers(cfg: UpConfig, env: dict[str, str]) -> None:
    """Start the Celery workers of :func:`worker_commands` with ``env``, logging to ``<home>/logs/<name>.log``."""
    (cfg.home / "logs").mkdir(parents=True, exist_ok=True)
    for name, command in worker_commands(str(Path(sys.executable).parent / "nerloop")):
        _start(cfg, name, command, env, worker=True)


def wait_workers(cfg: UpConfig, timeout: float, say: Callable[[str], None]) -> None:
    """Wait until every started Celery worker's log says it is ready (after its sweep and connecting to Redis).

    Raises:
        UpstreamError: A started process stopped, or a worker was not ready within ``timeout`` seconds.
    """
    pending = {s.name: s for s in cfg.services if s.worker}
    waiting = _Waiting(f"the workers ({', '.join(pending)})", cfg, say)
    while pending and waiting.elapsed < timeout:
        check_running(cfg)
        for name, service in list(pending.items()):
            if " ready." in service.output():
                del pending[name]
        waiting.what = f"the workers ({', '.join(pending)})"
        waiting.tick()
        time.sleep(1)
    if pending:
        raise UpstreamError(f"{', '.join(pending)} did not get ready within {timeout:.0f} s; see {cfg.home / 'logs'}")
    say(f"the workers are ready ({', '.join(f'{q} x{n}' for q, n in POOLS)}; {waiting.since_start})")


def start_all(cfg: UpConfig, say: Callable[[str], None]) -> None:
    """Start Label Studio, the LLM server, the backend and the workers.

    Return when all answer and the LLM has given one completion.

    Raises:
        UpstreamError: Redis is unreachable, Label Studio is not installed, or a process stopped or did not
            answer in time (the message names its log).
    """
    import redis

    (cfg.home / "logs").mkdir(parents=True, exist_ok=True)
    try:
        redis.Redis.from_url(cfg.redis_url).ping()
    except redis.RedisError as exc:
        raise UpstreamError(f"Redis at {cfg.redis_url} is not reachable ({exc}); start it (see README)") from None
    if not cfg.ls_bin.exists():
        raise UpstreamError(f"Label Studio is not installed at {cfg.ls_bin}: run scripts/install-label-studio.sh")
    nerloop = str(Path(sys.executable).parent / "nerloop")
    env = nerloop_env(cfg)
    subprocess.run([nerloop, "db", "upgrade"], env=env, check=True, capture_output=True)
    cfg.started_at = time.monotonic()
    say(f"starting Label Studio, the LLM server, the backend and {len(POOLS)} workers (logs in {cfg.home / 'logs'})")
    ls = [str(cfg.ls_bin), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(cfg.ls_port)]
    _start(cfg, "label-studio", ls, _label_studio_env(cfg))
    llm = [nerloop, "llm", "serve", "--port", str(cfg.llm_port)] + (["--model", cfg.llm_model] if cfg.llm_model else [])
    _start(cfg, "llm", llm, env)
    _start(cfg, "backend", [nerloop, "serve", "--port", str(cfg.backend_port)], env)
    start_workers(cfg, env)
    llm_url = f"http://127.0.0.1:{cfg.llm_port}/v1"
    _wait_http(f"{llm_url}/models", "the LLM server", cfg, 300, say)
    warm_llm(llm_url, timeout=600, say=say)
    _wait_http(f"http://127.0.0.1:{cfg.backend_port}/health", "the backend", cfg, 300, say)
    wait_workers(cfg, 300, say)
    _wait_http(f"http://127.0.0.1:{cfg.ls_port}/health", "Label Studio", cfg, 900, say)


def bootstrap(cfg: UpConfig, say: Callable[[str], None]) -> None:
    """Create the demo project the first time (the state folder remembers it)."""
    marker = cfg.home / "project.json"
    if marker.exists():
        say(f"project already created: {json.loads(marker.read_text())['summary']}")
        return
    if cfg.tasks is None:
        raise UpstreamError("no --tasks given and no CoNLL data found to make demo tasks from")
    nerloop = str(Path(sys.executable).parent / "nerloop")
    limit = ["--limit", str(cfg.task_limit)] if cfg.task_limit else []
    say("creating the project in Label Studio ...")
    run = subprocess.run(
        [nerloop, "project", "create", "--guide", str(cfg.guide), "--tasks", str(cfg.tasks), *limit],
        env=nerloop_env(cfg),
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise UpstreamError(f"project create failed: {run.stderr.strip()}")
    marker.write_text(json.dumps({"summary": run.stdout.strip()}))
    say(run.stdout.strip())


def _signal(service: Service, signum: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(service.process.pid, signum)  # start_new_session: its group id is its pid
        else:
            service.process.send_signal(signum)
    except ProcessLookupError:
        pass


class _Hurry:
    """While the stop runs, Ctrl-C (SIGINT) and SIGTERM cut the current wait short instead of raising.

    The stop goes on to its next step, never leaving processes behind (outside the main thread, no handler is set).
    """

    def __init__(self) -> None:
        self.asked = False
        self.previous: dict[int, object] = {}

    def __enter__(self) -> _Hurry:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: object) -> None:
        self.asked = True

    def wait_exit(self, services: Sequence[Service], timeout: float) -> list[Service]:
        """Poll until each of ``services`` has exited, ``timeout`` seconds passed or a signal asked to hurry.

        Return those still running.
        """
        deadline = time.monotonic() + timeout
        self.asked = False
        while time.monotonic() < deadline and not self.asked and any(s.process.poll() is None for s in services):
            time.sleep(0.2)
        return [s for s in services if s.process.poll() is None]


def stop_all(cfg: UpConfig, say: Callable[[str], None]) -> None:
    """Stop every started process: the workers first, then the servers they use.

    Workers get a warm shutdown: SIGTERM to each worker's main process only (never to its pool's children, whose
    death mid-task is a ``WorkerLostError``); they finish their current jobs. After ``cfg.stop_timeout_s`` (or at
    a second Ctrl-C) a cold shutdown (SIGQUIT) cancels what still runs: the messages of jobs acknowledged late
    (retrain checks, rescoring, LLM passes) go back to their queues as the worker disconnects, and a restart
    resumes them (an LLM pass continues after its last committed task). A training is acknowledged when it starts:
    cancelled, its run is failed by the next sweep (no heartbeat) and runs again at the next label event or
    ``nerloop retrain``. Queued messages stay in Redis; the sweep re-sends what Redis lost. Whatever is left is
    killed with its process group.
    """
    with _Hurry() as hurry:
        _stop(cfg, say, hurry)
    say("stopped")


def _stop(cfg: UpConfig, say: Callable[[str], None], hurry: _Hurry) -> None:
    workers = [s for s in cfg.services if s.worker and s.process.poll() is None]
    if workers:
        say(
            f"stopping the workers: they finish their current jobs (up to {cfg.stop_timeout_s:.0f} s; "
            "Ctrl-C again cancels them now) ..."
        )
        for service in workers:
            _signal(service, signal.SIGTERM, group=False)
        left = hurry.wait_exit(workers, cfg.stop_timeout_s)
        if left:
            say(f"cancelling the jobs of {', '.join(s.name for s in left)}: they go back to their queues")
            for service in left:
                _signal(service, signal.SIGQUIT, group=False)
            hurry.wait_exit(left, 30)
    servers = [s for s in reversed(cfg.services) if not s.worker]
    for service in servers:
        if service.process.poll() is None:
            _signal(service, signal.SIGTERM, group=True)
    hurry.wait_exit(servers, 30)
    for service in cfg.services:
        if service.process.poll() is None:
            say(f"{service.name} did not stop: killing it")
            _signal(service, signal.SIGKILL, group=True)
            service.process.wait()
        else:  # the rest of its process group (a server's own children)
            _signal(service, signal.SIGKILL, group=True)
