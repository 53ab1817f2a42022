"""Choose the few-shot demonstrations shown to the LLM for one text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from sklearn.feature_extraction.text import TfidfVectorizer

from ml.llm.prompt import Demonstration

DemoStrategy = Literal["similar", "random"]


class DemoSelector:
    """Picks ``k`` demonstrations from a fixed pool for each text.

    ``similar`` ranks the pool by TF-IDF cosine similarity to the text (word unigrams and bigrams plus character
    n-grams within words, so that 'payments-api' and 'payments' still meet) and returns the ``k`` best with the
    most similar last, next to the text in the prompt. ``random`` draws ``k`` with the given ``rng``. A
    demonstration whose text equals the query (ignoring surrounding whitespace) is never returned, so a gold
    document cannot be its own example. An empty pool gives no demonstrations (zero-shot).
    """

    def __init__(
        self,
        pool: Sequence[Demonstration],
        *,
        k: int = 5,
        strategy: DemoStrategy = "similar",
        rng: np.random.Generator | None = None,
    ) -> None:
        """Prepare a selector; ``similar`` fits its vectorizers on the pool once, here.

        Args:
            pool: The candidate demonstrations (typically the project's reviewed training documents).
            k: How many to return per text (fewer when the pool is smaller).
            strategy: ``"similar"`` or ``"random"``.
            rng: Randomness for ``random``; defaults to ``np.random.default_rng(0)``.

        Raises:
            ValueError: ``k`` is negative or ``strategy`` is unknown.
        """
        if k < 0:
            raise ValueError(f"k must be 0 or more, got {k}")
        if strategy not in get_args(DemoStrategy):
            raise ValueError(f"unknown demonstration strategy {strategy!r}; use one of {get_args(DemoStrategy)}")
        self._pool = list(pool)
        self._k = k
        self._strategy = strategy
        self._rng = rng if rng is not None else np.random.default_rng(0)
        self._indexes = _build_indexes([demo.text for demo in self._pool]) if strategy == "similar" else []

    def select(self, text: str) -> list[Demonstration]:
        """Choose the demonstrations for one text.

        Args:
            text: The text to be annotated.

        Returns:
            At most ``k`` demonstrations, never one whose text is ``text``; for ``similar`` the most similar
            is last, for ``random`` the order is the draw's.
        """
        candidates = [index for index, demo in enumerate(self._pool) if demo.text.strip() != text.strip()]
        count = min(self._k, len(candidates))
        if count == 0:
            return []
        if self._strategy == "random":
            drawn = self._rng.choice(len(candidates), size=count, replace=False)
            return [self._pool[candidates[int(i)]] for i in drawn]
        similarity = self._similarity(text)[candidates]
        # Stable sort on the negated score: ties keep pool order, so the choice is deterministic.
        best = np.argsort(-similarity, kind="stable")[:count]
        return [self._pool[candidates[int(i)]] for i in best[::-1]]

    def _similarity(self, text: str) -> npt.NDArray[np.float64]:
        """Cosine similarity of ``text`` to every pool text, averaged over the indexes."""
        total = np.zeros(len(self._pool))
        for vectorizer, pool_matrix in self._indexes:
            # TF-IDF rows are L2-normalised, so the dot product is the cosine.
            total += np.asarray((pool_matrix @ vectorizer.transform([text]).T).toarray()).ravel()
        return total / max(len(self._indexes), 1)


def _build_indexes(texts: list[str]) -> list[tuple[TfidfVectorizer, Any]]:
    """Fit word and character n-gram TF-IDF on the pool; skip one that finds no term (empty or symbol-only texts)."""
    indexes: list[tuple[TfidfVectorizer, Any]] = []
    if not texts:
        return indexes
    for vectorizer in (
        TfidfVectorizer(lowercase=True, ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b"),
        TfidfVectorizer(lowercase=True, analyzer="char_wb", ngram_range=(3, 5)),
    ):
        try:
            indexes.append((vectorizer, vectorizer.fit_transform(texts)))
        except ValueError:  # sklearn's "empty vocabulary"
            continue
    return indexes
