"""A Hugging Face token classifier (BIO tags) with real token probabilities.

An entity's score is the probability of its exact tagging: the product over its words of the
chosen tag's probability, times the probability that the next word does not continue it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import spacy
import torch
from numpy.typing import NDArray
from spacy.tokens import Doc
from transformers import AutoModelForTokenClassification, AutoTokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ml.errors import ModelError
from ml.prediction import ScoredSpan

MAX_WORDS = 100  # words per window; keeps every window inside the encoder's 512 positions


def bio_tags(labels: Sequence[str]) -> list[str]:
    """The tag set of a label set: ``O`` then ``B-x``, ``I-x`` per label."""
    return ["O"] + [f"{prefix}-{label}" for label in labels for prefix in ("B", "I")]


def word_tags(doc: Doc) -> tuple[list[str], list[str]]:
    """The non-space words of a gold doc and their BIO tags."""
    words, tags = [], []
    for token in doc:
        if token.is_space:
            continue
        words.append(token.text)
        tags.append(f"{token.ent_iob_}-{token.ent_type_}" if token.ent_iob_ in ("B", "I") else "O")
    return words, tags


def encode(tokenizer: PreTrainedTokenizerBase, batch: Sequence[Sequence[str]]) -> tuple[Any, list[list[int | None]]]:
    """Tokenise pre-split words; return the tensors and, per row, the word index of each sub-token."""
    encoded = tokenizer(
        [list(words) for words in batch],
        is_split_into_words=True,
        truncation=True,
        max_length=512,
        padding=True,
        return_tensors="pt",
    )
    return encoded, [encoded.word_ids(i) for i in range(len(batch))]


def first_subtoken_rows(word_ids: Sequence[int | None], n_words: int) -> list[int]:
    """Per word, the position of its first sub-token (-1 if truncated away)."""
    rows = [-1] * n_words
    for position, word in enumerate(word_ids):
        if word is not None and rows[word] == -1:
            rows[word] = position
    return rows


def decode(probs: NDArray[np.float32], tags: Sequence[str]) -> list[tuple[int, int, str, float]]:
    """Turn per-word tag probabilities into (first word, end word, label, score) entities."""
    best = probs.argmax(axis=1)
    index = {tag: i for i, tag in enumerate(tags)}
    entities: list[tuple[int, int, str, float]] = []
    word = 0
    while word < len(best):
        tag = tags[best[word]]
        if tag == "O":
            word += 1
            continue
        label = tag[2:]
        score = float(probs[word, best[word]])
        end = word + 1
        inside = index[f"I-{label}"]
        while end < len(best) and best[end] == inside:
            score *= float(probs[end, inside])
            end += 1
        if end < len(best):
            score *= 1.0 - float(probs[end, inside])
        entities.append((word, end, label, score))
        word = end
    return entities


class HFTagger:
    """A fine-tuned token classifier over spaCy-tokenised words."""

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, *, version: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._version = version
        id2label = model.config.id2label
        self.tags = [id2label[i] for i in range(len(id2label))]
        self._nlp = spacy.blank("en")

    @classmethod
    def load(cls, path: Path, *, version: str) -> HFTagger:
        """Load a token classifier saved with ``save_pretrained``."""
        try:
            model = AutoModelForTokenClassification.from_pretrained(str(path), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: not a loadable token classifier ({exc})") from None
        return cls(model, tokenizer, version=version)

    @property
    def version(self) -> str:
        """The model version."""
        return self._version

    @property
    def labels(self) -> list[str]:
        """The entity labels."""
        return sorted({tag[2:] for tag in self.tags if tag != "O"})

    def make_doc(self, text: str) -> Doc:
        """Tokenise with spaCy's English rules (the words the classifier tags)."""
        return self._nlp.make_doc(text)

    def word_probs(self, batch: Sequence[Sequence[str]]) -> list[NDArray[np.float32]]:
        """Tag probabilities per word for a batch of word lists (each at most ``MAX_WORDS``)."""
        encoded, word_ids = encode(self.tokenizer, batch)
        with torch.inference_mode():
            probs = torch.softmax(self.model(**encoded).logits, dim=-1).numpy()
        out: list[NDArray[np.float32]] = []
        for row, (words, ids) in enumerate(zip(batch, word_ids, strict=True)):
            positions = first_subtoken_rows(ids, len(words))
            per_word = np.zeros((len(words), len(self.tags)), dtype=np.float32)
            per_word[:, 0] = 1.0  # words cut off by truncation are O with certainty
            for word, position in enumerate(positions):
                if position >= 0:
                    per_word[word] = probs[row, position]
            out.append(per_word)
        return out

    def predict(self, docs: Sequence[Doc], *, batch_size: int = 32) -> list[list[ScoredSpan]]:
        """Predict scored entities for each doc, in order."""
        windows: list[tuple[int, list[int]]] = []  # (doc index, token indices)
        for doc_index, doc in enumerate(docs):
            kept = [token.i for token in doc if not token.is_space]
            for start in range(0, max(len(kept), 1), MAX_WORDS):
                windows.append((doc_index, kept[start : start + MAX_WORDS]))
        results: list[list[ScoredSpan]] = [[] for _ in docs]
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
        for begin in range(0, len(order), batch_size):
            chunk = [windows[w] for w in order[begin : begin + batch_size] if windows[w][1]]
            if not chunk:
                continue
            probs = self.word_probs([[docs[d][i].text for i in idx] for d, idx in chunk])
            for (doc_index, idx), word_probs in zip(chunk, probs, strict=True):
                doc = docs[doc_index]
                for first, end, label, score in decode(word_probs, self.tags):
                    span = doc[idx[first] : idx[end - 1] + 1]
                    results[doc_index].append(ScoredSpan(span.start_char, span.end_char, label, span.text, score))
        for spans in results:
            spans.sort(key=lambda s: s.start)
        return results
