"""The light ``nerloop`` commands start without the heavy packages (issue #11: every CLI call took 20 s to start).

One fresh interpreter runs the light commands in-process and reports what they imported; the wall time is
measured by ``bench/cli_start.py``, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from annotation_guide import Guide
from backend.db.session import upgrade
from backend.services.projects import register_project
from tests.conftest import ROOT, open_db

HEAVY = ("torch", "spacy", "transformers", "thinc", "celery", "uvicorn", "fastapi", "label_studio_sdk")
LIGHT = (
    ["--help"],
    ["runs", "--help"],
    ["runs", "--project", "1"],
    ["project", "list"],
    ["model", "list", "--project", "1"],
    ["token", "--home", "{home}"],
    ["worker", "--help"],
    ["up", "--help"],
)
PROBE = """
import json, sys
from typer.testing import CliRunner
from workers.cli import app
codes = {}
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, args)
    codes[" ".join(args)] = [result.exit_code, result.output[-300:]]
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_light_commands_import_no_heavy_package(tmp_path: Path, conll_guide: Guide) -> None:
    url = f"sqlite:///{tmp_path / 'nerloop.db'}"
    upgrade(url)
    with open_db(url) as db:
        register_project(db, ls_project_id=5, guide=conll_guide, retrain_threshold=20)
    (tmp_path / "label-studio-token").write_text("secret-token\n")
    commands = [[part.format(home=tmp_path) for part in args] for args in LIGHT]
    env = {**os.environ, "NER_DATABASE_URL": url, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands), json.dumps(HEAVY)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {command: code for command, (code, _) in report["codes"].items()} == {
        " ".join(args): 0 for args in commands
    }, report["codes"]
    assert report["codes"][f"token --home {tmp_path}"][1].strip() == "secret-token"
    assert "conll2003" in report["codes"]["project list"][1]  # the project it read
    assert report["heavy"] == [], f"light commands imported {report['heavy']}: import them inside the command"
