"""``train``: from gold docs to a new, complete, versioned model directory."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from spacy import about as spacy_about
from spacy.tokens import Doc

from annotation_guide import Guide
from ml.calibration import PlattCalibrator, fit_on_gold
from ml.converters.export import to_docbin
from ml.errors import ModelError, TrainingError
from ml.evaluation import EvaluationReport, evaluate
from ml.model_meta import CalibrationMeta, DataSummary, GuideRef, Initialisation, ModelMeta, ModelMetrics
from ml.model_store import MODEL_DIR, load_model, write_meta
from ml.prediction import NERModel, ScoredSpan, WrappedModel
from ml.training.progress import PREDICT_WORDS_PER_S, JobProgress, ProgressCallback, ignore_progress
from ml.training.settings import SPACY_ARCHITECTURES, TrainSettings
from ml.training.warm_start import plan_initialisation, write_digests

log = logging.getLogger(__name__)
# a model that predicts fewer spans on dev than this share of the gold ones is flagged (``training_warnings``)
MIN_PREDICTED_SHARE = 0.1


@dataclass(frozen=True)
class TrainedModel:
    """A finished training.

    Where the version lives, its meta, its dev evaluation (the documents that selected its checkpoint and fitted its
    calibration), its test evaluation (None: no test documents were given) and what looks wrong with it
    (``training_warnings``; also ``meta.warnings``).
    """

    path: Path
    version: str
    meta: ModelMeta
    dev_report: EvaluationReport
    test_report: EvaluationReport | None = None
    warnings: tuple[str, ...] = ()

    @property
    def report(self) -> EvaluationReport:
        """The figures to show: the test evaluation when there is one (untouched by the training), else dev's."""
        return self.test_report if self.test_report is not None else self.dev_report

    @property
    def initialisation(self) -> Initialisation:
        """How its training started (``meta.initialisation``, which ``train`` always records).

        Raises:
            ModelError: The meta records none (a version not written by ``train``).
        """
        if self.meta.initialisation is None:
            raise ModelError(f"{self.path}: its meta records no initialisation; was it written by `nerloop train`?")
        return self.meta.initialisation

    @property
    def metrics(self) -> ModelMetrics:
        """The reported metrics (``meta.metrics``: test, else dev), with ``train_labels``.

        ``train_labels`` are the gold spans per type trained on; together, what the database stores for the version.

        Raises:
            ModelError: The meta records no metrics (a version not written by ``train``).
        """
        if self.meta.metrics is None:
            raise ModelError(f"{self.path}: its meta records no metrics; was it written by `nerloop train`?")
        data = self.meta.data
        return self.meta.metrics.replace(train_labels=data.train_entities_per_type if data is not None else None)


def fingerprint(docs: Sequence[Doc]) -> str:
    """A hash of the texts and gold entities of a data set (order-sensitive)."""
    digest = hashlib.sha256()
    for doc in docs:
        ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        digest.update(json.dumps([doc.text, ents], ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def _check(train_docs: Sequence[Doc], guide: Guide) -> None:
    if not train_docs:
        raise TrainingError("the training set is empty")
    seen = {e.label_ for doc in train_docs for e in doc.ents}
    if not seen:
        raise TrainingError("the training set has no entity at all; label some first")
    unknown = seen - set(guide.labels)
    if unknown:
        raise TrainingError(f"labels {sorted(unknown)} are not in the guide {guide.project!r}")


def _new_version(architecture: str, data_fp: str) -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{architecture}-{data_fp[:8]}"


def train(
    train_docs: Sequence[Doc],
    dev_docs: Sequence[Doc],
    guide: Guide,
    *,
    settings: TrainSettings,
    output_root: str | Path,
    on_progress: ProgressCallback = ignore_progress,
    warm_from: str | Path | None = None,
    test_docs: Sequence[Doc] | None = None,
    calibrate: bool = True,
) -> TrainedModel:
    """Train a model, evaluate it and store it as a new version under ``output_root``.

    The dev docs select the checkpoint and fit the calibration; the test docs, touched by neither, give the
    version's reported metrics (``meta.metrics``, ``evaluated_on`` "test"; the dev figures stay in
    ``meta.dev_metrics``). Without test docs the metrics are dev's (``evaluated_on`` "dev"): optimistic.

    The version directory appears only when it is complete (written aside, then renamed). With ``warm_from``, the
    training starts from that version's weights for a budget set by the new docs when it is compatible, and cold
    otherwise (``ml.training.warm_start``); ``meta.initialisation`` says which and why.

    Args:
        train_docs: Gold training docs.
        dev_docs: Gold dev docs: model selection and the reported metrics.
        guide: The project's guide (label set, target, hash).
        settings: How to train.
        output_root: The directory that holds the project's model versions.
        on_progress: Called with ``Progress`` while the job runs: its stage (``train``, ``calibrate``,
            ``evaluate``) and the whole job's fraction and ETA, the calibration and final evaluation included.
        warm_from: The serving version's directory to start from (``None``: a cold start).
        test_docs: Gold test docs for the reported metrics (may be empty: every type "not yet measurable").
        calibrate: Fit the calibration on the dev docs; False keeps the identity prior (when the dev docs are
            the training docs themselves, a fit would learn the model's confidence on what it has seen).

    Every architecture trains for a step budget (``ml.training.settings.step_budget``; a warm start's is set by
    the new docs) that never falls below ``min_steps`` however small the data. A model that predicts almost
    nothing on dev is flagged (``TrainedModel.warnings``, ``meta.warnings``, logged).

    Returns:
        The new version.

    Raises:
        TrainingError: No training doc, no entity, a label outside the guide, no dev doc, or a failed training.
    """
    _check(train_docs, guide)
    if not dev_docs:
        raise TrainingError("the dev set is empty; a dev set is needed to select and evaluate the model")
    root = Path(output_root)
    root.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    train_fp, dev_fp = fingerprint(train_docs), fingerprint(dev_docs)
    architecture = settings.concrete
    version = _new_version(architecture, train_fp)
    init = plan_initialisation(settings, source=warm_from, train_docs=train_docs, labels=guide.labels)
    log.info("%s %s start: %s", version, init.mode, init.reason)
    words = sum(len(d) for d in dev_docs) * (2 if calibrate else 1) + sum(len(d) for d in test_docs or ())
    job = JobProgress(on_progress, after_words=words, words_per_s=PREDICT_WORDS_PER_S[architecture])
    with tempfile.TemporaryDirectory(dir=root, prefix=".training-") as scratch:
        work = Path(scratch)
        best = _run(settings, init, (train_docs, dev_docs), guide, work, job.train, source=warm_from)
        staged = work / "version"
        shutil.copytree(best, staged / MODEL_DIR)
        write_digests(staged, train_docs)
        data = DataSummary(
            train_fingerprint=train_fp,
            dev_fingerprint=dev_fp,
            train_docs=len(train_docs),
            dev_docs=len(dev_docs),
            train_entities=sum(len(d.ents) for d in train_docs),
            train_entities_per_type=dict(Counter(e.label_ for d in train_docs for e in d.ents)),
        )
        meta = ModelMeta(
            version=version,
            architecture=architecture,
            labels=tuple(guide.labels),
            guide=GuideRef(project=guide.project, sha256=guide.sha256, target_f1=guide.targets.f1),
            data=data,
            settings=settings.model_dump(mode="json"),
            initialisation=init,
            spacy_version=spacy_about.__version__,
            started_at=started_at,
        )
        write_meta(staged, meta)
        if calibrate:
            job.begin("calibrate")
            calibrator = fit_on_gold(_Reporting(load_model(staged, calibrated=False), job), dev_docs)
        else:
            calibrator = PlattCalibrator()
        meta = meta.replace(calibration=CalibrationMeta.of(calibrator))
        write_meta(staged, meta)
        job.begin("evaluate")
        model = _Reporting(load_model(staged), job)
        report = evaluate(model, dev_docs, labels=guide.labels, target_f1=guide.targets.f1)
        test = (
            None if test_docs is None else evaluate(model, test_docs, labels=guide.labels, target_f1=guide.targets.f1)
        )
        shown = test if test is not None else report
        warnings = training_warnings(report)
        for warning in warnings:
            log.warning("%s: %s", version, warning)
        meta = meta.replace(
            data=data.replace(test_docs=None if test_docs is None else len(test_docs)),
            metrics=ModelMetrics.of(shown, evaluated_on="dev" if test is None else "test"),
            dev_metrics=ModelMetrics.of(report),
            warnings=tuple(warnings),
            finished_at=datetime.now(UTC),
            training_seconds=round(time.monotonic() - clock, 1),
        )
        write_meta(staged, meta)
        staged.rename(root / version)
    return TrainedModel(root / version, version, meta, report, test, tuple(warnings))


def training_warnings(dev_report: EvaluationReport) -> list[str]:
    """What is wrong with a trained model, read from its dev evaluation.

    For now, that it predicts almost nothing (fewer spans than ``MIN_PREDICTED_SHARE`` of the gold ones), the sign of
    too short a training for the data.

    Returns:
        One sentence per problem (empty: none found).
    """
    gold = sum(s.support for s in dev_report.per_type.values())
    predicted = sum(s.predicted for s in dev_report.per_type.values())
    if gold and predicted < MIN_PREDICTED_SHARE * gold:
        return [
            f"the model predicts almost nothing on dev: {predicted} spans for {gold} gold ones (dev micro F1 "
            f"{dev_report.micro.f1:.3f}); train for more steps (min_steps, epochs), with a higher learn_rate, or "
            "label more"
        ]
    return []


class _Reporting(WrappedModel):
    """A model whose predictions report their progress to a ``JobProgress``, ``_CHUNK`` docs at a time."""

    _CHUNK = 128

    def __init__(self, inner: NERModel, job: JobProgress) -> None:
        super().__init__(inner)
        self.job = job

    def predict(self, docs: Sequence[Doc], *, batch_size: int = 256) -> list[list[ScoredSpan]]:
        """The inner model's predictions, reported chunk by chunk."""
        out: list[list[ScoredSpan]] = []
        for begin in range(0, len(docs), self._CHUNK):
            part = docs[begin : begin + self._CHUNK]
            out.extend(self.inner.predict(part, batch_size=batch_size))
            self.job.predicted(sum(len(d) for d in part))
        return out


def grouped(docs: Sequence[Doc], size: int) -> list[Doc]:
    """Consecutive docs joined ``size`` at a time into one (spaCy's ``convert -n``).

    ``Doc.from_docs`` joins tokens, spaces and entities. Docs of different vocabularies are left as they are.
    """
    if size <= 1 or len({id(d.vocab) for d in docs}) > 1:
        return list(docs)
    return [Doc.from_docs(list(docs[i : i + size])) for i in range(0, len(docs), size)]


def _run(
    settings: TrainSettings,
    init: Initialisation,
    data: tuple[Sequence[Doc], Sequence[Doc]],
    guide: Guide,
    work: Path,
    on_progress: ProgressCallback,
    *,
    source: str | Path | None,
) -> Path:
    train_docs, dev_docs = data
    start = Path(source) / MODEL_DIR if init.mode == "warm" and source is not None else None
    budgeted = settings.model_copy(update={"max_steps": init.max_steps})
    architecture = settings.concrete
    if architecture in SPACY_ARCHITECTURES:
        to_docbin(grouped(train_docs, settings.doc_group), work / "train.spacy")
        to_docbin(dev_docs, work / "dev.spacy")
        types = sorted({e.label_ for d in train_docs for e in d.ents})
        if architecture == "cnn":
            from ml.training.spacy_cnn import train_cnn

            return train_cnn(
                budgeted,
                train_path=work / "train.spacy",
                dev_path=work / "dev.spacy",
                output_dir=work / "out",
                on_progress=on_progress,
                warm_from=start,
                labels=types,
            )
        from ml.training.spacy_transformer import train_spacy_transformer

        return train_spacy_transformer(
            settings,
            train_path=work / "train.spacy",
            dev_path=work / "dev.spacy",
            output_dir=work / "out",
            on_progress=on_progress,
            budget=init.max_steps,
            warm_from=start,
            labels=types,
        )
    from ml.training.transformer import train_transformer

    return train_transformer(
        settings,
        train_docs=train_docs,
        dev_docs=dev_docs,
        labels=guide.labels,
        output_dir=work / "out",
        on_progress=on_progress,
        warm_from=start,
        max_steps=init.max_steps,
    )
