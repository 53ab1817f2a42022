"""What an LLM call costs. Prices are settings: the caller passes them in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prices:
    """Prices of one model in US dollars per million tokens (0 for a local model).

    Attributes:
        input_per_million: Price of a million prompt tokens.
        output_per_million: Price of a million completion tokens.
    """

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def __post_init__(self) -> None:
        if self.input_per_million < 0 or self.output_per_million < 0:
            raise ValueError(f"prices must not be negative: {self}")


def cost_usd(prompt_tokens: int, completion_tokens: int, prices: Prices) -> float:
    """The price of one call, or of many calls when given their summed token counts.

    Args:
        prompt_tokens: Tokens sent (the ``usage.prompt_tokens`` of the response).
        completion_tokens: Tokens generated (``usage.completion_tokens``).
        prices: The model's prices.

    Returns:
        US dollars.

    Raises:
        ValueError: a token count is negative.
    """
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError(f"token counts must not be negative: {prompt_tokens}, {completion_tokens}")
    return (prompt_tokens * prices.input_per_million + completion_tokens * prices.output_per_million) / 1_000_000
