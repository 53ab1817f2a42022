"""Label mappings: renaming the labels of someone else's data to the guide's, given as ``OLD=NEW`` pairs."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ml.errors import DataError


def parse_label_map(pairs: Iterable[str], *, labels: Collection[str]) -> dict[str, str]:
    """Read ``OLD=NEW`` pairs (``PER=person``) into a mapping from data labels to guide labels.

    Args:
        pairs: The pairs, as given on the command line (``--map-label``).
        labels: The guide's labels; every ``NEW`` must be one of them.

    Returns:
        ``{OLD: NEW}``.

    Raises:
        DataError: a pair is not ``OLD=NEW``, ``NEW`` is not a guide label, or ``OLD`` is mapped twice.
    """
    mapping: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = (part.strip() for part in pair.partition("="))
        if not sep or not old or not new:
            raise DataError(f"label mapping {pair!r}: expected OLD=NEW, e.g. PER=person")
        if new not in labels:
            raise DataError(
                f"label mapping {pair!r}: {new!r} is not a label of the guide; map to one of {', '.join(labels)}"
            )
        if mapping.get(old, new) != new:
            raise DataError(f"label mapping {pair!r}: {old!r} is already mapped to {mapping[old]!r}")
        mapping[old] = new
    return mapping
