"""Benchmark: how the read endpoints scale with a project's stored annotations (issue #10, part 2).

The endpoints are ``/predict``, ``/dashboard/{id}`` and ``/api/projects/{id}/progress``.

For each size N: a PostgreSQL database ``bench_size_<N>`` (created, migrated, dropped at the end unless
``--keep``), the CoNLL-2003 project registered, the first ``--ingest`` (10,000) annotations seeded through the
real ingestion path (``backend.services.annotations.ingest`` on Label Studio webhook bodies: CoNLL training
sentences with their gold entities; past the 14,041 sentences a text is a sentence joined with another one, so
every text is distinct) and the rest copied from them in SQL (new ids, every row ingestion writes, each text
suffixed so it stays distinct: seconds instead of 25 minutes for 100,000),
one entity type routed to the LLM (the others to the model, which does not exist: they answer nothing), and
``NER_LLM__BASE_URL`` pointing at a fake OpenAI-compatible server in this process that answers at once, so what
is timed is nerloop. Then the real server (``.venv/bin/nerloop serve`` on a free 127.0.0.1 port) is started as a
subprocess and timed with httpx: the first call of each endpoint and the median / p95 of the next ``--repeats``
(every ``/predict`` gets a CoNLL test sentence it has not seen, so the LLM cache is never hit).

    .venv/bin/python bench/project_size.py [--sizes 100,1000,10000] [--keep] [--reuse] [--timeout 120]
    .venv/bin/python bench/project_size.py --sizes 100000 --keep     # --ingest 0: all 100,000 through ingest

``--reuse`` takes ``bench_size_<N>`` from an earlier ``--keep`` run (migrated to the current schema, its LLM cache
emptied; one seeded part way, by a run that was stopped, is seeded on to N) and keeps it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import spacy
from sqlalchemy import delete, func, select

from annotation_guide import Guide, load_guide
from backend.db.models import Annotation, LLMCall
from backend.db.session import make_engine, session_factory, session_scope, upgrade
from backend.services.annotations import ingest
from backend.services.projects import register_project
from backend.services.routing import set_override
from ml.converters import load_docs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "conll2003"
GUIDE = ROOT / "annotation_guide" / "guides" / "conll2003.yaml"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS_URL = os.environ.get("NERLOOP_BENCH_REDIS", "redis://127.0.0.1:6379/2")  # emptied by webhook_burst.py
LS_PROJECT = 1
Example = tuple[str, list[tuple[int, int, str]]]


# ---- shared with bench/webhook_burst.py -------------------------------------------------------------------


def database_exists(name: str) -> bool:
    """Whether PostgreSQL holds a database called ``name``."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def create_database(name: str) -> str:
    """A new, migrated database; returns its SQLAlchemy URL."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_BASE}/{name}"
    upgrade(url)
    return url


def drop_database(name: str) -> None:
    """Drop the database ``name`` if it exists, closing its connections."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def conll_examples(guide: Guide, split: str = "train", *, data: Path = DATA) -> list[Example]:
    """CoNLL sentences with their gold entities as (start, end, Label Studio label) character spans."""
    docs = load_docs(data / f"{split}.txt", spacy.blank("en"), labels=guide.labels).docs
    return [(d.text, [(e.start_char, e.end_char, guide.label_value(e.label_)) for e in d.ents]) for d in docs]


def annotation_event(guide: Guide, *, task_id: int, text: str, spans: list[tuple[int, int, str]]) -> dict[str, Any]:
    """A webhook body as Label Studio 1.23 sends it (the shape of tests/integration/conftest.py's)."""
    names = guide.label_studio
    regions = [
        {
            "id": f"r{i}",
            "from_name": names.from_name,
            "to_name": names.to_name,
            "type": "labels",
            "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]},
        }
        for i, (s, e, label) in enumerate(spans)
    ]
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": LS_PROJECT, "label_config": "<View/>"},
        "task": {"id": task_id, "data": {names.text_field: text}},
        "annotation": {
            "id": task_id,
            "task": task_id,
            "project": LS_PROJECT,
            "result": regions,
            "completed_by": 1,
            "was_cancelled": False,
            "updated_at": None,
            "lead_time": 3.5,
        },
    }


@contextlib.contextmanager
def fake_llm() -> Iterator[str]:
    """An OpenAI-compatible server on 127.0.0.1 that answers every completion at once with no entities."""
    answer = json.dumps(
        {
            "id": "bench",
            "object": "chat.completion",
            "created": 0,
            "model": "local",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": '{"entities":[]}'}}
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105},
        }
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            del args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free when asked."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def nerloop_server(env: dict[str, str], *, log: Path, startup_s: float = 120) -> Iterator[str]:
    """``nerloop serve`` as a subprocess with these ``NER_*`` variables (the caller's are dropped).

    Yields its URL once ``/health`` answers, and stops it (SIGTERM, then SIGKILL) afterwards.
    """
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
    nerloop = Path(sys.executable).with_name("nerloop")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(nerloop), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**clean, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nerloop serve exited ({proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"nerloop serve did not answer /health within {startup_s} s; see {log}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_env(database_url: str, llm_url: str, model_root: str) -> dict[str, str]:
    """The ``NER_*`` variables of a server on ``database_url`` whose LLM is the fake server at ``llm_url``."""
    return {
        "NER_DATABASE_URL": database_url,
        "NER_REDIS_URL": REDIS_URL,
        "NER_MODEL_ROOT": model_root,
        "NER_LLM__BASE_URL": llm_url,
        "NER_LLM__MAX_RETRIES": "0",
        "NER_LLM__TIMEOUT_S": "30",
    }


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# ---- this benchmark ---------------------------------------------------------------------------------------


def seed_examples(examples: list[Example], n: int) -> Iterator[Example]:
    """N distinct labelled texts: the sentences in order, then each joined with a deterministic partner."""
    k = len(examples)
    for i in range(n):
        rnd, j = divmod(i, k)
        text, spans = examples[j]
        if rnd:
            other, other_spans = examples[(j * 7919 + rnd * 104729) % k]
            shift = len(text) + 1
            text, spans = f"{text} {other}", spans + [(s + shift, e + shift, lab) for s, e, lab in other_spans]
        yield text, spans


def prepare(
    name: str, size: int, *, guide: Guide, examples: list[Example], reuse: bool, llm_type: str, ingested: int
) -> tuple[str, int]:
    """The database for one size, seeded (or reused), with ``llm_type`` routed to the LLM.

    Its URL and the project's id. The first ``ingested`` annotations go through ``ingest``, the rest are copies of them
    (:func:`_copy`).
    """
    url = f"{PG_BASE}/{name}"
    engine = make_engine(url)
    held = -1
    if reuse and database_exists(name):
        upgrade(url)
        with session_scope(session_factory(engine)) as db:
            held = db.scalar(select(func.count()).select_from(Annotation)) or 0
            db.execute(delete(LLMCall))  # an earlier run's completions would answer from the cache
    if held > size or held < 0 or ingested < held < size:  # copies are made all at once: none part way
        engine.dispose()
        url = create_database(name)
        engine = make_engine(url)
        held = 0
    if held < size:  # a kept database seeded part way (a bounded run stopped) goes on where it stopped
        _seed(engine, min(size, ingested), guide=guide, examples=examples, start=min(held, ingested))
        if size > ingested:
            _copy(url, ingested, size, text_field=guide.label_studio.text_field)
    with session_scope(session_factory(engine)) as db:
        project = register_project(db, ls_project_id=LS_PROJECT, guide=guide)
        for label in guide.labels:
            set_override(db, project, label=label, route="llm" if label == llm_type else "model")
        project_id = project.id
    engine.dispose()
    return url, project_id


def _seed(engine: Any, size: int, *, guide: Guide, examples: list[Example], start: int = 0) -> None:
    """Ingest annotations ``start + 1`` to ``size`` (committed every 500, so a stopped run resumes)."""
    factory = session_factory(engine)
    with session_scope(factory) as db:
        register_project(db, ls_project_id=LS_PROJECT, guide=guide)
    started = time.perf_counter()
    db = factory()
    try:
        for i, (text, spans) in enumerate(seed_examples(examples, size), start=1):
            if i <= start:
                continue
            ingest(db, annotation_event(guide, task_id=i, text=text, spans=spans))
            if i % 500 == 0 or i == size:
                db.commit()
            if i % 10_000 == 0:
                rate = (i - start) / (time.perf_counter() - started)
                print(f"  seeded {i:,} of {size:,} ({rate:.0f}/s)", flush=True)
    finally:
        db.close()
    elapsed = time.perf_counter() - started
    done = size - start
    print(f"  seeded {done:,} annotations through ingest in {elapsed:.0f} s ({done / elapsed:.0f}/s)", flush=True)


def _copy(url: str, base: int, size: int, *, text_field: str) -> None:
    """Annotations ``base + 1`` to ``size`` as copies of the first ``base`` ones, made in SQL.

    Every row that ingesting an annotation writes (its event, the annotation, the task's label and its spans) again with
    new task, annotation and event ids, the text given a suffix (`` #k``, after every span, so the spans stay where they
    are and every text is distinct), and the label watermark counted on. Seconds instead of the 25 minutes that
    ingesting 90,000 more takes here; what the endpoints read is the state ingestion would have left.
    """
    started = time.perf_counter()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=False) as conn:
        (events,) = conn.execute("SELECT max(id) FROM annotation_event").fetchone() or (0,)
        copies = (size - 1) // base  # copy k = 1 .. copies; the last one partial
        for k in range(1, copies + 1):
            n = min(base, size - k * base)
            ids = {"k": k, "n": n, "task_shift": k * base, "event_shift": k * events, "field": text_field}
            conn.execute(
                """INSERT INTO annotation_event (id, project_id, event_key, action, ls_task_id, ls_annotation_id,
                       payload, enqueued, label_change, received_at)
                   SELECT id + %(event_shift)s::integer, project_id, md5(event_key || '#' || %(k)s), action,
                          ls_task_id + %(task_shift)s::integer, ls_annotation_id + %(task_shift)s::integer,
                          payload, enqueued, label_change, received_at
                   FROM annotation_event WHERE ls_task_id <= %(n)s""",
                ids,
            )
            conn.execute(
                """INSERT INTO annotation (project_id, ls_annotation_id, ls_task_id, task_data, result,
                       was_cancelled, deleted, ls_updated_at, lead_time_s, completed_by, event_id)
                   SELECT project_id, ls_annotation_id + %(task_shift)s::integer, ls_task_id + %(task_shift)s::integer,
                          jsonb_set(task_data::jsonb, ARRAY[%(field)s],
                                    to_jsonb((task_data->>%(field)s) || ' #' || %(k)s))::json,
                          result, was_cancelled, deleted, ls_updated_at, lead_time_s, completed_by,
                          event_id + %(event_shift)s::integer
                   FROM annotation WHERE ls_task_id <= %(n)s""",
                ids,
            )
            conn.execute(
                """INSERT INTO task_label (project_id, ls_task_id, text, spans, event_id)
                   SELECT project_id, ls_task_id + %(task_shift)s::integer, text || ' #' || %(k)s, spans,
                          event_id + %(event_shift)s::integer
                   FROM task_label WHERE ls_task_id <= %(n)s""",
                ids,
            )
            conn.execute(
                """INSERT INTO labeled_span (project_id, ls_task_id, label)
                   SELECT project_id, ls_task_id + %(task_shift)s::integer, label FROM labeled_span
                   WHERE ls_task_id <= %(n)s""",
                ids,
            )
        conn.execute("SELECT setval('annotation_event_id_seq', (SELECT max(id) FROM annotation_event))")
        conn.execute(
            """UPDATE project SET label_watermark =
                   (SELECT count(*) FROM annotation_event e WHERE e.project_id = project.id AND e.label_change)"""
        )
        (held,) = conn.execute("SELECT count(*) FROM annotation").fetchone() or (0,)
        if held != size:
            raise RuntimeError(f"the copies hold {held:,} annotations, not {size:,}")
        conn.commit()
        conn.execute("ANALYZE")
    print(f"  copied annotations {base + 1:,} to {size:,} in SQL in {time.perf_counter() - started:.0f} s", flush=True)


def time_endpoint(client: httpx.Client, call: Any, repeats: int) -> dict[str, Any]:
    """First call, then up to ``repeats`` more; stops at the first error or timeout (bounded run)."""
    times: list[float] = []
    error = None
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        try:
            reply = call(client, i)
        except httpx.TimeoutException:
            error = f"timeout after {client.timeout.read} s"
            break
        if reply.status_code != 200:
            error = f"HTTP {reply.status_code}: {reply.text[:200]}"
            break
        times.append(time.perf_counter() - t0)
    rest = times[1:]
    return {
        "first": times[0] if times else None,
        "p50": statistics.median(rest) if rest else None,
        "p95": percentile(rest, 95) if rest else None,
        "n": len(rest),
        "error": error,
    }


def measure(url: str, project_id: int, texts: list[str], *, repeats: int, timeout: float) -> dict[str, Any]:
    """Each endpoint timed (:func:`time_endpoint`).

    ``/predict``'s answers also by their model version tag, which says whether the LLM part came within the request (no
    ``~llm-pending``) or was left to the ``llm`` queue.
    """
    fresh = iter(texts)
    tags: collections.Counter[str] = collections.Counter()

    def predict(client: httpx.Client, i: int) -> httpx.Response:
        task = {"id": 9_000_000 + i, "data": {"text": next(fresh)}}
        reply = client.post("/predict", json={"project": f"{LS_PROJECT}.0", "tasks": [task]})
        if reply.status_code == 200:
            tag = str(reply.json()["results"][0].get("model_version", ""))
            tags["LLM part pending" if "~llm-pending" in tag else "LLM part answered"] += 1
        return reply

    calls = {
        "predict": predict,
        "dashboard": lambda c, i: c.get(f"/dashboard/{project_id}"),
        "progress": lambda c, i: c.get(f"/api/projects/{project_id}/progress"),
    }
    with httpx.Client(base_url=url, timeout=timeout) as client:
        results = {name: time_endpoint(client, call, repeats) for name, call in calls.items()}
    results["predict"]["answers"] = dict(tags)
    return results


ENDPOINTS = {"predict": "POST /predict (1 task)", "dashboard": "GET /dashboard/{id}", "progress": "GET .../progress"}


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def report(results: dict[int, dict[str, Any]]) -> None:
    """Print the seconds per size and endpoint, then each size's p50 as a ratio to the smallest size's."""
    sizes = sorted(results)
    print("\nseconds: first call / p50 / p95 of the next calls")
    print(f"{'annotations':>12} | " + " | ".join(f"{ENDPOINTS[e]:<28}" for e in ENDPOINTS))
    for size in sizes:
        cells = []
        for e in ENDPOINTS:
            r = results[size][e]
            cell = f"{_s(r['first'])} / {_s(r['p50'])} / {_s(r['p95'])}"
            cells.append(f"{cell:<28}" if not r["error"] else f"{cell} ({r['error'][:40]})")
        print(f"{size:>12,} | " + " | ".join(cells))
    base = sizes[0]
    print(f"\np50 ratio to {base:,} annotations")
    for size in sizes:
        cells = []
        for e in ENDPOINTS:
            now, then = results[size][e]["p50"], results[base][e]["p50"]
            cells.append(f"{now / then:>10.1f}x" if now and then else f"{'-':>11}")
        print(f"{size:>12,} | " + " | ".join(cells))
    for size in sizes:
        answers = results[size]["predict"].get("answers") or {}
        print(f"{size:,} /predict answers: " + ", ".join(f"{v} {k}" for k, v in sorted(answers.items())))
        for e in ENDPOINTS:
            if results[size][e]["error"]:
                print(f"{size:,} {e}: {results[size][e]['error']}")


def main() -> None:
    """Seed (or reuse) a database per size, time the endpoints on each and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the CoNLL-2003 directory")
    parser.add_argument("--sizes", default="100,1000,10000", help="annotations per project, comma-separated")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls after the first, per endpoint")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per request")
    parser.add_argument("--llm-type", default="misc", help="the entity type routed to the LLM")
    parser.add_argument("--keep", action="store_true", help="keep the bench_size_<N> databases")
    parser.add_argument("--reuse", action="store_true", help="reuse kept bench_size_<N> databases (implies --keep)")
    parser.add_argument(
        "--ingest",
        type=int,
        default=10_000,
        help="annotations seeded through ingest; past them, copies made in SQL (0: every one through ingest)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    guide = load_guide(GUIDE)
    examples = [e for e in conll_examples(guide, data=args.data) if e[0].strip()]
    tests = [t for t, _ in conll_examples(guide, "test", data=args.data) if t.strip()]
    results: dict[int, dict[str, Any]] = {}
    with fake_llm() as llm_url, tempfile.TemporaryDirectory() as scratch:
        for size in sizes:
            name = f"bench_size_{size}"
            print(f"{size:,} annotations: preparing {name} ...", flush=True)
            url, project_id = prepare(
                name,
                size,
                guide=guide,
                examples=examples,
                reuse=args.reuse,
                llm_type=args.llm_type,
                ingested=args.ingest or size,
            )
            try:
                env = server_env(url, llm_url, scratch)
                with nerloop_server(env, log=Path(scratch) / f"serve-{size}.log") as base:
                    results[size] = measure(base, project_id, tests, repeats=args.repeats, timeout=args.timeout)
                print(f"  {json.dumps(results[size])}", flush=True)
            finally:
                if not (args.keep or args.reuse):
                    drop_database(name)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
