from __future__ import annotations

import numpy as np
import pytest
from spacy.language import Language
from spacy.tokens import Doc

from ml.calibration import PlattCalibrator, fit_platt
from ml.evaluation import expected_calibration_error, format_report, score_spans
from ml.prediction import ScoredSpan


def _gold(nlp: Language, text: str, spans: list[tuple[int, int, str]]) -> Doc:
    doc = nlp.make_doc(text)
    doc.set_ents([doc.char_span(s, e, label=label) for s, e, label in spans])
    return doc


def _pred(doc: Doc, start: int, end: int, label: str, score: float = 0.9) -> ScoredSpan:
    return ScoredSpan(start, end, label, doc.text[start:end], score)


def test_exact_partial_micro_macro_by_hand(blank_nlp: Language) -> None:
    # "Alice Smith met Bob in Paris": gold PER(0-11), PER(16-19), LOC(23-28)
    doc = _gold(blank_nlp, "Alice Smith met Bob in Paris", [(0, 11, "PER"), (16, 19, "PER"), (23, 28, "LOC")])
    predicted = [_pred(doc, 0, 5, "PER"), _pred(doc, 16, 19, "PER"), _pred(doc, 23, 28, "ORG")]
    report = score_spans([doc], [predicted], labels=["PER", "LOC", "ORG"], target_f1=0.5)
    per = report.per_type["PER"]
    assert (per.precision, per.recall, per.f1) == (0.5, 0.5, 0.5)  # "Alice" is only a partial match
    assert per.partial_f1 == 1.0 and per.support == 2 and per.predicted == 2 and per.meets_target
    loc, org = report.per_type["LOC"], report.per_type["ORG"]
    assert (loc.recall, loc.support, loc.predicted) == (0.0, 1, 0)
    assert (org.precision, org.support, org.predicted) == (0.0, 0, 1)
    assert report.micro.precision == pytest.approx(1 / 3) and report.micro.recall == pytest.approx(1 / 3)
    assert report.macro.f1 == pytest.approx(0.25)  # types with support only: PER 0.5, LOC 0.0
    assert report.types_meeting_target == ["PER"]
    assert "PER" in format_report(report) and "ECE" in format_report(report)


def test_perfect_predictions(blank_nlp: Language) -> None:
    doc = _gold(blank_nlp, "Bob lives in Rome", [(0, 3, "PER"), (13, 17, "LOC")])
    report = score_spans([doc], [[_pred(doc, 0, 3, "PER", 1.0), _pred(doc, 13, 17, "LOC", 1.0)]])
    assert report.micro.f1 == 1.0 and report.macro.f1 == 1.0 and report.partial_micro_f1 == 1.0
    assert report.ece == 0.0


def test_no_predictions_has_no_calibration(blank_nlp: Language) -> None:
    doc = _gold(blank_nlp, "Bob lives in Rome", [(0, 3, "PER")])
    report = score_spans([doc], [[]])
    assert report.micro.f1 == 0.0 and report.ece is None
    assert "n/a" in format_report(report)


def test_ece_by_hand() -> None:
    ece, bins = expected_calibration_error([0.95, 0.95, 0.15, 0.15], [True, False, False, False])
    # bin 0.9-1.0: conf 0.95, acc 0.5 -> gap 0.45; bin 0.1-0.2: conf 0.15, acc 0 -> gap 0.15; weights 1/2
    assert ece == pytest.approx(0.30)
    assert [b["count"] for b in bins] == [2.0, 2.0]


def test_platt_scaling_repairs_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.05, 0.95, 4000)
    correct = rng.uniform(size=4000) < true_p
    raw = true_p**0.2  # over-confident, same ranking
    calibrator = fit_platt(list(raw), list(correct))
    before, _ = expected_calibration_error(list(raw), list(correct))
    after, _ = expected_calibration_error([calibrator(float(s)) for s in raw], list(correct))
    assert before is not None and after is not None
    assert before > 0.15 and after < 0.05
    assert calibrator(0.99) > calibrator(0.9) > calibrator(0.5)  # ranking kept


def test_platt_identity_when_one_outcome() -> None:
    assert fit_platt([0.2, 0.9], [True, True]) == PlattCalibrator()
    assert PlattCalibrator()(0.7) == pytest.approx(0.7)
