"""Benchmark: retrain latency, from the threshold-crossing annotation to the new version serving ``/predict``.

Real parts: the backend (uvicorn, 127.0.0.1), a Celery worker process on the machine's Redis, the embedded
SQLite database (or ``--database-url``), the CNN pipeline with the default retrain settings. Annotations arrive
as Label Studio webhook events carrying CoNLL-2003 training sentences; the worker snapshots them from the
stored events (no Label Studio here: with one, the snapshot is an export of the project, measured in the e2e test).
With ``--serving-from N``, a version trained beforehand (cold, the retrain's settings) on the first N labels'
training split serves when the threshold is crossed, so the run warm-starts from it (``--cold``: the same, with
``NER_RETRAIN_WARM_START=false``); from fewer than half the labels it starts cold (``NER_RETRAIN_WARM_MAX_NEW_SHARE``).

    .venv/bin/python bench/retrain_latency.py --labels 1000
    .venv/bin/python bench/retrain_latency.py --labels 1000 --serving-from 980
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import spacy
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from annotation_guide import Guide, load_guide
from backend.api.app import create_app
from backend.db.models import Project, TrainingRun
from backend.db.session import make_engine, session_factory, session_scope, upgrade
from backend.services.projects import record_model_version, register_project
from backend.services.routing import set_override
from backend.settings import LLMSettings, Settings
from ml.converters import load_docs
from ml.promotion import in_dev_split
from ml.training import TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]


def _event(i: int, doc: spacy.tokens.Doc) -> dict[str, object]:
    result = [
        {
            "type": "labels",
            "from_name": "label",
            "to_name": "text",
            "value": {"start": e.start_char, "end": e.end_char, "text": e.text, "labels": [e.label_]},
        }
        for e in doc.ents
    ]
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 1},
        "task": {"id": i + 1, "data": {"text": doc.text}},
        "annotation": {"id": i + 1, "task": i + 1, "result": result, "was_cancelled": False},
    }


def main() -> None:
    """Send the label events, wait for the new version to serve ``/predict`` and print the latency."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--port", type=int, default=9192)
    parser.add_argument("--serving-from", type=int, default=0, help="labels the version serving beforehand saw")
    parser.add_argument("--cold", action="store_true", help="retrain cold even when a version serves")
    parser.add_argument("--serving-steps", type=int, help="steps of the serving version (default: the retrain's)")
    args = parser.parse_args()
    guide = load_guide(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")
    docs = load_docs(args.data / "train.txt", spacy.blank("en"), labels=guide.labels).docs[: args.labels]
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{scratch}/nerloop.db"
        upgrade(url)
        sessions = session_factory(make_engine(url))
        with session_scope(sessions) as db:
            project = register_project(db, ls_project_id=1, guide=guide, retrain_threshold=args.labels)
            for label in guide.labels:
                set_override(db, project, label=label, route="model")
        settings = Settings(
            database_url=url,
            redis_url=args.redis_url,
            model_root=Path(scratch) / "models",
            llm=LLMSettings(base_url="http://127.0.0.1:1/v1"),
        )
        if args.serving_from:
            steps = args.serving_steps or settings.retrain_max_steps
            _serve_first(sessions, guide, docs[: args.serving_from], settings, steps=steps)
        env = {
            **os.environ,
            "NER_DATABASE_URL": url,
            "NER_REDIS_URL": args.redis_url,
            "NER_MODEL_ROOT": str(settings.model_root),
            "NER_RETRAIN_WARM_START": "false" if args.cold else "true",
        }
        log = Path(scratch) / "worker.log"
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "nerloop"), "worker", "--queues", "train,score,llm"],
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=args.port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        try:
            while not server.started or "ready" not in log.read_text():
                time.sleep(0.2)
            _table(_run(args, docs, sessions))  # printed before the stop, which may wait for a rescoring
        finally:
            server.should_exit = True
            worker.terminate()  # warm shutdown: the job at work finishes first
            try:
                worker.wait(120)
            except subprocess.TimeoutExpired:
                print("the worker did not stop within 120 s of SIGTERM: killed", file=sys.stderr)
                worker.kill()
                worker.wait()


def _serve_first(
    sessions: sessionmaker[Session], guide: Guide, docs: list[spacy.tokens.Doc], settings: Settings, *, steps: int
) -> None:
    """Train a version on ``docs`` (split as the project splits them) and make it the serving one."""
    dev = [in_dev_split("1", i + 1, fraction=settings.dev_fraction) for i in range(len(docs))]
    print(f"training the serving version on {len(docs)} labels", file=sys.stderr, flush=True)
    trained = train(
        [d for d, is_dev in zip(docs, dev, strict=True) if not is_dev],
        [d for d, is_dev in zip(docs, dev, strict=True) if is_dev],
        guide,
        settings=TrainSettings(max_steps=steps, eval_frequency=100),
        output_root=Path(settings.model_root) / "project-1",
    )
    with session_scope(sessions) as db:
        project = db.scalars(select(Project)).one()
        metrics = trained.meta.metrics
        record_model_version(
            db,
            project,
            version=trained.version,
            path=str(trained.path),
            architecture="cnn",
            metrics=metrics,
            promote=True,
        )


def _run(args: argparse.Namespace, docs: list[spacy.tokens.Doc], sessions: object) -> dict[str, Any]:
    with session_scope(sessions) as db:  # type: ignore[arg-type]
        before = db.scalars(select(Project)).one().current_version
    with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=60) as client:
        for i, doc in enumerate(docs[:-1]):
            client.post("/webhook", json=_event(i, doc)).raise_for_status()
        print(f"{len(docs) - 1} labels stored; sending the threshold-crossing one", file=sys.stderr, flush=True)
        crossing = time.time()
        client.post("/webhook", json=_event(len(docs) - 1, docs[-1])).raise_for_status()
        version = before
        while version == before:
            time.sleep(0.5)
            with session_scope(sessions) as db:  # type: ignore[arg-type]
                run = db.scalars(select(TrainingRun)).first()
                if run is not None and run.status in ("failed", "rejected"):
                    raise SystemExit(f"run ended {run.status}: {run.error or run.details}")
                version = db.scalars(select(Project)).one().current_version
        body = {"project": "1.0", "tasks": [{"id": 1, "data": {"text": docs[0].text}}]}
        while not client.post("/predict", json=body).json()["results"][0]["model_version"].startswith(version):
            time.sleep(0.2)
        serving = time.time()
    with session_scope(sessions) as db:  # type: ignore[arg-type]
        run = db.scalars(select(TrainingRun)).one()
        started, finished = run.started_at.timestamp(), run.finished_at.timestamp()  # type: ignore[union-attr]
        init = run.details["initialisation"]
    return {
        "labels": len(docs),
        "start": f"{init['mode']}, {init['max_steps']} steps",
        "dev_f1": run.details["dev_micro_f1"],
        "total": serving - crossing,
        "queue": started - crossing,
        "train": finished - started,
        "swap": serving - finished,
    }


def _table(r: dict[str, Any]) -> None:
    print(f"\n{'labels':>7}  {'start':<20}{'queue s':>9}{'train+eval s':>14}{'swap s':>8}{'total s':>9}{'dev F1':>8}")
    print(
        f"{r['labels']:>7.0f}  {r['start']:<20}{r['queue']:>9.1f}{r['train']:>14.1f}{r['swap']:>8.1f}"
        f"{r['total']:>9.1f}{r['dev_f1']:>8.3f}"
    )


if __name__ == "__main__":
    main()
