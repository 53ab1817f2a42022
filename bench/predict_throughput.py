"""Benchmark: ``/predict`` throughput over HTTP vs the same model's inference in-process, on CoNLL sentences.

Starts the real backend (uvicorn on 127.0.0.1, SQLite) serving one spaCy CNN for every entity type, posts
100-task batches of CoNLL-2003 test sentences, and measures words/second next to, in the same run:
``model.predict`` (the inference ``/predict`` runs: greedy parse + beam-scored confidences, calibrated) and
plain ``nlp.pipe`` (greedy, no confidences) of the same pipeline.

    .venv/bin/python bench/predict_throughput.py [--model models/<version>] [--batches 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import spacy
import uvicorn

from annotation_guide import load_guide
from backend.api.app import create_app
from backend.db.session import make_engine, session_factory, session_scope, upgrade
from backend.services.projects import record_model_version, register_project
from backend.services.routing import set_override
from backend.settings import LLMSettings, Settings
from ml.converters import load_docs
from ml.model_store import load_model, read_meta
from ml.training import TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]


def _model(args: argparse.Namespace, guide_path: Path, scratch: Path) -> Path:
    if args.model:
        return Path(args.model)
    guide = load_guide(guide_path)
    nlp = spacy.blank("en")
    data = args.data
    train_docs = load_docs(data / "train.txt", nlp, labels=guide.labels).docs[:2000]
    dev_docs = load_docs(data / "dev.txt", nlp, labels=guide.labels).docs[:500]
    print("training a CNN on 2,000 sentences for the benchmark ...", flush=True)
    return train(train_docs, dev_docs, guide, settings=TrainSettings(max_steps=600), output_root=scratch).path


def _serve(settings: Settings, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


def main() -> None:
    """Serve one model, post the batches to ``/predict`` and print words/second beside in-process inference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    parser.add_argument("--model", help="a model version directory (default: train one on 2,000 sentences)")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--port", type=int, default=9191)
    args = parser.parse_args()
    guide_path = ROOT / "annotation_guide" / "guides" / "conll2003.yaml"
    guide = load_guide(guide_path)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = _model(args, guide_path, Path(scratch))
        meta = read_meta(model_dir)
        url = f"sqlite:///{scratch}/bench.db"
        upgrade(url)
        with session_scope(session_factory(make_engine(url))) as db:
            project = register_project(db, ls_project_id=1, guide=guide)
            record_model_version(
                db,
                project,
                version=meta.version,
                path=str(model_dir),
                architecture="cnn",
                metrics=meta.metrics,
                promote=True,
            )
            for label in guide.labels:
                set_override(db, project, label=label, route="model")
        settings = Settings(
            database_url=url, redis_url="redis://127.0.0.1:1/0", llm=LLMSettings(base_url="http://127.0.0.1:1/v1")
        )
        texts = [d.text for d in load_docs(args.data / "test.txt", spacy.blank("en"), labels=guide.labels).docs]
        texts = texts[: args.batches * args.batch_size]
        n_words = sum(len(t.split()) for t in texts)
        batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
        server = _serve(settings, args.port)
        try:
            rows = _measure(batches, n_words, model_dir, args.port)
        finally:
            server.should_exit = True
    _table(rows, n_words, len(batches), args.batch_size)


def _measure(batches: list[list[str]], n_words: int, model_dir: Path, port: int) -> dict[str, float]:
    model = load_model(model_dir)
    nlp = spacy.load(model_dir / "model")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
        client.post("/predict", json={"project": "1.0", "tasks": [{"id": 0, "data": {"text": "warm up"}}]})
        latencies = []
        started = time.perf_counter()
        for b, batch in enumerate(batches):
            tasks = [{"id": b * 1000 + i, "data": {"text": t}} for i, t in enumerate(batch)]
            t0 = time.perf_counter()
            reply = client.post("/predict", json={"project": "1.0", "tasks": tasks})
            reply.raise_for_status()
            latencies.append(time.perf_counter() - t0)
        http_s = time.perf_counter() - started
    t0 = time.perf_counter()
    for batch in batches:
        model.predict([model.make_doc(t) for t in batch])
    predict_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for batch in batches:
        list(nlp.pipe(batch, batch_size=len(batch)))
    pipe_s = time.perf_counter() - t0
    return {
        "http": n_words / http_s,
        "predict": n_words / predict_s,
        "pipe": n_words / pipe_s,
        "p50": statistics.median(latencies),
        "p95": sorted(latencies)[int(0.95 * (len(latencies) - 1))],
    }


def _table(r: dict[str, float], n_words: int, n_batches: int, size: int) -> None:
    print(f"\n{n_batches} batches x {size} CoNLL test sentences ({n_words} words)")
    print(f"{'path':<42}{'words/s':>10}{'ratio':>8}")
    http = f"POST /predict over HTTP (p50 {r['p50']:.2f} s/batch)"
    print(f"{http:<42}{r['http']:>10.0f}{'':>8}")
    print(f"{'model.predict in-process (same inference)':<42}{r['predict']:>10.0f}{r['http'] / r['predict']:>8.2f}")
    print(f"{'nlp.pipe, greedy, no confidences':<42}{r['pipe']:>10.0f}{r['http'] / r['pipe']:>8.2f}")
    print(f"p95 batch latency {r['p95']:.2f} s; target: /predict >= 0.8 x the same model's in-process inference")


if __name__ == "__main__":
    main()
