"""Shared fixtures: the real corpora in ../shared/data and the shipped guides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import spacy
from spacy.language import Language

from annotation_guide import Guide, load_guide

ROOT = Path(__file__).resolve().parents[1]
GUIDES = ROOT / "annotation_guide" / "guides"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The corpora folder beside the checkout (``NERLOOP_SHARED_DATA`` overrides it)."""
    path = Path(os.environ.get("NERLOOP_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "conll2003" / "train.txt").is_file():
        pytest.fail(f"the corpora are missing: expected {path}/conll2003/train.txt (../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def conll_guide() -> Guide:
    return load_guide(GUIDES / "conll2003.yaml")


@pytest.fixture(scope="session")
def software_guide() -> Guide:
    return load_guide(GUIDES / "software.yaml")


@pytest.fixture(scope="session")
def blank_nlp() -> Language:
    return spacy.blank("en")
