"""A mistyped ``NER_*`` variable is reported, not ignored (issue #16, item 8).

pydantic-settings drops unknown variables, so a typo would leave the default in force without a word.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.settings import SettingsError, get_settings, unknown_variables

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


def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "NER_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}", "NER_RETRAIN_MAX_STEP": "5"}
    done = subprocess.run([NERLOOP, "runs", "--project", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: unknown nerloop setting(s): NER_RETRAIN_MAX_STEP (did you mean NER_RETRAIN_MAX_STEPS?). "
        "See the README's settings table, or unset them."
    ]
