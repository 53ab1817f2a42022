"""Benchmark: threshold-to-serving in the demo's loop, labelled by an oracle annotator (issue #11, deliverable 3).

Runs what ``nerloop up`` runs (Label Studio, the llama.cpp server with the tiny model, the backend, the three
worker pools; Redis database ``NERLOOP_BENCH_REDIS``, 2 by default) in a temporary folder, with the demo project
(300 CoNLL-2003 training sentences, retrain threshold 20). The oracle takes Label Studio's next task
(``GET /api/projects/{id}/next``, the order annotators get), labels it with its CoNLL gold entities through the SDK,
and waits ``--seconds-per-task`` before the next one, as an annotator would. Meanwhile the ``llm`` pool pre-annotates
ahead of it (the LLM pass starts when the project is connected). Timed, from the label that crosses the threshold
(the ``--threshold``-th): the run's creation, its start on the ``train`` pool, its end, and the moment the new
version serves. Prints one table row per threshold crossed.

    .venv/bin/python bench/loop_latency.py [--labels 25] [--seconds-per-task 3] [--threshold 20]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import spacy
from label_studio_sdk import LabelStudio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotation_guide import load_guide  # noqa: E402
from ml.converters import load_docs  # noqa: E402
from workers import up  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "conll2003" / "train.txt"
GUIDE = ROOT / "annotation_guide" / "guides" / "conll2003.yaml"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free when asked."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gold_by_text(limit: int) -> dict[str, list[tuple[int, int, str]]]:
    """The demo's texts (CoNLL training sentences, as ``nerloop up`` imports them) -> their gold entities."""
    guide = load_guide(GUIDE)
    docs = load_docs(DATA, spacy.blank("en"), labels=guide.labels).docs[:limit]
    return {d.text: [(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs}


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 timestamp, or None for None."""
    return None if value is None else datetime.fromisoformat(value).timestamp()


def main() -> None:
    """Run the demo's loop with the oracle annotator and print threshold-to-serving per retrain."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=25, help="tasks the oracle labels")
    parser.add_argument("--threshold", type=int, default=20, help="the demo's retrain threshold")
    parser.add_argument("--seconds-per-task", type=float, default=3.0, help="the oracle's pace")
    parser.add_argument("--serve-timeout", type=float, default=900, help="give up waiting for a version after this")
    args = parser.parse_args()
    os.environ["NER_RETRAIN_EVERY_N_LABEL_CHANGES"] = str(args.threshold)
    home = Path(tempfile.mkdtemp(prefix="nerloop-loop-bench-"))
    cfg = up.UpConfig(
        home=home,
        guide=GUIDE,
        tasks=DATA,
        task_limit=300,
        ls_port=free_port(),
        backend_port=free_port(),
        llm_port=free_port(),
        redis_url=os.environ.get("NERLOOP_BENCH_REDIS", "redis://127.0.0.1:6379/2"),
    )
    gold = gold_by_text(300)

    def say(message: str) -> None:
        print(f"[up] {message}", file=sys.stderr, flush=True)

    started = time.monotonic()
    try:
        up.start_all(cfg, say)
        up.bootstrap(cfg, say)
        print(f"stack and project ready in {time.monotonic() - started:.0f} s", flush=True)
        backend = f"http://127.0.0.1:{cfg.backend_port}"
        ls_url = f"http://127.0.0.1:{cfg.ls_port}"
        token = up.api_token(home)
        with httpx.Client(timeout=120) as http:
            project = http.get(f"{backend}/api/projects").json()[0]
            ls_id, project_id = project["ls_project_id"], project["id"]
            client = LabelStudio(base_url=ls_url, api_key=token, httpx_client=http)  # type: ignore[no-untyped-call]
            crossings: list[dict[str, Any]] = []
            for n in range(1, args.labels + 1):
                task = http.get(
                    f"{ls_url}/api/projects/{ls_id}/next", headers={"Authorization": f"Token {token}"}
                ).json()
                text = task["data"]["text"]
                result = [
                    {
                        "from_name": "label",
                        "to_name": "text",
                        "type": "labels",
                        "value": {"start": a, "end": b, "text": text[a:b], "labels": [label]},
                    }
                    for a, b, label in gold[text]
                ]
                client.annotations.create(id=task["id"], result=result)
                if n % args.threshold == 0:
                    crossings.append({"labels": n, "at": time.time()})
                time.sleep(args.seconds_per_task)
            deadline = time.monotonic() + args.serve_timeout
            runs: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                runs = http.get(f"{backend}/api/projects/{project_id}/runs").json()
                automatic = [r for r in runs if r["trigger"] != "cli"]
                if len(automatic) >= len(crossings) and all(
                    r["status"] in ("succeeded", "rejected", "failed") for r in automatic
                ):
                    break
                time.sleep(1)
            versions = {
                v["version"]: v for v in http.get(f"{backend}/api/projects/{project_id}/progress").json()["versions"]
            }
        print("| labels | run | status | run created | training started | finished | version | threshold-to-serving |")
        print("|---|---|---|---|---|---|---|---|")
        for crossing, run in zip(crossings, sorted(runs, key=lambda r: r["id"]), strict=False):
            at = crossing["at"]
            created, started_at, finished = (
                parse_time(run.get(k)) for k in ("created_at", "started_at", "finished_at")
            )
            served = finished if run["status"] == "succeeded" and run["model_version"] in versions else None

            def since(t: float | None, at: float = at) -> str:
                return "-" if t is None else f"+{t - at:.1f} s"

            print(
                f"| {crossing['labels']} | {run['id']} | {run['status']} | {since(created)} | {since(started_at)} | "
                f"{since(finished)} | {run['model_version'] or '-'} | **{since(served)}** |"
            )
        print(json.dumps({"crossings": crossings, "runs": runs}, default=str), file=sys.stderr)
    finally:
        up.stop_all(cfg, say)


if __name__ == "__main__":
    main()
