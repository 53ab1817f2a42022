"""Warm start: a retrain starts from the serving version's weights, for a step budget set by the new labels.

A cold start trains fresh weights for the full ``max_steps``; its cost does not depend on how little changed since
the last version. A warm start loads the serving version's pipeline instead of initialising one, trains with a
fresh optimizer on *all* the current training docs (the old ones rehearse what the model knew) for
``warm_steps_per_new_doc`` steps per training doc the serving version had not seen, with a floor of
``warm_min_steps``, and still keeps the step with the best dev F1 (spaCy evaluates after its first update: the
serving weights themselves are never a candidate, so a warm candidate can score below them). The promotion gate is
unchanged: a warm candidate that regresses a type beyond the noise is refused like any other. Measured on
CoNLL-2003 (bench/RESULTS.md, ``bench/warm_start.py --gate``): in the loop's rhythm (a retrain every 20 labels from
800 to 1,000, the gate applied, five seeds) the served version's test F1 minus a cold retrain's is +0.004
[-0.000, +0.009] at 1,000 labels, for about a ninth of a cold start's training time.

A warm start is refused, and the run starts cold with the reason logged and stored in the version's meta, when:

- the serving version has another architecture, tok2vec or encoder shape, static vectors or spaCy minor version;
- the guide no longer has one of the serving version's types (its head would keep predicting it);
- the transformer's guide changed its types at all (its BIO head has a fixed size);
- the drift guard is due: ``cold_every`` counts retrains, and every ``cold_every``-th one in a row is cold, so
  errors a chain of warm starts accumulates are reset;
- most of the training docs are new (more than ``warm_max_new_share`` of them, e.g. a bulk import): a network
  warm-started on a small set generalises worse than one trained from scratch on the larger set (Ash and Adams,
  "On Warm-Starting Neural Network Training", NeurIPS 2020), and such a jump costs nearly a cold budget anyway.

The serving weights can be shrunk and perturbed first (``warm_shrink``, ``warm_noise``; Ash and Adams 2020): off by
default, since it helps a jump of many labels and hurts the loop's chain of small retrains (bench/RESULTS.md).

A type added to the guide is learned by resizing the CNN's NER head (spaCy's ``add_label`` on a trained
transition-based parser keeps the trained rows and adds new ones), not by a cold start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from spacy import about as spacy_about
from spacy.tokens import Doc

from ml.errors import ModelError
from ml.model_meta import Initialisation, ModelMeta
from ml.model_store import TRAIN_DOCS_FILE, read_meta
from ml.training.settings import SPACY_ARCHITECTURES, TrainSettings, step_budget

log = logging.getLogger(__name__)

# settings that decide the shape of the weights: a version trained with other values cannot be resumed
SHAPE_SETTINGS = ("init_tok2vec_from", "vectors", "transformer", "width", "depth", "embed_rows")
# what a version's ``meta.architecture`` says, as the pipeline it is: "transformer" in a version written before
# the spaCy transformer pipeline existed meant the Hugging Face token classifier
STORED_ARCHITECTURES = {"transformer": "hf-transformer"}


def stored_architecture(meta: ModelMeta) -> str:
    """The concrete architecture of a stored version (its meta's, legacy names resolved)."""
    return STORED_ARCHITECTURES.get(meta.architecture, meta.architecture)


def doc_digest(doc: Doc) -> str:
    """A short hash of one doc's text and gold entities (16 hex digits): the same labelled doc, the same digest."""
    ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
    data = json.dumps([doc.text, ents], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:16]


def write_digests(path: Path, docs: Iterable[Doc]) -> None:
    """Store the digests of a version's training docs (``TRAIN_DOCS_FILE``), one per line."""
    (path / TRAIN_DOCS_FILE).write_text("".join(f"{doc_digest(d)}\n" for d in docs), encoding="ascii")


def warm_budget(settings: TrainSettings, new_docs: int) -> int:
    """The warm step budget.

    ``warm_steps_per_new_doc`` per new doc, at least ``warm_min_steps``, at most ``max_steps``; rounded up to a multiple
    of the evaluation interval ``build_config`` sets (``eval_frequency``, or a fifth of a shorter budget), so that the
    last step is evaluated too.
    """
    wanted = max(settings.warm_min_steps, math.ceil(settings.warm_steps_per_new_doc * new_docs))
    quantum = settings.eval_frequency if wanted >= 5 * settings.eval_frequency else 5
    return min(settings.max_steps, -(-wanted // quantum) * quantum)


def plan_initialisation(
    settings: TrainSettings, *, source: str | Path | None, train_docs: Sequence[Doc], labels: Sequence[str]
) -> Initialisation:
    """Decide between a warm start from ``source`` and a cold start.

    Args:
        settings: The candidate's training settings (``max_steps`` is the cold budget).
        source: The serving version's directory (``None``: nothing serves, or warm starts are off).
        train_docs: The candidate's training docs.
        labels: The guide's entity types.

    Returns:
        The plan; a cold one says why in ``reason``.
    """
    cold = step_budget(settings, len(train_docs))
    if source is None:
        return Initialisation("cold", "no serving version to start from", cold)
    if not settings.warm_start:
        return Initialisation("cold", "warm starts are off (warm_start=False)", cold)
    try:
        meta = read_meta(source)
    except ModelError as exc:
        return Initialisation("cold", f"the serving version cannot be read ({exc})", cold)
    version = meta.version
    new_docs = _new_docs(Path(source), meta, train_docs)
    refusal = _refusal(settings, meta, labels) or _mostly_new(settings, new_docs, len(train_docs))
    if refusal is not None:
        return Initialisation("cold", refusal, cold, version, new_docs)
    budget = warm_budget(settings, new_docs)
    head = set((meta.data.train_entities_per_type if meta.data is not None else None) or meta.labels)
    added = tuple(sorted({e.label_ for d in train_docs for e in d.ents} - head))
    chain = _warm_chain(meta) + 1
    reason = f"from {version}: {new_docs} new training docs, {budget} steps"
    if added:
        reason += f"; NER head resized for the new types {', '.join(added)}"
    if settings.concrete in SPACY_ARCHITECTURES and (settings.warm_shrink != 1.0 or settings.warm_noise != 0.0):
        reason += f"; weights shrunk by {settings.warm_shrink:g}, noise s.d. {settings.warm_noise:g}"
    return Initialisation("warm", reason, budget, version, new_docs, chain, added)


def _warm_chain(meta: ModelMeta) -> int:
    """Warm starts in a row up to the stored version (0: cold, or stored before warm starts)."""
    return meta.initialisation.warm_chain if meta.initialisation is not None else 0


def _refusal(settings: TrainSettings, meta: ModelMeta, labels: Sequence[str]) -> str | None:
    """Why the serving version cannot be resumed (``None``: it can)."""
    theirs = meta.settings
    ours = settings.model_dump(mode="json")
    if stored_architecture(meta) != settings.concrete:
        return (
            f"the serving version has architecture={stored_architecture(meta)!r}, this training {settings.concrete!r}"
        )
    for name in SHAPE_SETTINGS:
        if theirs.get(name) != ours[name]:
            return f"the serving version has {name}={theirs.get(name)!r}, this training {ours[name]!r}"
    if _minor(meta.spacy_version or "") != _minor(spacy_about.__version__):
        return f"the serving version was trained with spaCy {meta.spacy_version}, not {spacy_about.__version__}"
    dropped = sorted(set(meta.labels) - set(labels))
    if dropped:
        return f"the guide no longer has the serving version's types {', '.join(dropped)}"
    if settings.concrete == "hf-transformer" and list(meta.labels) != list(labels):
        return "the guide's types changed and a transformer's head has a fixed label set"
    chain = _warm_chain(meta)
    if settings.cold_every and chain + 1 >= settings.cold_every:
        return f"drift guard: every {settings.cold_every}th retrain is cold ({chain} warm starts in a row)"
    return None


def _mostly_new(settings: TrainSettings, new_docs: int, train_docs: int) -> str | None:
    """Why the new labels are too many for a warm start (``None``: few enough)."""
    if train_docs and new_docs > settings.warm_max_new_share * train_docs:
        return (
            f"{new_docs} of the {train_docs} training docs are new (more than {settings.warm_max_new_share:.0%}): "
            "a bulk of new labels trains cold"
        )
    return None


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _new_docs(source: Path, meta: ModelMeta, train_docs: Sequence[Doc]) -> int:
    """Training docs the source was not trained on: by digest, or by count for a version stored without them."""
    try:
        seen = set((source / TRAIN_DOCS_FILE).read_text(encoding="ascii").split())
    except OSError:
        return max(0, len(train_docs) - (meta.data.train_docs if meta.data is not None else 0))
    return sum(doc_digest(d) not in seen for d in train_docs)
