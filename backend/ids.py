"""What an id is: every id column (nerloop's own and Label Studio's ids it stores) is a 32-bit ``INTEGER``.

One owner, so that an id from a client is checked once, where it is read (a path parameter, a body field, a query
value), instead of reaching PostgreSQL, which answers a larger one with "integer out of range".
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Interval
from pydantic import Strict

MAX_ID = 2**31 - 1
"""The largest value an ``INTEGER`` column holds (PostgreSQL's limit; SQLite's is larger)."""

DbId = Annotated[int, Interval(ge=1, le=MAX_ID)]
"""An id as a client may send it: a positive integer that fits an ``INTEGER`` column."""

StrictDbId = Annotated[int, Strict(), Interval(ge=1, le=MAX_ID)]
"""A :data:`DbId` that must be a JSON integer (not ``"7"`` nor ``7.0``): Label Studio's ids in webhook bodies."""


def is_db_id(value: int) -> bool:
    """Whether ``value`` fits an id column (for ids that arrive inside free-form strings)."""
    return 1 <= value <= MAX_ID
