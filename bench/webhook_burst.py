"""Benchmark: a burst of Label Studio webhooks from many concurrent clients (issue #10, part 6).

Starts the real server (``.venv/bin/nerloop serve`` on a free 127.0.0.1 port) on a fresh PostgreSQL database
``bench_burst_<pid>`` with the CoNLL-2003 project registered and Redis database 12 as the broker (no worker: the
jobs just queue; database 12 is emptied before and after), then sends ``--events`` distinct
``ANNOTATION_CREATED`` webhooks (CoNLL training sentences with their gold entities) from ``--clients`` threads,
each holding one keep-alive connection as an HTTP client does. With ``--load-training`` a real spaCy training
(``bench/train_conll.py``, CNN) runs in a subprocess for the whole burst, as when a retrain runs next to the
backend, at the niceness a train worker runs at (``--training-nice``, ``workers.cli.TRAIN_NICE``; 0 to measure
the training at the backend's priority); the training is recorded as the project's running run, as a train worker
records the run it trains, so the webhooks know a retrain is under way (``--no-run-row``: not recorded, as before
a worker picks up the check: every event past the threshold then asks for one). Reports events/s,
p50/p95/p99/max latency, errors by kind (HTTP status, connection closed without a reply, timeout) with, for each
closed connection, whether it had been reused, how long it had been idle and what its previous reply was, and
whether every event was stored exactly once (``annotation_event`` rows).

    .venv/bin/python bench/webhook_burst.py [--events 10000] [--clients 40] [--load-training [--training-nice 10]
                                            [--no-run-row]] [--deadline 900] [--connection-per-event]
                                            [--server-setting NER_NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling bench/project_size.py

from project_size import (
    DATA,
    GUIDE,
    REDIS_URL,
    ROOT,
    annotation_event,
    conll_examples,
    create_database,
    drop_database,
    fake_llm,
    nerloop_server,
    percentile,
    seed_examples,
    server_env,
)

from annotation_guide import load_guide
from backend.db.models import Project, TrainingRun
from backend.db.session import make_engine, session_factory, session_scope
from backend.services.projects import register_project
from workers.cli import TRAIN_NICE

CLOSED = "closed without reply"


@dataclass(frozen=True)
class Outcome:
    """One webhook delivery as the client saw it."""

    index: int
    latency: float
    kind: str  # "200", "HTTP 500", CLOSED, "timeout", "connect error", ...
    reused: bool  # sent on a connection that had already carried a reply
    idle_s: float | None  # on a reused connection: seconds since its previous reply
    previous: str | None  # on a reused connection: the kind of its previous reply
    queued: bool | None = None


class Burst:
    """``clients`` threads, one keep-alive connection each, taking the next event until all are sent.

    Each stops early when the deadline passes. ``connection_per_event``: each event on a new connection (its request
    says ``Connection: close``), as Label Studio sends webhooks (``requests`` without a kept session:
    ``label_studio.core.utils.io.ssrf_safe_request``).
    """

    def __init__(
        self,
        url: str,
        bodies: list[bytes],
        *,
        clients: int,
        timeout: float,
        deadline: float,
        connection_per_event: bool = False,
    ) -> None:
        self.url, self.bodies, self.clients, self.timeout, self.deadline = url, bodies, clients, timeout, deadline
        self.connection_per_event = connection_per_event
        self.next = 0
        self.lock = threading.Lock()
        self.outcomes: list[Outcome] = []

    def _take(self) -> int | None:
        with self.lock:
            if self.next >= len(self.bodies) or time.monotonic() > self.deadline:
                return None
            self.next += 1
            return self.next - 1

    def _client(self) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=None)
        mine: list[Outcome] = []
        new_connection = [False]

        def trace(name: str, info: dict[str, Any]) -> None:
            del info
            if name == "connection.connect_tcp.started":
                new_connection[0] = True

        last: tuple[str, float] | None = None  # the open connection's previous reply, and when it ended
        headers = {"content-type": "application/json"}
        if self.connection_per_event:
            headers["connection"] = "close"
        with httpx.Client(base_url=self.url, timeout=self.timeout, limits=limits) as client:
            while (i := self._take()) is not None:
                new_connection[0] = False
                t0 = time.perf_counter()
                queued = None
                try:
                    reply = client.post(
                        "/webhook", content=self.bodies[i], headers=headers, extensions={"trace": trace}
                    )
                    kind = str(reply.status_code) if reply.status_code < 300 else f"HTTP {reply.status_code}"
                    if reply.status_code == 200:
                        queued = reply.json().get("queued")
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                    kind = f"{CLOSED} ({type(exc).__name__})"  # EOF or reset before any reply
                except httpx.TimeoutException:
                    kind = "timeout"
                except httpx.ConnectError:
                    kind = "connect error"
                except httpx.HTTPError as exc:
                    kind = type(exc).__name__
                t1 = time.perf_counter()
                reused = not new_connection[0] and last is not None
                mine.append(
                    Outcome(
                        i,
                        t1 - t0,
                        kind,
                        reused,
                        t0 - last[1] if reused and last else None,
                        last[0] if reused and last else None,
                        queued,
                    )
                )
                keeps = kind[0].isdigit() or kind.startswith("HTTP")
                closes = keeps and reply.headers.get("connection", "").lower() == "close"
                last = (kind, t1) if keeps and not closes else None
        with self.lock:
            self.outcomes.extend(mine)

    def run(self) -> float:
        """Send every event from the client threads; return the wall seconds the burst took."""
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started


def stored(database_url: str) -> dict[str, int]:
    """What the database holds: event rows, distinct annotation ids, annotations, and the ids themselves."""
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT ls_annotation_id) FROM annotation_event"
        ).fetchone() or (0, 0)
        annotations = conn.execute("SELECT count(*) FROM annotation").fetchone()
        ids = {r[0] for r in conn.execute("SELECT ls_annotation_id FROM annotation_event")}
    return {"rows": rows, "distinct": distinct, "annotations": annotations[0] if annotations else 0, "ids": ids}


def start_training(log: Path, models: Path, data: Path, *, nice: int) -> subprocess.Popen[bytes]:
    """A real CNN training on CoNLL (bench/train_conll.py) at CPU niceness ``nice``, long enough to outlast the burst.

    A ``nerloop worker --queues train`` runs at ``workers.cli.TRAIN_NICE``. Returns once the training has taken its
    first steps.
    """
    command = [
        "nice",
        "-n",
        str(nice),
        sys.executable,
        str(ROOT / "bench" / "train_conll.py"),
        "--pipelines",
        "cnn",
        "--train-limit",
        "5000",
        "--max-steps",
        "1000000",
        "--models",
        str(models),
        "--data",
        str(data),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if re.search(r"\] train .* step [1-9]", log.read_text(errors="replace")):
            return proc
        time.sleep(1)
    proc.kill()
    raise RuntimeError(f"the training load did not start training within 300 s; see {log}")


def report(outcomes: list[Outcome], elapsed: float, *, expected: int, store: dict[str, Any], log: str) -> None:
    """Print the burst's rate, latencies, replies and what was stored against what was sent."""
    ok = [o for o in outcomes if o.kind.isdigit()]
    lat = [o.latency for o in outcomes]
    print(f"\nsent {len(outcomes):,} of {expected:,} events in {elapsed:.1f} s: {len(outcomes) / elapsed:.0f} events/s")
    if lat:
        print(
            f"latency s (every delivery): p50 {statistics.median(lat):.3f}  p95 {percentile(lat, 95):.3f}  "
            f"p99 {percentile(lat, 99):.3f}  max {max(lat):.3f}; over 1 s: {sum(x > 1 for x in lat):,} "
            f"({sum(x > 1 for x in lat) / len(lat):.1%})"
        )
    kinds = collections.Counter(o.kind for o in outcomes)
    print("replies: " + ", ".join(f"{k}: {v:,}" for k, v in kinds.most_common()))
    print(f"not queued (broker): {sum(o.queued is False for o in ok):,}")
    closed = [o for o in outcomes if o.kind.startswith(CLOSED)]
    after = collections.Counter(f"previous reply {o.previous}" if o.reused else "new connection" for o in closed)
    if closed:
        print(f"{CLOSED}: {len(closed):,}, on " + ", ".join(f"{k}: {v}" for k, v in after.most_common()))
    for o in closed[:10]:
        how = f"reused, idle {o.idle_s:.3f} s, previous reply {o.previous}" if o.reused else "new connection"
        print(f"  event {o.index}: {o.kind} after {o.latency:.3f} s ({how})")
    ok_ids = {o.index + 1 for o in ok}
    ids = store["ids"]
    print(
        f"stored: {store['rows']:,} annotation_event rows, {store['distinct']:,} distinct annotations "
        f"({store['rows'] - store['distinct']:,} duplicates), {store['annotations']:,} annotation rows; "
        f"acknowledged but missing: {len(ok_ids - ids):,}; stored without a 2xx reply: {len(ids - ok_ids):,}"
    )
    problems = collections.Counter(
        m.group(1)[:160] for m in re.finditer(r"^(\S*(?:Error|Exception)\b.*)$", log, flags=re.MULTILINE)
    )
    print(
        f"server log: {log.count('Exception in ASGI application')} 'Exception in ASGI application', "
        f"{log.count('unexpected error')} 'unexpected error'"
    )
    for line, count in problems.most_common(8):
        print(f"  {count:>5} x {line}")


def record_running(url: str, *, pid: int) -> None:
    """Record the training load as the project's running run, as a train worker records the run it trains.

    The webhook then knows a retrain is under way (``backend.services.watermark.retrain_due``), as in production
    when a burst arrives during a training; its heartbeat is fresh and its pid alive, so the sweep leaves it.
    """
    engine = make_engine(url)
    try:
        with session_scope(session_factory(engine)) as db:
            now = datetime.now(UTC)
            db.add(
                TrainingRun(
                    project_id=db.scalars(select(Project)).one().id,
                    annotation_watermark=0,
                    trigger="threshold",
                    status="running",
                    stage="train",
                    started_at=now,
                    heartbeat_at=now,
                    host=socket.gethostname(),
                    pid=pid,
                )
            )
    finally:
        engine.dispose()


def main() -> None:
    """Start the server (and the training load), send the burst, print the report and clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the CoNLL-2003 directory")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a client waits for one reply")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds after which no event is sent")
    parser.add_argument("--load-training", action="store_true", help="run a spaCy training during the burst")
    parser.add_argument(
        "--training-nice",
        type=int,
        default=TRAIN_NICE,
        help=f"CPU niceness of the training load (default {TRAIN_NICE}, as the train worker runs; 0: as before)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and the server log")
    parser.add_argument(
        "--no-run-row",
        action="store_true",
        help="with --load-training, record no running run for it (every event past the threshold then asks for a "
        "retrain check, as when no worker has picked up the check yet)",
    )
    parser.add_argument(
        "--connection-per-event",
        action="store_true",
        help="each event on a new connection, as Label Studio sends webhooks (default: one keep-alive connection "
        "per client)",
    )
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NER_NAME=VALUE",
        help="a setting for the server (repeatable), e.g. NER_WEBHOOK_CONCURRENCY=8",
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.server_setting)
    guide = load_guide(GUIDE)
    examples = [e for e in conll_examples(guide, data=args.data) if e[0].strip()]
    bodies = [
        json.dumps(annotation_event(guide, task_id=i, text=text, spans=spans)).encode()
        for i, (text, spans) in enumerate(seed_examples(examples, args.events), start=1)
    ]
    name = f"bench_burst_{os.getpid()}"
    broker = redis.Redis.from_url(REDIS_URL)
    broker.flushdb()
    scratch = Path(tempfile.mkdtemp(prefix="nerloop-burst-"))
    url = create_database(name)
    training = None
    try:
        engine = make_engine(url)
        with session_scope(session_factory(engine)) as db:
            register_project(db, ls_project_id=1, guide=guide)
        engine.dispose()
        if args.load_training:
            print(f"starting the training load (niceness {args.training_nice}) ...", flush=True)
            training = start_training(scratch / "training.log", scratch / "models", args.data, nice=args.training_nice)
            if not args.no_run_row:
                record_running(url, pid=training.pid)
        load = os.getloadavg()
        with (
            fake_llm() as llm_url,
            nerloop_server(server_env(url, llm_url, str(scratch)) | extra, log=scratch / "serve.log") as base,
        ):
            burst = Burst(
                base,
                bodies,
                clients=args.clients,
                timeout=args.timeout,
                deadline=time.monotonic() + args.deadline,
                connection_per_event=args.connection_per_event,
            )
            print(f"{args.events:,} webhooks, {args.clients} clients, load average {load[0]:.2f} ...", flush=True)
            elapsed = burst.run()
        trained_throughout = training is not None and training.poll() is None
        print(
            f"load average at the end {os.getloadavg()[0]:.2f}; "
            f"training load: {'ran throughout' if trained_throughout else 'none' if training is None else 'ENDED'}"
        )
        outcomes = sorted(burst.outcomes, key=lambda o: o.index)
        report(outcomes, elapsed, expected=args.events, store=stored(url), log=(scratch / "serve.log").read_text())
    finally:
        if training is not None:
            training.kill()
            training.wait()
        broker.flushdb()
        if args.keep:
            print(f"kept database {name} and {scratch}")
        else:
            drop_database(name)
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
