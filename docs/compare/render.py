"""Render each finished study report's HTML page from its committed ``docs/compare/<corpus>/report.json``.

The pages inline plotly's JavaScript (several MB each), so they are built, not committed (``.gitignore``);
``report.json`` and ``report.md`` are. Run by ``run.sh`` after each corpus; by hand:

    .venv/bin/python docs/compare/render.py [CORPUS ...]     (default: every corpus with a report.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ml.compare_report import render_pages  # noqa: E402  (the checkout's ml/, also without an installed package)

HERE = Path(__file__).resolve().parent


def main(corpora: list[str]) -> None:
    """Write ``report.html`` beside each corpus's ``report.json``; a corpus without one is an error."""
    folders = [HERE / c for c in corpora] or sorted(p.parent for p in HERE.glob("*/report.json"))
    for folder in folders:
        stored = folder / "report.json"
        if not stored.is_file():
            raise SystemExit(f"{stored} does not exist: run docs/compare/run.sh for {folder.name} first")
        _, page = render_pages(json.loads(stored.read_text(encoding="utf-8")))
        (folder / "report.html").write_text(page, encoding="utf-8")
        sys.stdout.write(f"{folder / 'report.html'} ({len(page) / 1e6:.1f} MB)\n")


if __name__ == "__main__":
    main(sys.argv[1:])
