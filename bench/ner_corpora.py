"""The five annotated corpora of ``../shared/data`` as gold docs (one sentence per doc), with a guide for each.

CoNLL-2003 has a guide in ``annotation_guide/guides``; the CrossNER domains and WNUT-17 get one built from their
training split (a generic definition and five real examples per type), enough for ``ml.training.train``.
Used by ``bench/cnn_vs_spacy.py`` and ``bench/train_conll.py``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import spacy
from spacy.tokens import Doc

from annotation_guide import Guide, load_guide
from annotation_guide.schema import EdgeCase, EntityType, Example, NonEntity
from ml.converters import load_docs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
# corpus -> (train, dev, test) files under DATA
FILES = {
    "conll2003": ("conll2003/train.txt", "conll2003/dev.txt", "conll2003/test.txt"),
    "crossner-ai": ("crossner/ai/train.txt", "crossner/ai/dev.txt", "crossner/ai/test.txt"),
    "crossner-politics": ("crossner/politics/train.txt", "crossner/politics/dev.txt", "crossner/politics/test.txt"),
    "crossner-science": ("crossner/science/train.txt", "crossner/science/dev.txt", "crossner/science/test.txt"),
    "wnut17": ("wnut17/wnut17train.conll", "wnut17/emerging.dev.conll", "wnut17/emerging.test.annotated"),
}


@dataclass(frozen=True)
class Corpus:
    """A corpus's guide, its splits as gold docs and the CoNLL files they came from (CoNLL suffixes)."""

    name: str
    guide: Guide
    train: list[Doc]
    dev: list[Doc]
    test: list[Doc]
    files: tuple[Path, Path, Path]


def labels_in(paths: Sequence[Path]) -> list[str]:
    """The entity types tagged in CoNLL ``token<TAB>tag`` files, sorted."""
    seen: set[str] = set()
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            tag = line.rsplit("\t", 1)[-1] if "\t" in line else "O"
            if tag[:2] in ("B-", "I-"):
                seen.add(tag[2:])
    return sorted(seen)


def guide_from_docs(train_docs: Sequence[Doc], name: str, labels: Sequence[str]) -> Guide:
    """A valid guide for a corpus without one.

    Per type a generic definition and five real examples (a rare type repeats its few mentions).

    Raises:
        ValueError: A type has no mention in ``train_docs``.
    """
    found: dict[str, list[Example]] = defaultdict(list)
    for doc in train_docs:
        for ent in doc.ents:
            mentions = found[ent.label_]
            if len(mentions) < 5 and all(e.entity != ent.text for e in mentions):
                mentions.append(Example(text=doc.text, entity=ent.text))
    missing = [label for label in labels if not found[label]]
    if missing:
        raise ValueError(f"{name}: no example of {missing} in the training docs; cannot build a guide")
    types = [
        EntityType(
            name=label,
            definition=f"A mention of the '{label}' entity type as annotated in the {name} corpus.",
            examples=[found[label][i % len(found[label])] for i in range(5)],
            edge_cases=[EdgeCase(case="-", decision="-")],
            non_entities=[NonEntity(text="-", reason="-")],
        )
        for label in labels
    ]
    return Guide(project=name, description=f"Built from the {name} training data.", entity_types=types)


def load_corpus(name: str, scratch: Path | None = None) -> Corpus:
    """Read a corpus (``FILES``' names); a file without a CoNLL suffix is copied under ``scratch`` first.

    Raises:
        SystemExit: An unknown name.
    """
    if name not in FILES:
        raise SystemExit(f"unknown corpus {name!r}; one of {', '.join(FILES)}")
    scratch = scratch or Path(tempfile.mkdtemp(prefix="nerloop-corpus-"))
    paths = []
    for rel in FILES[name]:
        path = DATA / rel
        if path.suffix not in (".txt", ".conll", ".bio"):
            copy = scratch / f"{path.stem}.conll"
            shutil.copyfile(path, copy)
            path = copy
        paths.append(path)
    blank = spacy.blank("en")
    train_p, dev_p, test_p = paths
    if name == "conll2003":
        guide = load_guide(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")
        labels: list[str] = list(guide.labels)
    else:
        labels = labels_in(paths)
    split = [load_docs(p, blank, labels=labels).docs for p in paths]
    if name != "conll2003":
        guide = guide_from_docs(split[0] + split[1], name, labels)
    return Corpus(name, guide, split[0], split[1], split[2], (train_p, dev_p, test_p))
