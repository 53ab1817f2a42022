"""The retrain policy has one default and each project its own threshold (issue #16, item 6).

The setting ``NER_RETRAIN_EVERY_N_LABEL_CHANGES`` (formerly ``..._ANNOTATIONS``, still read) is the only default,
registering a project again keeps its threshold unless given one, and ``nerloop up`` prints the project's, not the
setting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from annotation_guide import Guide
from backend.db.session import upgrade
from backend.services.projects import DEFAULT_RETRAIN_THRESHOLD, register_project
from backend.settings import Settings, SettingsError, get_settings, unknown_variables
from tests.conftest import open_db
from workers import up as up_module
from workers.cli import _ready_banner


@pytest.mark.parametrize("variable", ["NER_RETRAIN_EVERY_N_LABEL_CHANGES", "NER_RETRAIN_EVERY_N_ANNOTATIONS"])
def test_the_threshold_setting_is_read_under_its_name_and_its_former_one(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "35")
    assert unknown_variables({variable: "35"}) == []
    assert Settings().retrain_every_n_label_changes == 35
    assert Settings(retrain_every_n_label_changes=7).retrain_every_n_label_changes == 7  # by name in code


def test_an_invalid_threshold_names_the_variable_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("NER_RETRAIN_EVERY_N_ANNOTATIONS", "0")
    try:
        with pytest.raises(SettingsError, match=r"NER_RETRAIN_EVERY_N_ANNOTATIONS: Input should be greater than 0"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_the_readme_states_the_settings_default_threshold() -> None:
    """The one default (``settings.py``) is the one the README's settings table documents."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `NER_RETRAIN_EVERY_N_LABEL_CHANGES` |")]
    assert len(rows) == 1
    assert rows[0].split("|")[2].strip() == str(Settings.model_fields["retrain_every_n_label_changes"].default)


def test_registering_again_keeps_the_projects_threshold_unless_given_one(tmp_path: Path, conll_guide: Guide) -> None:
    url = f"sqlite:///{tmp_path / 'nerloop.db'}"
    upgrade(url)
    with open_db(url) as db:
        assert register_project(db, ls_project_id=1, guide=conll_guide).retrain_threshold == DEFAULT_RETRAIN_THRESHOLD
        assert register_project(db, ls_project_id=2, guide=conll_guide, default_threshold=40).retrain_threshold == 40
        assert register_project(db, ls_project_id=3, guide=conll_guide, retrain_threshold=5).retrain_threshold == 5
        # again, without a threshold: each keeps its own, whatever the default now is
        for ls_project_id, kept in ((1, DEFAULT_RETRAIN_THRESHOLD), (2, 40), (3, 5)):
            again = register_project(db, ls_project_id=ls_project_id, guide=conll_guide, default_threshold=99)
            assert again.retrain_threshold == kept
        # again, with one: it changes
        assert register_project(db, ls_project_id=3, guide=conll_guide, retrain_threshold=8).retrain_threshold == 8


def test_up_prints_each_projects_own_threshold_not_the_setting(
    tmp_path: Path, conll_guide: Guide, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(up_module.database_url(tmp_path))
    (tmp_path / "label-studio-password").write_text("pw")
    cfg = up_module.UpConfig(home=tmp_path, guide=tmp_path / "guide.yaml", tasks=None)
    monkeypatch.setenv("NER_RETRAIN_EVERY_N_LABEL_CHANGES", "99")  # a later start's setting: not the project's
    with open_db(up_module.database_url(tmp_path)) as db:
        register_project(db, ls_project_id=1, guide=conll_guide, retrain_threshold=35)

    assert "label tasks; every 35 label changes retrain the model. Ctrl-C stops everything." in _ready_banner(cfg)

    with open_db(up_module.database_url(tmp_path)) as db:
        register_project(db, ls_project_id=2, guide=conll_guide.model_copy(update={"project": "wnut"}))
    banner = _ready_banner(cfg)
    assert f"conll2003 every 35 label changes, wnut every {DEFAULT_RETRAIN_THRESHOLD} label changes" in banner
    assert "every 99" not in banner
