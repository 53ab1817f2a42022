"""Label Studio's queue order: the one owner of the ``score`` field of every prediction nerloop gives Label Studio.

Label Studio's uncertainty sampling serves the task whose prediction (of the project's model version) has the
lowest ``score`` first. That field is therefore a *queue key*, not a confidence, whatever Label Studio calls it; the
database keeps it as ``prediction.score`` beside the ``uncertainty`` the key was derived from. A key comes from one
of three functions, by how far the project has got:

- ``queue_keys``: after a promotion, the rescore places every unlabelled task (the sampling strategy's batch, then
  the rest by uncertainty, held-out tasks at a fixed share); the key is the task's place in that queue.
- ``predicted_queue_key``: a task ``/predict`` answers before a rescore placed it; the key is the confidence of its
  least certain entity, so among such tasks the least certain comes first.
- ``import_order_key``: before any model, the tasks the LLM pass pre-annotates, in import order.

A key stays with its prediction: the LLM pass completes a prediction without moving it in the queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ml.prediction import ScoredSpan


def queue_keys(
    ranked: Sequence[int], held_out: Sequence[int], *, held_out_share: float, shuffle_key: Callable[[int], float]
) -> dict[int, float]:
    """The queue keys of a rescore (ascending, in [0, 1]): the sampled order with the held-out tasks woven in.

    Every ``round(1 / held_out_share)``-th place goes to the next held-out task, in the order of
    ``shuffle_key(task)`` (a hash of the task id: random, fixed, and blind to any model); the other places go to
    ``ranked`` (the sampled batch first, then the rest by uncertainty). So the held-out tasks reach annotators at a
    fixed share, as a random sample that the model's scores cannot reorder, and the held-out set stays a random
    sample of the project as it grows. When one list runs out, the other fills the remaining places.

    Args:
        ranked: Task ids of the sampling pool, most useful first.
        held_out: Task ids of the held-out (dev and test) tasks, in any order.
        held_out_share: The share of queue places for held-out tasks (e.g. 0.2: one in five).
        shuffle_key: A fixed pseudo-random number per task id.

    Returns:
        Task id -> key; keys strictly increase along the queue.

    Raises:
        ValueError: ``held_out_share`` is not in (0, 1].
    """
    if not 0.0 < held_out_share <= 1.0:
        raise ValueError(f"held_out_share must be in (0, 1], got {held_out_share}")
    every = max(1, round(1.0 / held_out_share))
    shuffled = sorted(held_out, key=shuffle_key)
    queue: list[int] = []
    pool_at = held_at = 0
    while pool_at < len(ranked) or held_at < len(shuffled):
        held_turn = (len(queue) + 1) % every == 0
        if held_at < len(shuffled) and (held_turn or pool_at >= len(ranked)):
            queue.append(shuffled[held_at])
            held_at += 1
        else:
            queue.append(ranked[pool_at])
            pool_at += 1
    return {task: place / max(1, len(queue) - 1) for place, task in enumerate(queue)}


def predicted_queue_key(spans: Sequence[ScoredSpan]) -> float:
    """The queue key of a task ``/predict`` answers: the confidence of its least certain entity (1.0 without any).

    For the model's entities this is ``1 - least_confidence.v1`` (``ml.sampling``, ``empty`` 0), so the least
    certain task comes first; entities from the LLM count at their fixed ``span_score`` (they carry no calibrated
    confidence). A later rescore replaces the key with ``queue_keys``'.

    Args:
        spans: The entities answered for the task, with their scores in [0, 1].

    Returns:
        The key, in [0, 1].
    """
    return min((s.score for s in spans), default=1.0)


def import_order_key(position: int, *, total: int) -> float:
    """The queue key of a task pre-annotated before any model exists: its place in import order.

    Its place among the project's tasks sorted by Label Studio id, so that the pre-annotated tasks are served in the
    order they were imported.

    Args:
        position: The task's index among all the project's tasks sorted by Label Studio id (from 0).
        total: How many tasks the project has.

    Returns:
        ``position / total``, in [0, 1).

    Raises:
        ValueError: ``position`` is not in ``[0, total)``.
    """
    if not 0 <= position < max(1, total):
        raise ValueError(f"position {position} is outside the project's {total} tasks")
    return position / max(1, total)
