"""Per-entity-type routing between the fine-tuned model and the prompted LLM (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ml.prediction import ScoredSpan

Route = Literal["model", "llm"]
ROUTES: tuple[Route, ...] = ("model", "llm")


@dataclass(frozen=True)
class RouteEntry:
    """Where one entity type goes, and why."""

    label: str
    route: Route
    source: Literal["auto", "override"]
    f1: float | None
    target_f1: float


def compute_routes(
    labels: Sequence[str],
    *,
    per_type_f1: Mapping[str, float] | None,
    target_f1: float,
    overrides: Mapping[str, Route] | None = None,
) -> dict[str, RouteEntry]:
    """Route each type to the model if its dev F1 reaches the target, else to the LLM.

    Args:
        labels: The guide's labels.
        per_type_f1: Exact-match dev F1 per type of the serving model (``None``: no model yet).
        target_f1: The project's target.
        overrides: Manual routes that win over the computed ones.

    Returns:
        One entry per label, in guide order.
    """
    table: dict[str, RouteEntry] = {}
    for label in labels:
        f1 = per_type_f1.get(label) if per_type_f1 is not None else None
        manual = (overrides or {}).get(label)
        if manual is not None:
            table[label] = RouteEntry(label, manual, "override", f1, target_f1)
        else:
            route: Route = "model" if f1 is not None and f1 >= target_f1 else "llm"
            table[label] = RouteEntry(label, route, "auto", f1, target_f1)
    return table


def merge_routed(
    model_spans: Sequence[ScoredSpan], llm_spans: Sequence[ScoredSpan], routes: Mapping[str, RouteEntry]
) -> list[ScoredSpan]:
    """Keep each source's spans for the types routed to it; on overlap keep the higher-scored span."""
    candidates = [s for s in model_spans if _route(routes, s.label) == "model"]
    candidates += [s for s in llm_spans if _route(routes, s.label) == "llm"]
    kept: list[ScoredSpan] = []
    for span in sorted(candidates, key=lambda s: (-s.score, s.start)):
        if all(span.end <= k.start or k.end <= span.start for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def _route(routes: Mapping[str, RouteEntry], label: str) -> Route | None:
    entry = routes.get(label)
    return entry.route if entry is not None else None
