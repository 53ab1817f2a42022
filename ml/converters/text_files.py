"""Reading text and JSON input files with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ml.errors import DataError


def read_text(path: Path) -> str:
    r"""The whole file as UTF-8 text, without the byte order mark some editors put first.

    The mark is not part of any text: JSON parsers refuse it, and in CoNLL it would stick to the first token.
    Dropping it moves no offset (offsets count characters inside JSON strings or tokens, never the file's).

    Args:
        path: The file.

    Returns:
        Its text; line endings are kept as they are (every reader accepts ``\r\n``).

    Raises:
        DataError: the file cannot be read or is not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def json_lines(text: str) -> Iterator[tuple[int, str]]:
    r"""Non-blank lines with their 1-based numbers, split on ``\n`` only (not on U+2028 and kin)."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, line


def parse_json(text: str, where: str) -> Any:
    """Parse JSON, naming ``where`` (a file or ``file:line``) on failure."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
