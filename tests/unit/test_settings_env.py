"""A mistyped ``NER_*`` variable is reported, not ignored (issue #16, item 8).

pydantic-settings drops unknown variables, so a typo would leave the default in force without a word.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.settings import (
    LabelStudioSettings,
    LLMSettings,
    Settings,
    SettingsError,
    get_settings,
    unknown_variables,
)

NERLOOP = str(Path(sys.executable).parent / "nerloop")


def test_every_setting_and_nested_setting_is_known() -> None:
    env = {"NER_RETRAIN_MAX_STEPS": "5", "NER_LLM__BASE_URL": "x", "NER_LABEL_STUDIO__API_KEY": "k", "PATH": "/"}
    assert unknown_variables(env) == []


def test_a_typo_is_named_with_the_closest_setting() -> None:
    env = {"NER_RETRAIN_MAX_STEP": "5", "NER_LLM__BASE_UR": "x", "NER_NO_SUCH_THING_AT_ALL": "1"}
    assert unknown_variables(env) == [
        "NER_LLM__BASE_UR (did you mean NER_LLM__BASE_URL?)",
        "NER_NO_SUCH_THING_AT_ALL",
        "NER_RETRAIN_MAX_STEP (did you mean NER_RETRAIN_MAX_STEPS?)",
    ]


def test_get_settings_refuses_unknown_and_invalid_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("NER_RETRAIN_MAX_STEP", "5")
    with pytest.raises(SettingsError, match=r"NER_RETRAIN_MAX_STEP \(did you mean NER_RETRAIN_MAX_STEPS\?\)"):
        get_settings()
    monkeypatch.delenv("NER_RETRAIN_MAX_STEP")
    monkeypatch.setenv("NER_RETRAIN_MAX_STEPS", "many")
    with pytest.raises(SettingsError, match="NER_RETRAIN_MAX_STEPS: Input should be a valid integer"):
        get_settings()
    monkeypatch.delenv("NER_RETRAIN_MAX_STEPS")
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "NER_RETRAIN_MAX_STEP",
            "5",
            "error: unknown nerloop setting(s): NER_RETRAIN_MAX_STEP (did you mean NER_RETRAIN_MAX_STEPS?). "
            "See the README's settings table, or unset them.",
        ),
        (
            "NER_REDIS_URL",
            "localhost:6379",
            "error: invalid nerloop setting(s): NER_REDIS_URL: Value error, a localhost:// URL; expected "
            "redis://<host>:<port>/<db>, rediss://... or unix://<socket>",
        ),
    ],
)
def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path, variable: str, value: str, line: str) -> None:
    env = {**os.environ, "NER_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}", variable: value}
    done = subprocess.run([NERLOOP, "runs", "--project", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [line]


# the URLs the test suite and docker-compose.yml set, by setting; each must load exactly as given
USED_URLS = {
    "NER_DATABASE_URL": [
        "sqlite://",
        "sqlite:////tmp/pytest-0/nerloop.db",
        "postgresql+psycopg://nerloop:nerloop@postgres:5432/nerloop",
        "postgresql+psycopg://postgres@127.0.0.1:5432/nerloop_test_3f2a",
    ],
    "NER_REDIS_URL": ["redis://127.0.0.1:6379/15", "redis://127.0.0.1:1/0", "redis://redis:6379/0"],
    "NER_BACKEND_URL": ["http://127.0.0.1:9090", "http://backend:9090"],
    "NER_LLM__BASE_URL": ["http://127.0.0.1:1/v1", "http://llm:8081/v1", "https://api.openai.com/v1"],
    "NER_LABEL_STUDIO__URL": ["http://label-studio:8080", "http://127.0.0.1:8080/"],
}


def _field(settings: Settings, variable: str) -> object:
    value: object = settings
    for part in variable.removeprefix("NER_").lower().split("__"):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(("variable", "url"), [(v, u) for v, urls in USED_URLS.items() for u in urls])
def test_used_urls_load_unchanged(monkeypatch: pytest.MonkeyPatch, variable: str, url: str) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv(variable, url)
    assert _field(get_settings(), variable) == url
    get_settings.cache_clear()


def test_every_default_url_is_valid_and_unchanged() -> None:
    defaults = {
        "database_url": Settings.model_fields["database_url"].default,
        "redis_url": Settings.model_fields["redis_url"].default,
        "backend_url": Settings.model_fields["backend_url"].default,
        "llm": {"base_url": LLMSettings.model_fields["base_url"].default},
        "label_studio": {"url": LabelStudioSettings.model_fields["url"].default},
    }
    # validate_default is off: validate each default explicitly, as if it had been set
    checked = Settings.model_validate(defaults)
    assert (checked.database_url, checked.redis_url) == ("sqlite:///nerloop.db", "redis://127.0.0.1:6379/0")
    assert (checked.backend_url, checked.llm.base_url, checked.label_studio.url) == (
        "http://127.0.0.1:9090",
        "http://127.0.0.1:8081/v1",
        "http://127.0.0.1:8080",
    )


@pytest.mark.parametrize(
    ("variable", "url", "expected"),
    [
        ("NER_DATABASE_URL", "nerloop.db", "not a database URL; expected sqlite:///"),
        ("NER_DATABASE_URL", "mysql://u:secret@h/d", "a mysql URL; expected sqlite:///"),
        ("NER_REDIS_URL", "127.0.0.1:6379", "not a URL .*; expected redis://"),
        ("NER_REDIS_URL", "http://127.0.0.1:6379/0", "a http:// URL; expected redis://"),
        ("NER_BACKEND_URL", "127.0.0.1:9090", "not a URL .*; expected an http:// or https:// URL"),
        ("NER_LLM__BASE_URL", "localhost:8081/v1", "a localhost:// URL; expected an http:// or https:// URL"),
        ("NER_LABEL_STUDIO__URL", "ftp://127.0.0.1:8080", "a ftp:// URL; expected an http:// or https:// URL"),
    ],
)
def test_a_bad_url_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str, expected: str
) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv(variable, url)
    with pytest.raises(
        SettingsError, match=f"^invalid nerloop setting\\(s\\): {variable}: Value error, {expected}"
    ) as e:
        get_settings()
    assert "secret" not in str(e.value)  # a database URL's password is never repeated
    get_settings.cache_clear()


def test_retrain_eval_frequency_and_sampling_seed_default_to_the_former_constants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fields = Settings.model_fields
    assert (fields["retrain_eval_frequency"].default, fields["sampling_seed"].default) == (100, 0)
    get_settings.cache_clear()
    monkeypatch.setenv("NER_RETRAIN_EVAL_FREQUENCY", "0")
    with pytest.raises(SettingsError, match="NER_RETRAIN_EVAL_FREQUENCY: Input should be greater than 0"):
        get_settings()
    get_settings.cache_clear()
