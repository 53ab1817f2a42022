"""The LLM of ``nerloop compare``.

An OpenAI-compatible endpoint, or a GGUF served by ``nerloop llm serve`` for the comparison's duration
(``ml.compare.LLMConnector``). openai and httpx are imported inside, so the CLI starts fast.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.settings import LLMSettings
    from ml.compare import LLMEndpoint, LLMReply

SERVER_START_S = 300.0  # loading a 1.5B GGUF on a loaded 2-core machine takes tens of seconds
# tokens of context of a served GGUF: a guide of 17 types (CrossNER science) with 5 demonstrations and the answer
# needs about 5,000; `nerloop llm serve`'s default is 4,096
SERVED_CTX = 8192
SERVER_STOP_S = 10.0  # after SIGTERM, then SIGKILL: nothing of the server's is worth keeping once compare stops


@contextmanager
def open_endpoint(
    *, url: str | None, gguf: Path | None, model: str, timeout_s: float, max_tokens: int
) -> Iterator[LLMEndpoint]:
    """Open the comparison's LLM: ``url`` as it is, or ``gguf`` served on a free local port and stopped on exit.

    Args:
        url: An OpenAI-compatible base URL (``http://host:port/v1``).
        gguf: A GGUF file (used when ``url`` is None).
        model: The model name sent with each request.
        timeout_s: Seconds per request (one retry with backoff after a timeout or a 5xx).
        max_tokens: Most completion tokens per answer.

    Raises:
        CompareError: neither or both given, the file is missing, or the server does not start.
    """
    from ml.compare import CompareError

    if url is not None and gguf is None:
        yield _endpoint(url, model=model, name=f"{url} {model}", timeout_s=timeout_s, max_tokens=max_tokens)
    elif gguf is not None and url is None:
        if not gguf.is_file():
            raise CompareError(f"{gguf}: no such GGUF file")
        with _lazily_served(gguf, timeout_s=timeout_s, max_tokens=max_tokens) as endpoint:
            yield endpoint
    else:
        raise CompareError("give the LLM as --llm-url URL or --gguf FILE (one of them)")


def endpoint_from_settings(settings: LLMSettings) -> LLMEndpoint:
    """A project's LLM (``NER_LLM__*``: URL, model, key, response format, retries) as a comparison's endpoint.

    Its slots are the server's (``/props``; 1 when it does not say).
    """
    from backend.adapters.llm import OpenAIChatClient
    from backend.errors import UpstreamError
    from ml.compare import LLMCallError, LLMEndpoint, LLMReply

    client = OpenAIChatClient(settings)

    def annotate(messages: Sequence[Mapping[str, str]], schema: Mapping[str, Any]) -> LLMReply:
        try:
            done = client.complete([dict(m) for m in messages], schema=dict(schema))
        except UpstreamError as exc:
            raise LLMCallError(str(exc)) from None
        return LLMReply(done.content, done.prompt_tokens, done.completion_tokens)

    return LLMEndpoint(annotate, f"{settings.base_url} {settings.model}", _slots(settings.base_url))


def _endpoint(url: str, *, model: str, name: str, timeout_s: float, max_tokens: int) -> LLMEndpoint:
    from backend.settings import LLMSettings

    settings = LLMSettings(base_url=url, model=model, timeout_s=timeout_s, max_retries=1, max_tokens=max_tokens)
    endpoint = endpoint_from_settings(settings)
    return replace(endpoint, name=name)


@contextmanager
def _lazily_served(gguf: Path, *, timeout_s: float, max_tokens: int) -> Iterator[LLMEndpoint]:
    """The GGUF's endpoint, whose server starts at the first request: a rerun answered from the cache starts none.

    llama-cpp-python's server answers one request at a time (1 slot).
    """
    from ml.compare import LLMEndpoint

    lock = threading.Lock()
    opened: list[LLMEndpoint] = []
    with ExitStack() as stack:

        def annotate(messages: Sequence[Mapping[str, str]], schema: Mapping[str, Any]) -> LLMReply:
            with lock:
                if not opened:
                    url = stack.enter_context(_served(gguf))
                    opened.append(
                        _endpoint(url, model="local", name=gguf.name, timeout_s=timeout_s, max_tokens=max_tokens)
                    )
            return opened[0].annotate(messages, schema)

        yield LLMEndpoint(annotate, gguf.name, 1)


def _slots(url: str) -> int:
    """llama-server's parallel slots (``GET /props``, ``total_slots``); 1 for a server that does not say."""
    import httpx

    try:
        props = httpx.get(url.rstrip("/").removesuffix("/v1") + "/props", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return 1
    slots = props.get("total_slots") if isinstance(props, dict) else None
    return slots if type(slots) is int and slots > 0 else 1


@contextmanager
def _served(gguf: Path) -> Iterator[str]:
    """``nerloop llm serve --model gguf`` on a free port, until exit; its log goes to a temporary file."""
    import httpx

    from ml.compare import CompareError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    command = [sys.executable, "-c", "from backend.cli import main; main()", "llm", "serve"]
    # no RAM cache of past prompts' states: llama-cpp-python saves each state with its logits (prompt tokens x
    # vocabulary floats: 1.9 GB per 3,000-token prompt of Qwen2.5's 151,936-token vocabulary), beyond the cache's
    # size accounting; the comparison's requests come one after another, so the server's reuse of the previous
    # request's prefix (the guide) is all it needs
    command += ["--model", str(gguf), "--port", str(port), "--ctx", str(SERVED_CTX), "--prompt-cache-mib", "0"]
    base = f"http://127.0.0.1:{port}/v1"
    with tempfile.NamedTemporaryFile("w+b", prefix="nerloop-compare-llm-", suffix=".log") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + SERVER_START_S
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode("utf-8", "replace")[-2000:]
                    raise CompareError(f"the llama.cpp server for {gguf} exited ({process.returncode}):\n{tail}")
                try:
                    if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise CompareError(f"the llama.cpp server for {gguf} did not answer within {SERVER_START_S:.0f} s")
                time.sleep(0.2)  # polling a server that is loading its model; no fixed wait
            yield base
        finally:
            process.terminate()
            try:  # uvicorn's graceful stop waits for the request in flight (a minute for a 5-shot prompt on a CPU)
                process.wait(timeout=SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
