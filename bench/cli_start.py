"""Benchmark: how long the light ``nerloop`` commands take to start, before and after lazy imports (issue #11).

Runs each command ``--runs`` times in a fresh interpreter of this venv, once with the sources of ``--baseline-ref``
(extracted with ``git archive`` into a temporary folder) and once with the working tree, both launched the same way
(``python -c 'from workers.cli import main; main()'`` with the tree first on ``PYTHONPATH``, which is what the
``nerloop`` console script runs). ``runs`` and ``project list`` read a fresh SQLite database (``--database-url``
for another) with the CoNLL-2003 project registered. A last run of each under ``python -X importtime`` lists the
heavy packages the command imported (torch, spacy, transformers, celery) and the import time of ``workers.cli``.
Prints a table: median wall time per tree, the ratio, and the heavy imports.

    .venv/bin/python bench/cli_start.py [--baseline-ref b78a7e8] [--runs 3] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotation_guide import load_guide  # noqa: E402
from backend.db.session import make_engine, session_factory, session_scope, upgrade  # noqa: E402
from backend.services.projects import register_project  # noqa: E402

# The last commit before the CLI imported its heavy packages lazily.
BASELINE_REF = "b78a7e8"
HEAVY = ("torch", "spacy", "transformers", "celery")
COMMANDS = (
    ["--help"],
    ["runs", "--help"],
    ["runs", "--project", "1"],
    ["model", "list", "--project", "1"],
    ["project", "list"],  # new in the working tree: n/a before
)
LAUNCH = (
    "import sys, workers.cli; assert workers.cli.__file__.startswith(sys.path[1]), workers.cli.__file__; "
    "sys.argv[0] = 'nerloop'; workers.cli.main()"
)
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def extract(ref: str, into: Path) -> Path:
    """The sources of ``ref`` in ``into`` (git archive; nothing in the working tree changes)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run(tree: Path, args: list[str], env: dict[str, str], *, importtime: bool = False) -> tuple[float, str] | None:
    """Wall seconds of one command from ``tree``, and its stderr.

    None when the command fails (or does not exist in that tree).
    """
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", LAUNCH, *args]
    started = time.perf_counter()
    # cwd: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH
    done = subprocess.run(
        command, cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        print(f"nerloop {' '.join(args)} from {tree}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
        return None
    return elapsed, done.stderr


def imports(stderr: str) -> tuple[list[str], float]:
    """The heavy top-level packages imported, and the cumulative import time of workers.cli in seconds."""
    heavy: set[str] = set()
    cli_s = 0.0
    for match in IMPORT_LINE.finditer(stderr):
        name = match[4]
        if name.split(".")[0] in HEAVY:
            heavy.add(name.split(".")[0])
        if name == "workers.cli":
            cli_s = int(match[2]) / 1e6
    return sorted(heavy), cli_s


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    """Time each light command's start with the baseline's sources and the working tree; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-start-") as tmp:
        url = options.database_url or f"sqlite:///{Path(tmp) / 'nerloop.db'}"
        upgrade(url)
        engine = make_engine(url)
        with session_scope(session_factory(engine)) as db:
            guide = load_guide(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")
            register_project(db, ls_project_id=1, guide=guide, retrain_threshold=20)
        engine.dispose()
        baseline = extract(options.baseline_ref, Path(tmp) / "baseline")
        trees = {f"{options.baseline_ref}": baseline, "working tree": ROOT}
        env = {**os.environ, "NER_DATABASE_URL": url, "NO_COLOR": "1", "COLUMNS": "120"}
        load = os.getloadavg()
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs")
        header = f"| command | {options.baseline_ref} s | now s | ratio | heavy imports before | heavy imports now |"
        rows = []
        for args in COMMANDS:
            medians: dict[str, float | None] = {}
            heavy: dict[str, str] = {}
            for name, tree in trees.items():
                runs = [run(tree, list(args), env) for _ in range(options.runs)]
                probe = run(tree, list(args), env, importtime=True)
                if probe is None or any(r is None for r in runs):
                    medians[name], heavy[name] = None, "n/a"
                    continue
                medians[name] = statistics.median(r[0] for r in runs if r is not None)
                found, cli_s = imports(probe[1])
                heavy[name] = f"{', '.join(found) or 'none'} (workers.cli {cli_s:.2f} s)"
            before, now = medians[options.baseline_ref], medians["working tree"]
            ratio = f"{before / now:.1f}x" if before and now else "n/a"
            rows.append(
                f"| `nerloop {' '.join(args)}` | {_seconds(before)} | {_seconds(now)} | {ratio} "
                f"| {heavy[options.baseline_ref]} | {heavy['working tree']} |"
            )
        print(header + "\n|---|---|---|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
