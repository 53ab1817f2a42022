"""``nerloop up``: the whole loop on one machine with embedded defaults.

Label Studio (its own venv), the llama.cpp server (tiny SmolLM2 unless told otherwise), the backend and a
worker, all on 127.0.0.1, state under one folder (SQLite database, models, logs, Label Studio data), and a
demo project created from a guide the first time.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from backend.services.errors import UpstreamError

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
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _secret(path: Path, length: int = 24) -> str:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(length))
        path.chmod(0o600)
    return path.read_text().strip()


def nerloop_env(cfg: UpConfig) -> dict[str, str]:
    """The ``NER_*`` settings every nerloop process of this deployment gets."""
    token = _secret(cfg.home / "label-studio-token")
    return {
        **os.environ,
        "NER_DATABASE_URL": f"sqlite:///{cfg.home / 'nerloop.db'}",
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
    """The environment of a headless, offline Label Studio on 127.0.0.1 that accepts a local ML backend
    (../shared/docs/label-studio.md); stray HOST/PORT/USERNAME/PASSWORD variables are left out (it reads them)."""
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
        token=_secret(cfg.home / "label-studio-token"),
        secret=_secret(cfg.home / "label-studio-secret"),
    )


def _start(cfg: UpConfig, name: str, command: list[str], env: dict[str, str]) -> None:
    log = (cfg.home / "logs" / f"{name}.log").open("ab")
    cfg.processes.append(
        subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    )


def _wait_http(url: str, what: str, cfg: UpConfig, timeout: float, say: Callable[[str], None]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in cfg.processes:
            if process.poll() is not None:
                raise UpstreamError(f"{what}: a process exited with {process.returncode}; see {cfg.home / 'logs'}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                say(f"{what} is up at {url.rsplit('/', 1)[0]}")
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise UpstreamError(f"{what} did not answer {url} within {timeout:.0f} s; see {cfg.home / 'logs'}")


def start_all(cfg: UpConfig, say: Callable[[str], None]) -> None:
    """Start Label Studio, the LLM server, the backend and a worker; return when all answer."""
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
    say("starting Label Studio (about 40 s the first time) ...")
    _start(
        cfg,
        "label-studio",
        [str(cfg.ls_bin), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(cfg.ls_port)],
        _label_studio_env(cfg),
    )
    llm = [nerloop, "llm", "serve", "--port", str(cfg.llm_port)] + (["--model", cfg.llm_model] if cfg.llm_model else [])
    _start(cfg, "llm", llm, env)
    _start(cfg, "backend", [nerloop, "serve", "--port", str(cfg.backend_port)], env)
    _start(cfg, "worker", [nerloop, "worker", "--queues", "train,score,llm"], env)
    _wait_http(f"http://127.0.0.1:{cfg.llm_port}/v1/models", "the LLM server", cfg, 180, say)
    _wait_http(f"http://127.0.0.1:{cfg.backend_port}/health", "the backend", cfg, 120, say)
    _wait_http(f"http://127.0.0.1:{cfg.ls_port}/health", "Label Studio", cfg, 300, say)


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


def stop_all(cfg: UpConfig) -> None:
    """Stop every started process (their whole process groups)."""
    for process in reversed(cfg.processes):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in cfg.processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
