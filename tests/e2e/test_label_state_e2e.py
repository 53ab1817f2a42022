"""nerloop's labels equal the real Label Studio's export after every kind of event.

The project is one a team already had (attached, with its own tag names, relations, a text area and choices).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import spacy
import yaml
from label_studio_sdk import LabelStudio
from sqlalchemy import func, select

from annotation_guide import Guide
from backend.adapters.label_studio import LabelStudioGateway
from backend.db.models import AnnotationEvent, Project
from backend.services.annotations import reconcile
from backend.services.label_state import annotated_tasks, convert_labels
from backend.services.training import retrain_if_due
from ml.converters import load_docs
from ml.converters.spans import char_spans
from tests.conftest import GUIDES, open_db
from tests.e2e.conftest import BackendServer, LabelStudioServer

pytestmark = pytest.mark.e2e
NERLOOP = str(Path(sys.executable).parent / "nerloop")

# a team's own config: other tag names, the text under "body", a label with a space, relations, notes and a choice
CONFIG = """<View>
  <Relations><Relation value="works_for"/></Relations>
  <Labels name="ner" toName="sentence">
    <Label value="person"/><Label value="location"/><Label value="organisation"/><Label value="Misc Entity"/>
  </Labels>
  <Text name="sentence" value="$body"/>
  <TextArea name="notes" toName="sentence"/>
  <Choices name="quality" toName="sentence"><Choice value="ok"/><Choice value="bad"/></Choices>
</View>"""
NAMES = {"from_name": "ner", "to_name": "sentence", "text_field": "body"}
VALUES = {"misc": "Misc Entity"}  # guide name -> Label Studio's label

State = list[tuple[str, str, tuple[tuple[int, int, str], ...]]]


def _cli(backend: BackendServer, *args: str) -> subprocess.CompletedProcess[str]:
    s = backend.settings
    env = {
        **os.environ,
        "NER_DATABASE_URL": s.database_url,
        "NER_REDIS_URL": s.redis_url,
        "NER_BACKEND_URL": s.backend_url,
        "NER_LABEL_STUDIO__URL": s.label_studio.url,
        "NER_LABEL_STUDIO__API_KEY": s.label_studio.api_key.get_secret_value(),  # type: ignore[union-attr]
    }
    return subprocess.run([NERLOOP, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


def _state(backend: BackendServer, tasks: list[dict[str, Any]] | None = None) -> State:
    """The labelled docs nerloop would train on: from its own label state, or from ``tasks`` (an export)."""
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        docs = convert_labels(project, tasks if tasks is not None else annotated_tasks(db, project)).docs
    return sorted(
        (str(d.user_data["task_id"]), d.text, tuple((s.start, s.end, s.label) for s in char_spans(d))) for d in docs
    )


def _agrees(backend: BackendServer, ls_id: int, what: str) -> None:
    """Poll until nerloop's labels equal what Label Studio's export holds now (events may still be in flight)."""
    with LabelStudioGateway(backend.settings.label_studio) as gateway:
        expected = _state(backend, gateway.export_tasks(ls_id))
    deadline = time.monotonic() + 30
    while (actual := _state(backend)) != expected and time.monotonic() < deadline:
        time.sleep(0.3)
    assert actual == expected, what


def _region(text: str, word: str, label: str, region_id: str) -> dict[str, Any]:
    start = text.index(word)
    return {
        "id": region_id,
        "from_name": "ner",
        "to_name": "sentence",
        "type": "labels",
        "value": {"start": start, "end": start + len(word), "text": word, "labels": [VALUES.get(label, label)]},
    }


def _extras(first: str, second: str) -> list[dict[str, Any]]:
    return [
        {"from_id": first, "to_id": second, "type": "relation", "direction": "right", "labels": ["works_for"]},
        {"id": "n1", "from_name": "notes", "to_name": "sentence", "type": "textarea", "value": {"text": ["?"]}},
        {"id": "q1", "from_name": "quality", "to_name": "sentence", "type": "choices", "value": {"choices": ["ok"]}},
    ]


def test_attach_then_every_event_keeps_labels_equal_to_label_studio(
    label_studio: LabelStudioServer,
    backend_server: BackendServer,
    conll_guide: Guide,
    shared_data: Path,
    tmp_path: Path,
) -> None:
    docs = load_docs(shared_data / "conll2003" / "test.txt", spacy.blank("en"), labels=conll_guide.labels).docs
    labelled = [d for d in docs if len(d.ents) >= 2][:8]
    # task 0 carries a "misc" entity among its first two: its Label Studio label has a space ("Misc Entity")
    labelled[0] = next(d for d in docs if len(d.ents) >= 2 and "misc" in {e.label_ for e in d.ents[:2]})
    texts = [d.text for d in labelled]
    words = [[(e.text, e.label_) for e in d.ents] for d in labelled]
    with httpx.Client(timeout=120) as http:
        client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)
        ls_id = client.projects.create(title="team project", label_config=CONFIG).id
        assert ls_id is not None
        imported = client.projects.import_tasks(id=ls_id, request=[{"body": t} for t in texts], return_task_ids=True)
        task_ids: list[int] = list(imported.task_ids or [])

        def annotate(i: int, n_entities: int, *, extras: bool = False, **fields: Any) -> int:
            result = [_region(texts[i], *words[i][k], f"r{k}") for k in range(n_entities)]
            if extras:
                result += _extras("r0", "r1")
            created = client.annotations.create(id=task_ids[i], result=result, **fields)
            assert created.id is not None
            return created.id

        # the team labelled before nerloop came: two annotators on task 1, a skip on task 2, relations on task 0
        annotate(0, 2, extras=True)
        annotate(1, 1)
        second_on_1 = annotate(1, 2)
        annotate(2, 0, was_cancelled=True)

        guide_file = _guides(backend_server, ls_id, conll_guide, tmp_path)
        queue = redis.Redis.from_url(backend_server.settings.redis_url)
        queue.delete("score")
        attach = ["project", "attach", "--ls-project", str(ls_id), "--guide", str(guide_file), "--retrain-every", "2"]
        attached = _cli(backend_server, *attach)
        assert attached.returncode == 0, attached.stderr
        assert "4 annotations read, 4 new, 3 label changes" in attached.stdout
        _agrees(backend_server, ls_id, "after attach")
        held = {label for _, _, spans in _state(backend_server) for _, _, label in spans}
        # read through label_studio.labels
        assert held >= {label for _, label in words[0][:2]}
        assert "misc" in held
        # the worker is asked at once; with 3 label changes over a threshold of 2, it starts a run at 2
        assert any(b"workers.retrain_if_due" in message for message in queue.lrange("score", 0, -1))
        with open_db(backend_server.settings.database_url) as db:
            run = retrain_if_due(db, db.scalars(select(Project)).one())
            assert run is not None
            assert run.annotation_watermark == 2
            run.status = "failed"  # nothing trains here; later events must not wait on it
        again = _cli(backend_server, *attach[:-2])  # no --retrain-every: the project keeps its threshold
        assert "4 annotations read, 0 new, 0 label changes" in again.stdout, again.stderr
        assert len(client.ml.list(project=ls_id)) == 1  # the backend is not connected twice
        with open_db(backend_server.settings.database_url) as db:
            assert db.scalars(select(Project)).one().retrain_threshold == 2

        _events(client, backend_server, ls_id, task_ids, annotate, second_on_1, texts, words)


def _guides(backend: BackendServer, ls_id: int, conll_guide: Guide, tmp_path: Path) -> Path:
    """``guide init`` writes the project's labels and tag names; a guide that does not match is refused in full."""
    skeleton = tmp_path / "skeleton.yaml"
    made = _cli(backend, "guide", "init", "--from-label-studio", str(ls_id), "--out", str(skeleton))
    assert made.returncode == 0, made.stderr
    written = yaml.safe_load(skeleton.read_text())
    assert [t["name"] for t in written["entity_types"]] == ["person", "location", "organisation", "Misc_Entity"]
    assert written["label_studio"] == {**NAMES, "labels": {"Misc_Entity": "Misc Entity"}}
    kept = _cli(backend, "guide", "init", "--from-label-studio", str(ls_id), "--out", str(skeleton))
    # a guide being filled in is never overwritten
    assert kept.returncode == 2
    assert "exists" in kept.stderr
    mismatched = _cli(
        backend, "project", "attach", "--ls-project", str(ls_id), "--guide", str(GUIDES / "software.yaml")
    )
    assert mismatched.returncode != 0
    assert "does not match the guide" in mismatched.stderr
    assert "Traceback" not in mismatched.stderr
    assert "person" in mismatched.stderr
    guide_file = tmp_path / "team.yaml"
    team = {**conll_guide.model_dump(mode="json", exclude_none=True), "label_studio": {**NAMES, "labels": VALUES}}
    guide_file.write_text(yaml.safe_dump(team, sort_keys=False))
    return guide_file


def _events(
    client: LabelStudio,
    backend: BackendServer,
    ls_id: int,
    task_ids: list[int],
    annotate: Callable[..., int],
    second_on_1: int,
    texts: list[str],
    words: list[list[tuple[str, str]]],
) -> None:
    """Each kind of event Label Studio sends, each followed by a comparison with its export."""
    a3 = annotate(3, 2, extras=True)
    _agrees(backend, ls_id, "created with a relation, a text area and choices")
    client.annotations.update(id=a3, result=[_region(texts[3], *words[3][1], "r1")])
    _agrees(backend, ls_id, "updated")
    client.annotations.delete(id=second_on_1)
    _agrees(backend, ls_id, "one of two annotations deleted")
    annotate(4, 0, was_cancelled=True)
    annotate(4, 1)
    _agrees(backend, ls_id, "skipped, then labelled by someone else")
    annotate(5, 2)
    annotate(5, 1)
    selected = {"all": False, "included": [task_ids[5]]}
    client.actions.create(id="delete_tasks_annotations", project=ls_id, selected_items=selected)  # type: ignore[arg-type]
    _agrees(backend, ls_id, "every annotation of a task deleted at once")
    annotate(6, 2)
    selected = {"all": False, "included": [task_ids[6], task_ids[0]]}
    client.actions.create(id="delete_tasks", project=ls_id, selected_items=selected)  # type: ignore[arg-type]
    _agrees(backend, ls_id, "tasks deleted")
    ml_id = client.ml.list(project=ls_id)[0].id
    assert ml_id is not None
    for _ in range(2):  # "Start Training" twice: Label Studio sends the same body; both are requests
        client.ml.train(id=ml_id)
    with open_db(backend.settings.database_url) as db:
        clicks = db.scalar(
            select(func.count()).select_from(AnnotationEvent).where(AnnotationEvent.action == "START_TRAINING")
        )
        payloads = [e.payload for e in db.scalars(select(AnnotationEvent).order_by(AnnotationEvent.id))]
    assert clicks == 2
    # a training run reconciles with the export: what the webhooks brought already equals it, label for label
    with LabelStudioGateway(backend.settings.label_studio) as gateway, open_db(backend.settings.database_url) as db:
        synced = reconcile(db, db.scalars(select(Project)).one(), gateway.export_tasks(ls_id))
    assert (synced.label_changes, synced.malformed) == (0, 0)
    seen = {p["action"] for p in payloads}
    assert seen >= {"ANNOTATION_IMPORTED", "ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"}
    assert "TASKS_DELETED" in seen  # with or without a project in its body, it found the project
