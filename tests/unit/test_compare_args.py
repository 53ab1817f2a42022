"""``nerloop compare``: bad options end with one line on stderr and exit code 2, before any model or LLM work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.cli import app
from ml.cli import app as ml_app

ROOT = Path(__file__).resolve().parents[2]
GUIDE = str(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")


def _args(tmp_path: Path, *more: str) -> list[str]:
    data = tmp_path / "data.txt"
    data.write_text("EU\tB-organisation\nrejects\tO\n\n", encoding="utf-8")
    base = ["compare", "--guide", GUIDE, "--train", str(data), "--test", str(data), "--out", str(tmp_path / "o")]
    return [*base, *more]


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (["--sizes", "50,lots"], "--sizes takes comma-separated whole numbers or all, not 'lots'"),
        (["--shots", "0,all"], "--shots takes comma-separated whole numbers, not 'all'"),
        (["--architectures", "cnn,bert"], "--architectures takes cnn and/or transformer"),
        (["--strategies", "nearest"], "--strategies takes random and/or similar"),
        (["--llm-url", "http://127.0.0.1:1/v1", "--gguf", "x.gguf"], "give the LLM as --llm-url URL or --gguf FILE"),
        (["--gguf", "missing.gguf"], "missing.gguf: no such GGUF file"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path: Path, more: list[str], message: str) -> None:
    result = CliRunner().invoke(app, _args(tmp_path, *more))
    assert result.exit_code == 2, result.output
    assert f"error: {message}" in result.stderr


def test_a_missing_file_names_it(tmp_path: Path) -> None:
    args = _args(tmp_path)
    args[args.index("--test") + 1] = str(tmp_path / "nope.txt")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "nope.txt" in result.stderr


def test_python_m_ml_has_no_llm_client(tmp_path: Path) -> None:
    result = CliRunner().invoke(ml_app, _args(tmp_path, "--llm-url", "http://127.0.0.1:1/v1"))
    assert result.exit_code == 2
    assert "run `nerloop compare`" in result.stderr
