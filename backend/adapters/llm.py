"""The LLM port's (``backend.ports.LLMClient``) OpenAI-compatible client (OpenAI, vLLM, Ollama, llama.cpp's server)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from backend.errors import UpstreamError
from backend.ids import MAX_ID
from backend.ports import Completion
from backend.settings import LLMSettings


class OpenAIChatClient:
    """The ``openai`` client: timeouts, retries with exponential backoff on 408/409/429/5xx and connection errors.

    Prompts from ``ml.llm.build_messages`` begin with the project's guide, byte-identical on every call, so a
    server's prefix cache serves it: llama-cpp-python's server reuses the longest prefix shared with the previous
    request, llama-server does when the request says ``cache_prompt`` (sent with the llama.cpp dialect,
    ``response_format="json_object"``), vLLM with automatic prefix caching, and OpenAI caches prefixes of 1,024
    tokens or more by itself.
    """

    def __init__(self, settings: LLMSettings) -> None:
        self._settings = settings
        self._client = openai.OpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value(),
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )

    @property
    def model(self) -> str:
        """The configured model name."""
        return self._settings.model

    def close(self) -> None:
        """Close the HTTP connections (the client is unusable afterwards)."""
        self._client.close()

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any] | None:
        kind = self._settings.response_format
        if kind == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "entities", "schema": schema, "strict": True}}
        if kind == "json_object":
            return {"type": "json_object", "schema": schema}
        return None

    def complete(self, messages: Sequence[dict[str, str]], *, schema: dict[str, Any]) -> Completion:
        """One completion at temperature 0."""
        extra: dict[str, Any] = {}
        response_format = self._response_format(schema)
        if response_format is not None:
            extra["response_format"] = response_format
        if self._settings.response_format == "json_object":
            # llama.cpp's dialect: llama-server keeps the prompt's KV cache for the next request only when asked
            # (llama-cpp-python's server ignores the field and reuses the prefix anyway); OpenAI would refuse it.
            extra["extra_body"] = {"cache_prompt": True}
        started = time.monotonic()
        try:
            response = self._client.chat.completions.create(
                model=self._settings.model,
                messages=list(messages),  # type: ignore[arg-type]
                temperature=0.0,
                max_tokens=self._settings.max_tokens,
                **extra,
            )
        except openai.APITimeoutError:
            raise UpstreamError(
                f"the LLM at {self._settings.base_url} timed out after "
                f"{self._settings.max_retries} retries ({self._settings.timeout_s:.0f} s each)"
            ) from None
        except openai.APIStatusError as exc:
            raise UpstreamError(f"the LLM at {self._settings.base_url} answered HTTP {exc.status_code}") from None
        except openai.APIConnectionError:
            raise UpstreamError(f"cannot reach the LLM at {self._settings.base_url}") from None
        except (openai.APIResponseValidationError, ValueError):  # a 200 whose body is not JSON
            raise self._unusable("a body that is not JSON") from None
        content, prompt_tokens, completion_tokens = self._read(response)
        return Completion(
            content=content,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=int((time.monotonic() - started) * 1000),
            cached_prompt_tokens=_cached_prompt_tokens(response, prompt_tokens),
        )

    def _read(self, response: object) -> tuple[str, int, int]:
        """The answer's text and token counts, checked.

        The client builds the response without validating it, and what is read here is stored (an empty ``choices`` is
        an empty answer, as before).
        """
        if isinstance(response, str):  # what the client returns for a body that is not JSON
            raise self._unusable(f"a body that is not JSON (it begins {response[:40]!r})")
        if not isinstance(response, ChatCompletion) or not isinstance(response.choices, list):
            raise self._unusable("a body that is not a chat completion")
        content = response.choices[0].message.content if response.choices else None
        if content is not None and not isinstance(content, str):
            raise self._unusable("a message content that is not text")
        text = content or ""
        if "\x00" in text:
            raise self._unusable("a NUL character in its text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise self._unusable("a lone UTF-16 surrogate in its text") from None
        usage = response.usage
        counts = (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (0, 0)
        if not all(type(count) is int and 0 <= count <= MAX_ID for count in counts):
            raise self._unusable(f"impossible token counts {counts!r:.80}")
        return text, counts[0], counts[1]

    def _unusable(self, what: str) -> UpstreamError:
        return UpstreamError(f"the LLM at {self._settings.base_url} answered HTTP 200 with {what}; check the endpoint")


def _cached_prompt_tokens(response: ChatCompletion, prompt_tokens: int) -> int | None:
    """The prompt tokens the server served from its cache, if it says so plausibly (0..prompt_tokens), else None."""
    # getattr: the client builds the response without validating it, so any part may be of another shape
    details = getattr(response.usage, "prompt_tokens_details", None)
    cached: object = getattr(details, "cached_tokens", None)
    if cached is None:
        timings = (response.model_extra or {}).get("timings")  # llama-server: cache_n reused, prompt_n evaluated
        cached = timings.get("cache_n") if isinstance(timings, dict) else None
    if type(cached) is int and 0 <= cached <= prompt_tokens:
        return cached
    return None
