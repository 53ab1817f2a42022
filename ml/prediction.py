"""What every NER model gives back, and the port every model family implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from spacy.tokens import Doc
from spacy.vocab import Vocab


@dataclass(frozen=True)
class ScoredSpan:
    """A predicted entity: character offsets into the doc's text, label, and its probability."""

    start: int
    end: int
    label: str
    text: str
    score: float


class NERModel(Protocol):
    """A trained model that predicts entities with a confidence per entity."""

    @property
    def version(self) -> str:
        """The model version (the name of its directory)."""
        ...

    @property
    def labels(self) -> list[str]:
        """The label set it was trained on."""
        ...

    def make_doc(self, text: str) -> Doc:
        """Tokenise a text the way the model expects."""
        ...

    def predict(self, docs: Sequence[Doc], *, batch_size: int = 256) -> list[list[ScoredSpan]]:
        """Predict entities for tokenised docs (gold entities on them are ignored), in order."""
        ...


class WrappedModel:
    """A model around another: the inner model's version, labels and tokeniser; subclasses change ``predict``."""

    def __init__(self, inner: NERModel) -> None:
        self.inner = inner

    @property
    def version(self) -> str:
        """The inner model's version."""
        return self.inner.version

    @property
    def labels(self) -> list[str]:
        """The inner model's labels."""
        return self.inner.labels

    def make_doc(self, text: str) -> Doc:
        """Tokenise like the inner model."""
        return self.inner.make_doc(text)


def doc_copy(doc: Doc, vocab: Vocab | None = None) -> Doc:
    """A copy of a doc's tokens without its entities (so that gold never leaks into a prediction).

    Pass the model's ``vocab``: its static vectors, if any, are looked up there.
    """
    words = [token.text for token in doc]
    spaces = [bool(token.whitespace_) for token in doc]
    return Doc(vocab if vocab is not None else doc.vocab, words=words, spaces=spaces)
