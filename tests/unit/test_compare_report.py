"""The comparison's report (``ml.compare_report``) and its test sample (``ml.compare_rows.llm_sample``).

The HTML page escapes what users name (labels, the project), the Markdown and HTML say where the sample and the dev docs
came from, and each saved prediction names its document's index in the test file.
"""

from __future__ import annotations

import json
from pathlib import Path

import spacy
from spacy.tokens import Doc, Span

from ml.compare_report import render_pages, write_report
from ml.compare_rows import CompareOptions, CompareResult, Row, llm_sample
from ml.evaluation import score_spans
from ml.prediction import ScoredSpan

EVIL = "<script>alert('x')</script>"


def _docs(n: int) -> list[Doc]:
    nlp = spacy.blank("en")
    docs = []
    for i in range(n):
        doc = nlp(f"Ada {i} wrote code")
        doc.ents = [Span(doc, 0, 1, label=EVIL)]
        docs.append(doc)
    return docs


def _result(tests: list[Doc], *, limit: int, dev_given: bool) -> CompareResult:
    options = CompareOptions(shots=(0,), architectures=("cnn",), limit_llm=limit, seed=3)
    index = llm_sample(len(tests), limit, options.seed)
    sample = [tests[i] for i in index]
    result = CompareResult([], {}, sample, 8, 2, options, all_test_docs=tests)
    result.sample_index, result.dev_given = index, dev_given
    right = [[ScoredSpan(0, 3, EVIL, "Ada", 0.5)] for _ in sample]
    for name, kind, spans in (("LLM zero-shot", "llm", [[] for _ in sample]), ("cnn 8 docs", "fine-tuned", right)):
        report = score_spans(sample, spans, labels=[EVIL], bootstrap=0)
        row = Row(name, kind, report, [0.01], 10.0, 0.5, 1.0, architecture="cnn" if kind != "llm" else None)  # type: ignore[arg-type]
        row.labels_per_type = {EVIL: 8}
        result.rows.append(row)
        result.predictions[name] = spans
    return result


def test_the_html_report_escapes_labels_and_the_project_name(tmp_path: Path) -> None:
    result = _result(_docs(6), limit=0, dev_given=False)
    write_report(result, tmp_path, inputs={"guide": f"project 1 ({EVIL})", "train": "t", "test": "t"})
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert EVIL not in html  # neither in a table nor in the charts' data
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<script" in html  # plotly's own script, inserted as it is
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert f"project 1 ({EVIL})" in markdown  # Markdown is text: nothing to escape
    assert "from the end of the training file" in markdown


def test_a_limited_comparison_scores_a_seeded_random_sample_and_says_so(tmp_path: Path) -> None:
    tests = _docs(40)
    result = _result(tests, limit=10, dev_given=True)
    inputs = {"guide": "g", "train": "t", "test": "t", "dev": "2 of the project's dev tasks"}
    data = write_report(result, tmp_path, inputs=inputs)
    index = llm_sample(40, 10, 3)
    assert index != list(range(10))
    assert data["test_sample"] == {"seed": 3, "indices": index}
    saved = [json.loads(line) for line in (tmp_path / "predictions" / "cnn-8-docs.jsonl").read_text().splitlines()]
    assert [s["doc"] for s in saved] == index
    assert [s["text"] for s in saved] == [tests[i].text for i in index]
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert "at random" in text
        assert "default_rng(3)" in text
        assert "the first 10" not in text
        assert "2 of the project&#39;s dev tasks" in text or "2 of the project's dev tasks" in text
        assert "end of the training file" not in text


def test_the_sample_is_seeded_sorted_distinct_and_whole_without_a_limit() -> None:
    first = llm_sample(1000, 200, 0)
    assert first == llm_sample(1000, 200, 0)
    assert first == sorted(set(first))
    assert len(first) == 200
    assert first != llm_sample(1000, 200, 1)
    assert max(first) > 500  # not the file's first documents
    assert llm_sample(5, 0, 0) == llm_sample(5, 9, 0) == [0, 1, 2, 3, 4]


def test_a_stored_report_renders_the_same_pages_again(tmp_path: Path) -> None:
    result = _result(_docs(40), limit=10, dev_given=True)
    write_report(result, tmp_path, inputs={"guide": "g", "train": "t", "test": "t"})
    markdown, page = render_pages(json.loads((tmp_path / "report.json").read_text(encoding="utf-8")))
    assert markdown == (tmp_path / "report.md").read_text(encoding="utf-8")
    assert page == (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<table" in page
