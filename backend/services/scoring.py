"""After a promotion: score the unlabelled pool, push scored predictions, point Label Studio at the version."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from sqlalchemy.orm import Session

from backend.db.models import Prediction, Project
from backend.db.upsert import upsert
from backend.services.errors import NotFoundError
from backend.services.predictions import Predictor, TaskInput
from backend.services.projects import current_model, guide_of
from ml.model_store import load_model
from ml.promotion import in_dev_split
from ml.sampling import score_pool, select_batch, type_weights_from_f1, uncertainty_from_spans


class PredictionSink(Protocol):
    """Where scored predictions go (Label Studio)."""

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with its annotations."""
        ...

    def push_prediction(self, task_id: int, *, result: list[dict[str, Any]], score: float, model_version: str) -> None:
        """Store one prediction on a task."""
        ...

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Make the version the project's."""
        ...


def unlabelled(
    tasks: list[dict[str, Any]], *, project_key: str, dev_fraction: float
) -> tuple[list[TaskInput], list[TaskInput]]:
    """Split the tasks without a live annotation into (sampling pool, frozen dev tasks)."""
    pool: list[TaskInput] = []
    dev: list[TaskInput] = []
    for task in tasks:
        if any(not a.get("was_cancelled") for a in task.get("annotations") or []):
            continue
        text = (task.get("data") or {}).get("text")
        if isinstance(text, str):
            item = TaskInput(int(task["id"]), text)
            (dev if in_dev_split(project_key, item.task_id or 0, fraction=dev_fraction) else pool).append(item)
    return pool, dev


def rescore(
    db: Session,
    project: Project,
    sink: PredictionSink,
    predictor: Predictor,
    *,
    batch_size: int,
    dev_fraction: float,
) -> int:
    """Rescore every unlabelled task with the serving version and push the predictions.

    The pushed ``score`` is what Label Studio orders by (ascending): the batch chosen by uncertainty, type
    weights and rng-seeded ties gets scores in [0, 0.01) in selection order; every other task gets
    ``1 - uncertainty`` scaled into [0.01, 1]. Dev-split tasks are never put in the batch.

    Returns:
        The number of tasks that got a prediction.
    """
    row = current_model(db, project)
    if row is None:
        raise NotFoundError(f"project {project.id} serves no model yet; nothing to rescore with")
    pool, dev = unlabelled(
        sink.export_tasks(project.ls_project_id), project_key=str(project.ls_project_id), dev_fraction=dev_fraction
    )
    tasks = pool + dev
    if not tasks:
        return 0
    model = load_model(row.path)
    raw = model.predict([model.make_doc(t.text) for t in tasks])
    uncertainty = score_pool([uncertainty_from_spans(i, spans) for i, spans in enumerate(raw)])
    guide = guide_of(project)
    # types absent from the dev split have no F1 to speak of: they get no extra weight
    per_type = {k: float(v["f1"]) for k, v in row.metrics.get("per_type", {}).items() if v.get("support", 0) > 0}
    batch = (
        select_batch(
            {i: uncertainty[i] for i in range(len(pool))},
            n=batch_size,
            rng=np.random.default_rng(0),
            type_weights=type_weights_from_f1(per_type, target=guide.targets.f1),
            labels_of={i: [s.label for s in raw[i]] for i in range(len(pool))},
        )
        if pool
        else []
    )
    order = {index: rank for rank, index in enumerate(batch)}
    tag, results = predictor.predict(db, project, tasks)
    scores = [
        0.01 * order[i] / max(1, len(batch)) if i in order else 0.01 + 0.99 * (1.0 - uncertainty[i])
        for i in range(len(tasks))
    ]
    for index, (task, result) in enumerate(zip(tasks, results, strict=True)):
        values = {"spans": result["result"], "score": scores[index], "uncertainty": uncertainty[index]}
        db.execute(
            upsert(db, Prediction)
            .values(project_id=project.id, ls_task_id=task.task_id, model_version=tag, **values)
            .on_conflict_do_update(index_elements=["project_id", "ls_task_id", "model_version"], set_=values)
        )
    db.commit()  # stored before the HTTP pushes: no database lock is held while Label Studio is called
    for task, result, score in zip(tasks, results, scores, strict=True):
        sink.push_prediction(task.task_id or 0, result=result["result"], score=score, model_version=tag)
    sink.set_model_version(project.ls_project_id, tag)
    return len(tasks)
