r"""What every request body must be, checked once before any route (and before authentication) reads it.

- Size: a body over ``NER_MAX_BODY_BYTES`` is answered 413 as soon as that is known: from ``Content-Length``
  before anything is read, or while a body without one (chunked) is read, never buffering more than the limit.
- JSON that Python reads but nerloop cannot keep: ``NaN`` / ``Infinity`` (not JSON, and refused by PostgreSQL's
  JSON types), numbers too large for a float, lone UTF-16 surrogates (``"\ud800"``: no UTF-8 encoding exists)
  and NUL characters (PostgreSQL text cannot hold them). Any of these in any JSON body is a 422 naming where it
  was found, e.g. ``body.task.data.text``. A body that is not JSON at all is left to the route (FastAPI's 422).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_MAX_REPORTED = 60


class BodyChecks:
    """ASGI middleware: the size limit and the JSON content check for every HTTP request body."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body (up to the limit), check it, then hand it to the app unchanged."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if _declared_length(headers) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
        problem = None
        if _is_json(headers) and _suspect(bytes(body)):
            # parsing and walking a big body takes seconds: never on the event loop (/health must answer)
            problem = await anyio.to_thread.run_sync(json_problem, bytes(body))
        if problem is not None:
            await JSONResponse({"error": problem}, status_code=422)(scope, receive, send)
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body_bytes
        error = f"request body over {limit} bytes ({limit / 2**20:.0f} MiB, NER_MAX_BODY_BYTES); send less per request"
        await JSONResponse({"error": error}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


def _declared_length(headers: Headers) -> int:
    value = headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else 0


def _is_json(headers: Headers) -> bool:
    """Whether FastAPI would read the body as JSON: no content type, ``application/json`` or ``+json``."""
    content_type = headers.get("content-type")
    if content_type is None:
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the body already read, then passes on what comes next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


MAX_DEPTH = 64
"""How deeply a JSON body may nest (Label Studio's nest about 6 levels; far deeper ones exhaust the recursion of
the JSON encoder that stores them)."""


class _NotFinite:
    """Where the parser met ``NaN``, ``Infinity`` or a number too large for a float (reported with its path)."""

    def __init__(self, text: str) -> None:
        self.text = text[:_MAX_REPORTED]


def _float(text: str) -> float | _NotFinite:
    value = float(text)
    return value if math.isfinite(value) else _NotFinite(text)


_SUSPECT = re.compile(rb"NaN|Infinity|\\u0000|\\u[dD][89abAB]|\\u[dD][c-fC-F]|[eE][+]?[0-9]{3}|[0-9]{300}")


def _suspect(body: bytes) -> bool:
    """Whether the body may hold a problem ``json_problem`` finds.

    One of its tokens, or more brackets than the depth allowed. A cheap scan of the bytes, so that ordinary bodies are
    never parsed twice.
    """
    return body.count(b"[") + body.count(b"{") > MAX_DEPTH or _SUSPECT.search(body) is not None


def json_problem(body: bytes) -> str | None:
    """What makes a JSON body unfit to be kept, with where it is (``body.<path>: <what>``).

    None when it is fit or is not JSON at all (the route's own parsing answers that).
    """
    if not body.strip():
        return None
    try:
        data = json.loads(body, parse_constant=_NotFinite, parse_float=_float)
    except RecursionError:
        return f"body: JSON nested more than {MAX_DEPTH} levels deep"
    except ValueError:  # not JSON, not UTF-8, or an integer of more than 4,300 digits: the route answers
        return None
    return _walk(data)


def _walk(data: Any) -> str | None:
    """The first problem met, depth first (iteratively: the depth is what is being checked)."""
    stack: list[tuple[Any, str, int]] = [(data, "body", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"{where}: JSON nested more than {MAX_DEPTH} levels deep"
        if isinstance(value, _NotFinite):
            return f"{where}: {value.text} is not a finite JSON number; send a number a float holds, or null"
        if isinstance(value, str):
            problem = _text_problem(value, where)
            if problem is not None:
                return problem
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                problem = _text_problem(key, f"{where} (a key)")
                if problem is not None:
                    return problem
                stack.append((item, f"{where}.{_name(key)}", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}.{index}", depth + 1) for index, item in reversed(list(enumerate(value))))
    return None


def _text_problem(text: str, where: str) -> str | None:
    if "\x00" in text:
        return f"{where}: a NUL character (\\u0000) cannot be stored; remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        return f"{where}: a lone surrogate (\\u{code:04x}) is not text; send a valid UTF-16 pair or the character"
    return None


def _name(key: str) -> str:
    """A key as it is shown in a path (cut short, and made printable when it is not)."""
    shown = key[:_MAX_REPORTED]
    return shown if shown.isprintable() else ascii(shown)
