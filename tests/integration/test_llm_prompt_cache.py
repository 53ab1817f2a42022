"""The server's prompt cache serves the guide: after a project's first call, a call evaluates only what follows it.

Against the real llama.cpp server (llama-cpp-python, the tiny SmolLM2 GGUF). That server does not report cached
tokens in its response (its ``usage`` has the whole prompt's ``prompt_tokens`` only), so the evaluated count is read
where it prints it: its log, one ``prompt eval time = ... / N tokens`` line per request. The parts of the response
other servers use to report it (OpenAI's ``prompt_tokens_details.cached_tokens``, llama-server's ``timings``) are
checked with a scripted server, as no such server runs here.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi import FastAPI, Request

from annotation_guide import Guide
from backend.adapters.llm import OpenAIChatClient
from backend.settings import LLMSettings
from ml.llm import build_messages, response_schema
from tests.conftest import serve_in_thread
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration]

PROMPT_EVAL = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")


def _server_log(base_url: str) -> Path:
    """The log the ``llama_server`` fixture writes (``$TMPDIR/llama-<port>.log``)."""
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-{urlparse(base_url).port}.log"
    assert log.is_file(), f"no llama.cpp server log at {log}: see the llama_server fixture in tests/conftest.py"
    return log


def _evaluated(client: OpenAIChatClient, log: Path, messages: list[dict[str, str]]) -> tuple[int, int]:
    """Ask once; return (prompt tokens, prompt tokens the server evaluated) from its response and its log."""
    offset = log.stat().st_size
    completion = client.complete(messages, schema=response_schema(["person", "location", "organization", "misc"]))
    assert completion.cached_prompt_tokens is None  # llama-cpp-python does not say: read its log

    found: list[str] = []

    def timing_line() -> bool:  # written as the response goes out
        with log.open("rb") as f:
            f.seek(offset)
            found[:] = PROMPT_EVAL.findall(f.read().decode("utf-8", errors="replace"))
        return bool(found)

    wait_until(timing_line, 30, f"no 'prompt eval time' line in {log} for the request")
    return completion.prompt_tokens, int(found[-1])


@pytest.mark.e2e
def test_after_the_first_call_a_project_evaluates_only_what_follows_the_guide(
    llama_server: str, conll_guide: Guide
) -> None:
    log = _server_log(llama_server)
    settings = LLMSettings(base_url=llama_server, max_tokens=8, max_retries=0, timeout_s=600)
    flusher = OpenAIChatClient(settings.model_copy(update={"response_format": "none", "max_tokens": 1}))
    with closing(flusher), closing(OpenAIChatClient(settings)) as client:
        # another test may have left this guide in the server's cache: an unrelated prompt replaces it
        flusher.complete([{"role": "user", "content": "Say OK."}], schema={})
        first_total, first = _evaluated(
            client, log, build_messages("EU rejects German call to boycott lamb .", conll_guide, [])
        )
        second_total, second = _evaluated(client, log, build_messages("Peter Blackburn", conll_guide, []))
    # the whole guide was evaluated once
    assert first_total > 1000
    assert first >= first_total - 20
    # then only the text and the turn markers
    assert second_total > 1000
    assert second < 40
    assert first > 25 * second


@pytest.fixture
def reporting_llm() -> Iterator[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """A scripted OpenAI-compatible server whose usage reports cached tokens the way ``shape`` says."""
    requests: list[dict[str, Any]] = []
    shape: dict[str, Any] = {}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict[str, Any]:
        body = await request.json()
        requests.append(body)
        usage: dict[str, Any] = {"prompt_tokens": 2300, "completion_tokens": 12, "total_tokens": 2312}
        answer = {
            "id": "x",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "{}"}}],
            "usage": usage,
        }
        if "cached_tokens" in shape:
            usage["prompt_tokens_details"] = {"cached_tokens": shape["cached_tokens"]}
        if "cache_n" in shape:
            answer["timings"] = {"cache_n": shape["cache_n"], "prompt_n": 2300 - shape["cache_n"]}
        return answer

    with serve_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}/v1", requests, shape


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        pytest.param({"cached_tokens": 2048}, 2048, id="openai-usage-details"),
        pytest.param({"cache_n": 2250}, 2250, id="llama-server-timings"),
        pytest.param({}, None, id="not-reported"),
        pytest.param({"cached_tokens": 9999}, None, id="more-than-the-prompt"),
        pytest.param({"cached_tokens": "many"}, None, id="not-a-number"),
        pytest.param({"cached_tokens": -1}, None, id="negative"),
    ],
)
def test_cached_prompt_tokens_are_read_where_the_server_reports_them(
    reporting_llm: tuple[str, list[dict[str, Any]], dict[str, Any]], shape: dict[str, Any], expected: int | None
) -> None:
    url, _, script = reporting_llm
    script.update(shape)
    with closing(OpenAIChatClient(LLMSettings(base_url=url, max_retries=0, timeout_s=10))) as client:
        completion = client.complete([{"role": "user", "content": "Peter"}], schema={})
    assert completion.prompt_tokens == 2300
    assert completion.cached_prompt_tokens == expected


@pytest.mark.parametrize(("response_format", "sent"), [("json_object", True), ("json_schema", False), ("none", False)])
def test_cache_prompt_is_asked_for_in_llama_cpp_dialect_only(
    reporting_llm: tuple[str, list[dict[str, Any]], dict[str, Any]], response_format: str, sent: bool
) -> None:
    url, requests, _ = reporting_llm
    settings = LLMSettings(base_url=url, max_retries=0, timeout_s=10, response_format=response_format)  # type: ignore[arg-type]
    with closing(OpenAIChatClient(settings)) as client:
        client.complete([{"role": "user", "content": "Peter"}], schema={})
    # llama-server keeps a prompt's cache only with cache_prompt; OpenAI refuses parameters it does not know
    assert ("cache_prompt" in requests[0]) is sent
    assert requests[0].get("cache_prompt", True) is True
