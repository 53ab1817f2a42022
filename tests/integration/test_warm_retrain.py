"""An automatic retrain warm-starts from the serving version, records why, and still goes through the gate."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation_guide import Guide
from backend.db.models import ModelVersion, Project, TrainingRun
from backend.services.annotations import ingest
from backend.services.label_state import StoredLabelsSource
from backend.services.projects import register_project
from backend.services.training import Trainer, manual_run
from backend.settings import Settings
from ml.model_store import read_meta
from ml.training import TrainedModel
from tests.conftest import open_db, promote, sessions_for
from tests.integration.conftest import conll_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the run's rules are tested on both elsewhere
@pytest.mark.parametrize(("warm", "mode"), [(True, "warm"), (False, "cold")])
def test_a_retrain_warm_starts_from_the_serving_version_unless_told_not_to(
    database_url: str,
    conll_guide: Guide,
    shared_data: Path,
    small_model: TrainedModel,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    warm: bool,
    mode: str,
) -> None:
    settings = Settings(
        database_url=database_url,
        model_root=tmp_path,
        retrain_max_steps=40,
        dev_fraction=0.3,
        retrain_warm_start=warm,
        retrain_warm_shrink=0.8 if warm else None,  # NER_RETRAIN_WARM_SHRINK / _NOISE; None: TrainSettings' own
        retrain_warm_noise=0.001 if warm else None,
        # every label is new to small_model: warm only because the share allows it (NER_RETRAIN_WARM_MAX_NEW_SHARE)
        retrain_warm_max_new_share=1.0 if warm else None,
        retrain_eval_frequency=50,  # evaluations as with the default (a fifth of the 40 steps): only the meta shows it
    )
    with open_db(database_url) as db:
        project = register_project(db, ls_project_id=31, guide=conll_guide)
        promote(db, project, small_model)
        for event in conll_events(shared_data, conll_guide, 40, first=400, ls_project=31):  # not in small_model's
            ingest(db, event)
        run_id = manual_run(db, project, trigger="cli")[0].id
    with caplog.at_level(logging.INFO, logger="backend.services.training"), sessions_for(database_url) as sessions:
        outcome = Trainer(sessions, settings, lambda db, p: StoredLabelsSource(db, p)).run(run_id)
    with open_db(database_url) as db:
        run = db.get(TrainingRun, run_id)
        assert run is not None
        assert run.status in ("succeeded", "rejected"), run.error
        assert outcome.decision is not None
        assert run.details["decision"].startswith(outcome.decision.reason)
        serving = db.scalars(select(Project)).one().current_version
        path = db.scalars(select(ModelVersion.path).where(ModelVersion.version == outcome.model_version)).one()
    init = run.details["initialisation"]
    assert init == read_meta(path).initialisation.to_dict()
    assert read_meta(path).settings["eval_frequency"] == 50  # NER_RETRAIN_EVAL_FREQUENCY reached the training
    assert init["mode"] == mode
    assert init["max_steps"] == 40
    assert serving == (outcome.model_version if outcome.status == "succeeded" else small_model.version)
    assert f"run {run_id}: {mode} start" in caplog.text
    if not warm:
        assert init["reason"] == "warm starts are off (warm_start=False)"
        assert init["source_version"] is None
        return
    assert init["source_version"] == small_model.version
    assert init["warm_chain"] == 1
    assert init["reason"].endswith("; weights shrunk by 0.8, noise s.d. 0.001")
    assert (read_meta(path).settings["warm_shrink"], read_meta(path).settings["warm_noise"]) == (0.8, 0.001)
    assert read_meta(path).settings["warm_max_new_share"] == 1.0
    # sentences after the serving version's 400 (CoNLL repeats a few short ones, which are not new)
    assert run.details["train_docs"] - 3 <= init["new_docs"] <= run.details["train_docs"]
