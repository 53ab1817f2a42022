from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nervaluate import Evaluator
from spacy.language import Language
from spacy.scorer import get_ner_prf
from spacy.tokens import Doc
from spacy.training import Example

from annotation_guide import Guide
from ml.calibration import PlattCalibrator, fit_platt
from ml.converters import load_docs
from ml.evaluation import (
    bootstrap_weights,
    expected_calibration_error,
    format_report,
    percentile_interval,
    prf_of,
    resample,
    score_spans,
)
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
    # partial (SemEval-2013): the exact "Bob" counts 1, the overlapping "Alice" 0.5, out of 2 predicted and 2 gold
    assert per.partial_f1 == 0.75
    assert per.support == 2
    assert per.predicted == 2
    assert per.meets_target
    loc, org = report.per_type["LOC"], report.per_type["ORG"]
    assert (loc.recall, loc.support, loc.predicted) == (0.0, 1, 0)
    assert (org.precision, org.support, org.predicted) == (0.0, 0, 1)
    assert report.micro.precision == pytest.approx(1 / 3)
    assert report.micro.recall == pytest.approx(1 / 3)
    assert report.macro.f1 == pytest.approx(0.25)  # types with support only: PER 0.5, LOC 0.0
    assert report.types_meeting_target == ["PER"]
    assert "PER" in format_report(report)
    assert "ECE" in format_report(report)


def test_perfect_predictions(blank_nlp: Language) -> None:
    doc = _gold(blank_nlp, "Bob lives in Rome", [(0, 3, "PER"), (13, 17, "LOC")])
    report = score_spans([doc], [[_pred(doc, 0, 3, "PER", 1.0), _pred(doc, 13, 17, "LOC", 1.0)]])
    assert report.micro.f1 == 1.0
    assert report.macro.f1 == 1.0
    assert report.partial_micro_f1 == 1.0
    assert report.ece == 0.0


def test_no_predictions_has_no_calibration(blank_nlp: Language) -> None:
    doc = _gold(blank_nlp, "Bob lives in Rome", [(0, 3, "PER")])
    report = score_spans([doc], [[]])
    assert report.micro.f1 == 0.0
    assert report.ece is None
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
    assert before is not None
    assert after is not None
    assert before > 0.15
    assert after < 0.05
    assert calibrator(0.99) > calibrator(0.9) > calibrator(0.5)  # ranking kept


def test_platt_identity_when_one_outcome_or_too_few_spans() -> None:
    assert fit_platt([0.2, 0.9], [True, True]) == PlattCalibrator()
    rng = np.random.default_rng(0)
    few = list(rng.uniform(0.5, 1.0, 12))
    assert fit_platt(few, [i % 2 == 0 for i in range(12)]) == PlattCalibrator()  # 12 spans: the prior
    assert PlattCalibrator().to_dict()["method"].startswith("prior")
    assert PlattCalibrator()(0.7) == pytest.approx(0.7)


def _perturbed(docs: list[Doc]) -> list[list[ScoredSpan]]:
    """Predictions that differ from the gold in every way a model errs.

    A span missed, a boundary shifted, a type swapped, a span invented (deterministic, by position).
    """
    labels = sorted({e.label_ for doc in docs for e in doc.ents})
    out = []
    for d, doc in enumerate(docs):
        spans = []
        for i, ent in enumerate(doc.ents):
            kind = (d + i) % 5
            if kind == 0:
                continue  # missed
            start, end, label = ent.start_char, ent.end_char, ent.label_
            if kind == 1 and len(ent) > 1:
                end = ent[:-1].end_char  # boundary
            elif kind == 2:
                label = labels[(labels.index(label) + 1) % len(labels)]  # type
            spans.append(ScoredSpan(start, end, label, doc.text[start:end], 0.9))
        if d % 7 == 0 and len(doc) > 1 and not doc.ents:
            spans.append(ScoredSpan(0, doc[0].idx + len(doc[0]), labels[d % len(labels)], doc[0].text, 0.6))
        out.append(spans)
    return out


def test_exact_scores_match_spacy_and_partial_matches_nervaluate_on_real_data(
    shared_data: Path, blank_nlp: Language, conll_guide: Guide
) -> None:
    """On 500 CoNLL-2003 dev sentences with errors of every kind.

    Exact P/R/F1 per type equal spaCy's scorer's (an independent implementation), and the per-document counts summed
    give what nervaluate gives for the whole corpus at once (the partial schema included).
    """
    docs = load_docs(shared_data / "conll2003" / "dev.txt", blank_nlp, labels=conll_guide.labels).docs[:500]
    predicted = _perturbed(docs)
    labels = sorted({e.label_ for doc in docs for e in doc.ents})
    report = score_spans(docs, predicted, labels=labels, bootstrap=0)
    examples = []
    for doc, spans in zip(docs, predicted, strict=True):
        guess = blank_nlp.make_doc(doc.text)
        guess.set_ents([guess.char_span(s.start, s.end, label=s.label) for s in spans])
        examples.append(Example(guess, doc))
    spacy_scores = get_ner_prf(examples)
    for label in labels:
        assert report.per_type[label].f1 == pytest.approx(spacy_scores["ents_per_type"][label]["f"])
        assert report.per_type[label].precision == pytest.approx(spacy_scores["ents_per_type"][label]["p"])
    assert report.micro.f1 == pytest.approx(spacy_scores["ents_f"])
    whole = Evaluator(
        [[{"label": e.label_, "start": e.start_char, "end": e.end_char - 1} for e in doc.ents] for doc in docs],
        [[{"label": s.label, "start": s.start, "end": s.end - 1} for s in spans] for spans in predicted],
        tags=labels,
        loader="dict",
    ).evaluate()
    for label in labels:
        assert report.per_type[label].partial_f1 == pytest.approx(whole["entities"][label]["partial"].f1)
        assert report.per_type[label].f1 == pytest.approx(whole["entities"][label]["strict"].f1)
    assert 0 < report.micro.f1 < report.partial_micro_f1 < 1


def test_intervals_hold_the_estimate_are_reproducible_and_flag_small_support(blank_nlp: Language) -> None:
    docs = [
        _gold(blank_nlp, f"Bob met Ann in Rome {i}", [(0, 3, "PER"), (8, 11, "PER"), (15, 19, "LOC")])
        for i in range(30)
    ]
    predicted = [
        [_pred(doc, 0, 3, "PER")] + ([_pred(doc, 15, 19, "LOC")] if i % 3 else []) for i, doc in enumerate(docs)
    ]
    report = score_spans(docs, predicted, labels=["PER", "LOC"], min_support=40)
    again = score_spans(docs, predicted, labels=["PER", "LOC"], min_support=40)
    per, loc = report.per_type["PER"], report.per_type["LOC"]
    assert per.f1_interval is not None
    assert per.f1_interval[0] <= per.f1 <= per.f1_interval[1]
    assert per.f1_interval == again.per_type["PER"].f1_interval  # a fixed seed
    assert loc.f1_interval is not None
    assert loc.f1_interval[0] < loc.f1 < loc.f1_interval[1]
    # 60 PER and 30 LOC gold spans, 40 needed
    assert per.measurable
    assert not loc.measurable
    assert report.micro_f1_interval is not None
    assert report.bootstrap_samples == 1000
    assert "not yet measurable (< 40 gold spans)" in format_report(report)
    assert "95% interval" in format_report(report)
    assert "doc_counts" not in report.to_dict()


def test_the_bootstrap_interval_covers_the_population_f1_about_95_percent_of_the_time() -> None:
    """Coverage by simulation: documents drawn from a population whose F1 is known.

    The 95% interval of a sample of 80 documents holds it in about 95% of 200 samples (a percentile bootstrap is a
    little narrow at this size).
    """
    rng = np.random.default_rng(1)
    population = 20_000
    gold = rng.poisson(2.0, population).astype(float)
    found = rng.binomial(gold.astype(int), 0.7).astype(float)
    extra = rng.poisson(0.4, population).astype(float)
    counts = np.stack([found, found, found + extra, gold], axis=1)[:, None, :]
    truth = float(prf_of(counts.sum(axis=0))[2][0])
    hits = 0
    trials = 200
    for trial in range(trials):
        sample = counts[rng.choice(population, 80, replace=False)]
        resampled = resample(bootstrap_weights(80, samples=500, seed=trial), sample)
        low, high = percentile_interval(prf_of(resampled)[2][:, 0])
        hits += low <= truth <= high
    assert 0.88 <= hits / trials <= 0.99
