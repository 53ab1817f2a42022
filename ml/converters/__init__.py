"""Lossless conversion between Label Studio, CoNLL/BIO, JSONL, DocBin and spaCy ``Doc``."""

from ml.converters.conll import from_conll, to_conll
from ml.converters.export import (
    ReadOptions,
    detect_format,
    from_docbin,
    from_jsonl,
    load_docs,
    to_docbin,
    to_jsonl,
    write_docs,
)
from ml.converters.issues import (
    POLICIES,
    UNKNOWN_LABELS,
    ConversionIssue,
    Policy,
    RejectedSpansError,
    UnknownLabels,
)
from ml.converters.label_studio import from_label_studio, read_tasks, to_label_studio, to_results
from ml.converters.labels import parse_label_map
from ml.converters.spans import CharSpan, ConversionResult, apply_spans, char_spans, task_id_of

__all__ = [
    "POLICIES",
    "UNKNOWN_LABELS",
    "CharSpan",
    "ConversionIssue",
    "ConversionResult",
    "Policy",
    "ReadOptions",
    "RejectedSpansError",
    "UnknownLabels",
    "apply_spans",
    "char_spans",
    "detect_format",
    "from_conll",
    "from_docbin",
    "from_jsonl",
    "from_label_studio",
    "load_docs",
    "parse_label_map",
    "read_tasks",
    "task_id_of",
    "to_conll",
    "to_docbin",
    "to_jsonl",
    "to_label_studio",
    "to_results",
    "write_docs",
]
