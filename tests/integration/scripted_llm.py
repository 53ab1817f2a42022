"""A scripted OpenAI-compatible server on 127.0.0.1 for the LLM failure modes.

It shows on demand what a real model cannot be made to show (garbage, timeouts, 429/5xx). The happy path is also tested
against the real llama.cpp server.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.conftest import serve_in_thread


@dataclass
class Script:
    """How the server answers.

    ``mode`` is capitalised-words | garbage | slow | error, or one of the broken answers of :data:`BROKEN` (an HTTP 200
    nerloop cannot use); ``fail_first`` answers that many requests with ``fail_status`` first.
    """

    mode: str = "capitalised"
    fail_first: int = 0
    fail_status: int = 429
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    slept: int = 0  # slow answers that came to an end


def _answer(script: Script, body: dict[str, Any]) -> str:
    text = body["messages"][-1]["content"]
    if script.mode == "garbage":
        return "Sure! Here are the entities: PERSON Peter ... {not json"
    words = re.findall(r"\b[A-Z][a-z]+\b", text)
    return json.dumps(
        {
            "entities": [{"text": w.upper(), "label": "person"} for w in words]
            + [{"text": "Nowhere In This Text", "label": "person"}]
        }
    )


def _completion(body: dict[str, Any], content: object, usage: object) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": usage,
    }


USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}

BROKEN: dict[str, Callable[[dict[str, Any]], Response]] = {
    "nul": lambda body: JSONResponse(_completion(body, '{"entities": []}\x00', USAGE)),
    "surrogate": lambda body: Response(
        json.dumps(_completion(body, "Peter \ud800", USAGE)), media_type="application/json"
    ),
    "not-json": lambda body: Response("<html>502 Bad Gateway</html>", media_type="text/html"),
    "broken-json": lambda body: Response('{"choices": [', media_type="application/json"),
    "json-list": lambda body: JSONResponse([1, 2]),
    "content-not-text": lambda body: JSONResponse(_completion(body, {"entities": []}, USAGE)),
    "huge-usage": lambda body: JSONResponse(_completion(body, "{}", {**USAGE, "prompt_tokens": 2**40})),
}
"""HTTP 200 answers an OpenAI-compatible server should never give, by mode."""


def _app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> Response:
        body = await request.json()
        script.requests.append(body)
        if len(script.requests) <= script.fail_first:
            return JSONResponse({"error": {"message": "scripted failure"}}, status_code=script.fail_status)
        if script.mode in BROKEN:
            return BROKEN[script.mode](body)
        if script.mode == "slow" or "SLOW" in body["messages"][-1]["content"]:
            await asyncio.sleep(script.delay_s or 5.0)
            script.slept += 1
        content = _answer(script, body)
        return JSONResponse(
            {
                "id": "x",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }
        )

    return app


@contextmanager
def scripted_llm(script: Script) -> Iterator[str]:
    """Serve ``script`` on a free loopback port; yield the OpenAI base URL; stop on exit."""
    with serve_in_thread(_app(script)) as port:
        yield f"http://127.0.0.1:{port}/v1"
