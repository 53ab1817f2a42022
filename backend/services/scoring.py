"""After a promotion: score the unlabelled pool, push scored predictions, point Label Studio at the version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import Prediction, Project
from backend.db.upsert import upsert
from backend.errors import NotFoundError
from backend.ports import PredictionSink
from backend.services import preannotation, sampling
from backend.services.llm_annotation import LLMAnnotator
from backend.services.predictions import Predictor, TaskInput, version_tag
from backend.services.projects import current_model, guide_of, metrics_of
from backend.services.routing import routing_table
from backend.services.watermark import labels_count
from ml.converters.label_studio import results_to_spans, spans_to_results
from ml.model_store import load_model
from ml.prediction import NERModel
from ml.promotion import in_dev_split, stable_unit
from ml.queue_order import queue_keys
from ml.routing import merge_routed
from ml.sampling import score_pool
from ml.sampling_signals import embed_texts, read_pool
from ml.sampling_strategy import MEASURE_VERSIONS, choose_batch

# the labelled docs whose vectors the diversity term keeps the batch away from: the latest this many (modAL's
# ranked batch measures every candidate against each of them at every pick); modAL's trade-off |U| / (|U| + |D|)
# still counts every labelled training task
LABELLED_REFERENCE_MAX = 2000

# the most promised predictions (``/predict`` answered ``~llm-pending``) one LLM pass completes; the next pass
# takes the rest
PROMISED_MAX = 1000


@dataclass(frozen=True)
class Rescored:
    """What a rescore did: predictions pushed, and how many of them await the LLM pass."""

    tag: str
    tasks: int
    awaiting_llm: int


def unlabelled(
    tasks: list[dict[str, Any]], *, project_key: str, dev_fraction: float, text_field: str = "text"
) -> tuple[list[TaskInput], list[TaskInput]]:
    """Split the tasks without a live annotation into (sampling pool, frozen dev tasks).

    The text is ``data[text_field]``.
    """
    pool: list[TaskInput] = []
    dev: list[TaskInput] = []
    for task in tasks:
        if any(not a.get("was_cancelled") for a in task.get("annotations") or []):
            continue
        text = (task.get("data") or {}).get(text_field)
        if isinstance(text, str):
            item = TaskInput(int(task["id"]), text)
            (dev if in_dev_split(project_key, item.task_id or 0, fraction=dev_fraction) else pool).append(item)
    return pool, dev


def _labelled_vectors(
    model: NERModel,
    tasks: list[dict[str, Any]],
    representation: str | None,
    *,
    text_field: str,
    project_key: str,
    dev_fraction: float,
) -> tuple[list[NDArray[np.float64]] | None, int]:
    """The doc vectors of the latest ``LABELLED_REFERENCE_MAX`` labelled training tasks, and ``|D|``.

    The vectors are None without diversity or without such tasks; ``|D|`` is how many labelled training tasks there are
    in all.
    """
    if representation is None:
        return None, 0
    texts = [  # the training docs: held-out tasks teach the model nothing
        (int(task["id"]), (task.get("data") or {}).get(text_field))
        for task in tasks
        if any(not a.get("was_cancelled") for a in task.get("annotations") or [])
        and not in_dev_split(project_key, int(task["id"]), fraction=dev_fraction)
    ]
    with_text = [text for _, text in sorted(texts, reverse=True) if isinstance(text, str)]
    latest = with_text[:LABELLED_REFERENCE_MAX]
    return (list(embed_texts(model, latest, vectors=representation)) if latest else None), len(with_text)


def rescore(
    db: Session,
    project: Project,
    sink: PredictionSink,
    predictor: Predictor,
    *,
    batch_size: int,
    dev_fraction: float,
    held_out_share: float = 0.2,
    sampling_seed: int = 0,
) -> Rescored:
    """Rescore every unlabelled task with the serving version and push the predictions.

    The pushed ``score`` is the queue key Label Studio orders by (ascending), from ``ml.queue_order.queue_keys``: the
    batch chosen by the project's sampling strategy (``ml.sampling_strategy.choose_batch``: its uncertainty measure,
    type weights, and with diversity modAL's ranked batch over doc vectors, away from the latest labelled docs; ties
    broken by an rng seeded with ``sampling_seed``; recorded in ``rescoring`` with the strategy) first, then the rest
    of the pool by uncertainty, with every ``1 / held_out_share``-th place given to a held-out task in a fixed random
    order that no model score touches (issue #12: the held-out set stays a random sample).

    The model runs once over the pool. Types routed to the LLM are left out here and added by ``llm_pass``
    (the ``llm`` queue), most useful tasks first, so that scoring never waits on the LLM. Each task keeps
    one prediction per version in Label Studio: a rerun updates the ones it already pushed.
    """
    row = current_model(db, project)
    if row is None:
        raise NotFoundError(f"project {project.id} serves no model yet; nothing to rescore with")
    db.commit()  # no connection held while Label Studio exports
    exported = sink.export_tasks(project.ls_project_id)
    pool, dev = unlabelled(
        exported,
        project_key=str(project.ls_project_id),
        dev_fraction=dev_fraction,
        text_field=guide_of(project).label_studio.text_field,
    )
    tasks = pool + dev
    if not tasks:
        return Rescored(version_tag(project, routing_table(db, project)), 0, 0)
    model = load_model(row.path)
    strategy = sampling.strategy_of(project)
    want = strategy.representation if strategy.diversity else None
    signals = read_pool(model, [model.make_doc(t.text) for t in tasks], vectors=want)
    raw = signals.spans
    uncertainty = score_pool(signals.uncertainty, strategy=MEASURE_VERSIONS[strategy.measure])
    guide = guide_of(project)
    # types absent from the held-out split have no F1 to speak of (ml.model_meta's rule): they get no extra weight
    metrics = metrics_of(row)
    per_type = metrics.measured_f1() if metrics is not None else {}
    batch: list[int] = []
    if pool:
        vectors = signals.vectors
        labelled, labelled_count = _labelled_vectors(
            model,
            exported,
            want,
            text_field=guide.label_studio.text_field,
            project_key=str(project.ls_project_id),
            dev_fraction=dev_fraction,
        )
        choice = choose_batch(
            strategy,
            signals.uncertainty[: len(pool)],
            n=batch_size,
            rng=np.random.default_rng(sampling_seed),
            per_type_f1=per_type,
            target=guide.targets.f1,
            vectors=None if vectors is None else {i: vectors[i] for i in range(len(pool))},
            labelled=labelled,
            labelled_count=labelled_count,  # |D| counts every labelled training task, not only those embedded
        )
        batch = choice.batch
    sampling.record_rescoring(
        db,
        project,
        model_version=row.version,
        strategy=strategy,
        representation=signals.representation,
        pool=len(pool),
        batch=[tasks[i].task_id or 0 for i in batch],
    )
    chosen = set(batch)
    rest = sorted((i for i in range(len(pool)) if i not in chosen), key=lambda i: (-uncertainty[i], i))
    key = str(project.ls_project_id)
    queue = queue_keys(
        [*batch, *rest],
        range(len(pool), len(tasks)),
        held_out_share=held_out_share,
        shuffle_key=lambda i: stable_unit(f"{key}:{tasks[i].task_id}:queue"),
    )
    tag, results = predictor.predict(db, project, tasks, model_output=(row.version, raw), use_llm=False)
    awaiting = predictor.llm is not None and any(r.route == "llm" for r in routing_table(db, project).values())
    for index, (task, result) in enumerate(zip(tasks, results, strict=True)):
        values = {"score": queue[index], "uncertainty": uncertainty[index]}  # the queue key, and what it ranked
        db.execute(
            upsert(db, Prediction)
            .values(
                project_id=project.id,
                ls_task_id=task.task_id,
                model_version=tag,
                spans=result["result"],
                complete=not awaiting,
                **values,
            )
            # a rerun of the same version keeps spans the LLM pass may have completed
            .on_conflict_do_update(index_elements=["project_id", "ls_task_id", "model_version"], set_=values)
        )
    db.commit()  # stored before the HTTP pushes: no database lock is held while Label Studio is called
    rows = db.scalars(
        select(Prediction)
        .where(Prediction.project_id == project.id, Prediction.model_version == tag)
        .where(Prediction.ls_task_id.in_([t.task_id for t in tasks]))
        .order_by(Prediction.score)
        .execution_options(populate_existing=True)  # the upsert bypassed the session: reload, never reuse
    ).all()
    for prediction in rows:
        _push(db, sink, prediction)
    sink.set_model_version(project.ls_project_id, tag)
    return Rescored(tag, len(rows), sum(not r.complete for r in rows))


def _push(db: Session, sink: PredictionSink, row: Prediction) -> None:
    """Create the row's prediction in Label Studio, or update the one created before; commit its id at once."""
    if row.ls_prediction_id is None:
        row.ls_prediction_id = sink.push_prediction(
            row.ls_task_id, result=row.spans, score=row.score, model_version=row.model_version
        )
    else:
        sink.update_prediction(row.ls_prediction_id, result=row.spans, score=row.score, model_version=row.model_version)
    db.commit()


def llm_pass(db: Session, project: Project, sink: PredictionSink, llm: LLMAnnotator, *, limit: int) -> int:
    """Keep ``limit`` tasks ahead of the annotators complete.

    Add the LLM-routed types to the next predictions in queue order (``backend.services.preannotation``), and push each
    as the task's one prediction of the version.

    Tasks ``/predict`` answered without the LLM part come first; their Label Studio prediction (tagged
    ``~llm-pending``) is updated in place. Before any model exists the next unlabelled tasks by id are taken
    from Label Studio and the project's model version is set to the pushed one. A task labelled (or skipped)
    while the LLM worked on it is not pushed. Each task is committed as soon as it is done: a rerun continues
    where one stopped.

    Returns:
        The number of predictions completed and pushed by this call.
    """
    routes = routing_table(db, project)
    if not any(entry.route == "llm" for entry in routes.values()):
        db.commit()
        return 0
    tag = version_tag(project, routes)
    guide = guide_of(project)
    names = guide.label_studio
    todo = preannotation.candidates(db, project, tag, n=PROMISED_MAX, promised=True)
    need = limit - preannotation.complete_ahead(db, project, tag, upto=limit)
    todo += preannotation.candidates(db, project, tag, n=need, promised=False)
    serving = current_model(db, project) is not None
    db.commit()  # no connection held while Label Studio and the LLM are asked
    if not serving and len(todo) < need:
        tasks = sink.export_tasks(project.ls_project_id)
        todo += preannotation.open_window(db, project, tag, tasks, n=need - len(todo), text_field=names.text_field)
    watermark = labels_count(db, project)
    db.commit()
    step = llm.settings.concurrency  # one annotate call per chunk: its calls run in parallel
    pushed = 0
    for start in range(0, len(todo), step):
        found = [(row, sink.task_text(row.ls_task_id, field=names.text_field)) for row in todo[start : start + step]]
        gone = [row for row, text in found if text is None]  # deleted in Label Studio (or no text): never again
        for row in gone:
            db.delete(row)
        db.commit()
        chunk = [row for row, text in found if text is not None]
        annotations = llm.annotate(project, [text for _, text in found if text is not None], watermark=watermark)
        labelled = preannotation.done_tasks(db, project, [row.ls_task_id for row in chunk])  # since selected
        db.commit()  # no transaction stays open across the pushes and the next chunk's LLM calls
        for row, annotation in zip(chunk, annotations, strict=True):
            if row.ls_task_id in labelled:
                continue  # the annotators got there first: nothing to show anyone
            held = results_to_spans(row.spans, label_names=guide.label_names)
            merged = merge_routed(held, annotation.spans, routes)
            row.spans = spans_to_results(
                merged, from_name=names.from_name, to_name=names.to_name, label_values=names.labels
            )
            row.complete = True  # row.score, its queue key, stays: completing it never moves it in the queue
            _push_complete(db, sink, row)
            pushed += 1
    if pushed and not serving:  # ordering counts only the project's version's predictions
        sink.set_model_version(project.ls_project_id, tag)
    return pushed


def _push_complete(db: Session, sink: PredictionSink, row: Prediction) -> None:
    """Push a completed row as its task's one prediction of the version.

    A row nerloop never pushed updates what ``/predict`` left in Label Studio (``<tag>~...``, or ``<tag>`` from a later
    ``/predict``), and removes the other copies.
    """
    if row.ls_prediction_id is None:
        ours = sorted(
            (version != row.model_version, prediction_id)  # the version's own first
            for prediction_id, version in sink.task_predictions(row.ls_task_id).items()
            if version == row.model_version or version.startswith(row.model_version + "~")
        )
        if ours:
            row.ls_prediction_id = ours[0][1]
            for _, stale in ours[1:]:
                sink.delete_prediction(stale)
    _push(db, sink, row)
