"""The ``hf-transformer`` architecture.

Fine-tune a Hugging Face encoder as a BIO token classifier (a plain PyTorch loop, CPU or GPU; AdamW, linear warm-up over
a tenth of the budget then linear decay).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from spacy.tokens import Doc
from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

from ml.errors import TrainingError
from ml.evaluation import score_spans
from ml.models.hf_tagger import MAX_WORDS, HFTagger, bio_tags, encode, word_tags
from ml.training.progress import Progress, ProgressCallback, eta
from ml.training.settings import TrainSettings, eval_interval, step_budget
from ml.training.spacy_transformer import default_encoder

DEFAULT_LEARN_RATE = 1e-4


def _windows(docs: Sequence[Doc]) -> list[tuple[list[str], list[str]]]:
    out = []
    for doc in docs:
        words, tags = word_tags(doc)
        for start in range(0, len(words), MAX_WORDS):
            chunk_tags = tags[start : start + MAX_WORDS]
            if chunk_tags and chunk_tags[0].startswith("I-"):
                chunk_tags[0] = "B-" + chunk_tags[0][2:]
            out.append((words[start : start + MAX_WORDS], chunk_tags))
    return out


def _label_tensor(word_ids: list[list[int | None]], tags: Sequence[Sequence[str]], tag_index: dict[str, int]) -> Any:
    rows = []
    for ids, row_tags in zip(word_ids, tags, strict=True):
        previous = None
        row = []
        for word in ids:
            row.append(-100 if word is None or word == previous else tag_index[row_tags[word]])
            previous = word
        rows.append(row)
    return torch.tensor(rows)


def _batches(n: int, size: int, lengths: Sequence[int], rng: np.random.Generator) -> list[list[int]]:
    """Batches of similar length (less padding), in random order."""
    order = sorted(range(n), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + size] for i in range(0, n, size)]
    rng.shuffle(batches)
    return batches


def train_transformer(
    settings: TrainSettings,
    *,
    train_docs: Sequence[Doc],
    dev_docs: Sequence[Doc],
    labels: Sequence[str],
    output_dir: Path,
    on_progress: ProgressCallback,
    warm_from: Path | None = None,
    max_steps: int | None = None,
) -> Path:
    """Fine-tune for a step budget and save the best checkpoint under ``output_dir/model-best``.

    It evaluates on dev every ``eval_interval`` steps and at the end, and keeps the best checkpoint.

    Args:
        settings: Training settings (``transformer``, ``batch_size``, ``learn_rate``, ``dropout`` is the encoder's).
        train_docs: Gold training docs.
        dev_docs: Gold dev docs (model selection).
        labels: The guide's label set.
        output_dir: Where the model is written.
        on_progress: Called every 20 steps and after each dev evaluation (stage ``train``, with ``dev_f1``).
        warm_from: A trained model of the same labels to start from (a warm start) instead of the encoder.
        max_steps: Optimizer steps (``None``: ``step_budget`` of the training windows).

    Returns:
        The directory of the saved model.

    Raises:
        TrainingError: No training text, or the encoder is missing.
    """
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    source = str(warm_from) if warm_from is not None else settings.transformer or default_encoder()
    tags = bio_tags(labels)
    tag_index = {tag: i for i, tag in enumerate(tags)}
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)  # type: ignore[no-untyped-call]
    model = AutoModelForTokenClassification.from_pretrained(
        source,
        local_files_only=True,
        num_labels=len(tags),
        id2label=dict(enumerate(tags)),
        label2id=tag_index,
    )
    data = _windows(train_docs)
    if not data:
        raise TrainingError("no training text: the training set is empty")
    size = settings.docs_per_step
    total = max_steps if max_steps is not None else step_budget(settings, len(data))
    every = eval_interval(settings, total)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learn_rate or DEFAULT_LEARN_RATE, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, total // 10), total)  # type: ignore[no-untyped-call]
    started, step, best_f1, best_state = time.monotonic(), 0, -1.0, None
    lengths = [len(w) for w, _ in data]
    while step < total:
        model.train()
        for batch in _batches(len(data), size, lengths, rng)[: total - step]:
            encoded, word_ids = encode(tokenizer, [data[i][0] for i in batch])
            loss = model(**encoded, labels=_label_tensor(word_ids, [data[i][1] for i in batch], tag_index)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            elapsed = time.monotonic() - started
            if step % every == 0 or step == total:
                tagger = HFTagger(model, tokenizer, version="dev")
                f1 = score_spans(dev_docs, tagger.predict(dev_docs)).micro.f1 if dev_docs else 0.0
                model.train()
                if f1 > best_f1:
                    best_f1, best_state = f1, copy.deepcopy(model.state_dict())
                elapsed = time.monotonic() - started
                on_progress(
                    Progress("train", step / total, elapsed, eta(step / total, elapsed), step, float(loss.detach()), f1)
                )
            elif step % 20 == 0:
                on_progress(
                    Progress("train", step / total, elapsed, eta(step / total, elapsed), step, float(loss.detach()))
                )
    if best_state is not None:
        model.load_state_dict(best_state)
    best = output_dir / "model-best"
    model.save_pretrained(best)
    tokenizer.save_pretrained(best)
    return best
