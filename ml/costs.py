"""Prompting vs fine-tuning in money: the cost arithmetic of ``nerloop compare`` (pure functions, US dollars).

Every price and rate is a field of :class:`CostSettings` with a documented default; the report prints them all.
Sources of the defaults: the token prices are the issue's typical API bill ($0.003 / $0.006 per 1k input / output
tokens: 700 + 150 tokens per request, 12,000 requests a day, $36 a day); the compute price ($0.20 an hour) is
about an on-demand 4-vCPU cloud instance; labelling is an annotator at $30 an hour taking 6 s per entity. The last
two are placeholders to replace with a team's own figures (a project's comparison uses Label Studio's recorded
``lead_time``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class CostSettings:
    """Prices and rates (US dollars); all must be 0 or more.

    Attributes:
        llm_input_per_1k: Price of 1,000 prompt tokens.
        llm_output_per_1k: Price of 1,000 completion tokens.
        llm_compute_per_hour: Hourly price of the machine serving the LLM, charged by its measured throughput
            (0: a hosted API, paid by tokens only; set it for a self-hosted LLM).
        compute_per_hour: Hourly price of the machine that trains and serves the fine-tuned model.
        seconds_per_label: Annotator time per labelled entity.
        annotator_per_hour: Hourly rate of an annotator.
    """

    llm_input_per_1k: float = 0.003
    llm_output_per_1k: float = 0.006
    llm_compute_per_hour: float = 0.0
    compute_per_hour: float = 0.20
    seconds_per_label: float = 6.0
    annotator_per_hour: float = 30.0

    def __post_init__(self) -> None:
        negative = [f.name for f in fields(self) if getattr(self, f.name) < 0]
        if negative:
            raise ValueError(f"prices and rates must not be negative: {', '.join(negative)}")


def llm_cost_per_request(prompt_tokens: float, completion_tokens: float, costs: CostSettings) -> float:
    """Token price of one request: ``prompt/1000 * input price + completion/1000 * output price``.

    Args:
        prompt_tokens: Prompt tokens of the request (a mean is fine).
        completion_tokens: Completion tokens of the request.
        costs: The prices.

    Returns:
        US dollars. Example (the issue's): 700 + 150 tokens at $0.003 / $0.006 per 1k is $0.003.

    Raises:
        ValueError: a token count is negative.
    """
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError(f"token counts must not be negative: {prompt_tokens}, {completion_tokens}")
    return (prompt_tokens * costs.llm_input_per_1k + completion_tokens * costs.llm_output_per_1k) / 1000


def compute_cost(seconds: float, per_hour: float) -> float:
    """What ``seconds`` of a machine cost at ``per_hour`` dollars an hour."""
    if seconds < 0:
        raise ValueError(f"a duration must not be negative: {seconds}")
    return seconds / SECONDS_PER_HOUR * per_hour


def serving_cost_per_1k_docs(docs_per_second: float, per_hour: float) -> float:
    """Compute cost of 1,000 documents served at a measured throughput: ``1000 / throughput`` seconds of the machine.

    Raises:
        ValueError: the throughput is not positive.
    """
    if docs_per_second <= 0:
        raise ValueError(f"a throughput must be positive, got {docs_per_second} docs/s")
    return compute_cost(1000 / docs_per_second, per_hour)


def llm_cost_per_1k_docs(
    prompt_tokens: float, completion_tokens: float, *, docs_per_second: float | None, costs: CostSettings
) -> float:
    """The LLM's cost of 1,000 documents (one request each).

    Token prices plus, for a self-hosted model, its machine's time at the measured throughput (``llm_compute_per_hour``;
    skipped when ``docs_per_second`` is None).

    Args:
        prompt_tokens: Mean prompt tokens per document.
        completion_tokens: Mean completion tokens per document.
        docs_per_second: The endpoint's measured throughput, or None.
        costs: The prices.
    """
    tokens = 1000 * llm_cost_per_request(prompt_tokens, completion_tokens, costs)
    if docs_per_second is None or costs.llm_compute_per_hour == 0:
        return tokens
    return tokens + serving_cost_per_1k_docs(docs_per_second, costs.llm_compute_per_hour)


def labelling_cost(labels: int, costs: CostSettings) -> float:
    """``labels * seconds per label * hourly rate / 3600``: what the annotators are paid for ``labels`` entities."""
    if labels < 0:
        raise ValueError(f"a label count must not be negative: {labels}")
    return labels * costs.seconds_per_label / SECONDS_PER_HOUR * costs.annotator_per_hour


def break_even_volume(
    *,
    llm_per_doc: float,
    fine_tuned_fixed: float,
    fine_tuned_per_doc: float,
    llm_f1: float,
    fine_tuned_f1: float,
) -> float | None:
    """Documents above which fine-tuning (labelling + training once, then serving) costs less than prompting.

    Solves ``fixed + n * ft_per_doc = n * llm_per_doc``: ``n = fixed / (llm_per_doc - ft_per_doc)``.

    Args:
        llm_per_doc: The LLM's cost per document.
        fine_tuned_fixed: Labelling plus training cost, paid once.
        fine_tuned_per_doc: The fine-tuned model's serving cost per document.
        llm_f1: The LLM's F1 on the test documents.
        fine_tuned_f1: The fine-tuned model's F1 on the same documents.

    Returns:
        The volume in documents (0.0 when fine-tuning is cheaper from the first document); None when the
        fine-tuned model's F1 is below the LLM's (no trade to make) or when it never becomes cheaper (its
        serving costs as much per document or more).
    """
    if fine_tuned_f1 < llm_f1:
        return None
    if fine_tuned_fixed <= 0 and fine_tuned_per_doc <= llm_per_doc:
        return 0.0
    saving = llm_per_doc - fine_tuned_per_doc
    if saving <= 0:
        return None
    return fine_tuned_fixed / saving


def overtake_labels(curve: Sequence[tuple[float, float]], llm_f1: float) -> float | None:
    """Labels at which a learning curve first reaches the LLM's F1, linearly interpolated between measured points.

    Args:
        curve: ``(labels, f1)`` points, in any order (sorted here by labels).
        llm_f1: The LLM's F1 to reach.

    Returns:
        The interpolated label count; the first point's labels when the curve starts at or above ``llm_f1``
        (it was passed at or before the smallest size measured); None when no point reaches it with an F1 above 0
        (a model that finds nothing has not overtaken an LLM that finds nothing either).
    """
    points = sorted(curve)
    for i, (labels, f1) in enumerate(points):
        if f1 >= llm_f1 and f1 > 0:
            if i == 0:
                return float(labels)
            x0, y0 = points[i - 1]
            return float(x0 + (llm_f1 - y0) / (f1 - y0) * (labels - x0))
    return None
