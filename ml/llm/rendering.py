"""Chat messages rendered into the tokens a llama.cpp server evaluates.

Checks that a prompt's fixed part is a prefix of the token sequence (what the server's prefix cache can reuse), not only
of the messages.

Renders as llama-cpp-python's server does (``Llama.__init__`` chooses the chat format,
``chat_formatter_to_chat_completion_handler`` tokenizes): the GGUF's own chat template through ``Jinja2ChatFormatter``
unless llama-cpp-python recognises the template as one of its built-in formats, then the tokenizer with special
tokens. Needs ``llama-cpp-python`` (imported here only when called) and reads only the GGUF's vocabulary.
"""

from __future__ import annotations

import atexit
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RenderedPrompt:
    """A chat as the server evaluates it.

    Attributes:
        text: The prompt after the chat template (special tokens written out).
        tokens: Its token ids, as the server tokenizes it.
    """

    text: str
    tokens: tuple[int, ...]


@lru_cache(maxsize=4)
def _vocabulary(gguf: Path) -> Any:
    from llama_cpp import Llama

    llm = Llama(str(gguf), vocab_only=True, verbose=False)
    # closed before the interpreter tears its modules down: Llama.__del__ at that point fails ("'NoneType' object is
    # not callable", printed as an ignored exception)
    atexit.register(llm.close)
    return llm


def render_chat(gguf: Path, messages: Sequence[dict[str, str]], *, generation_prompt: bool = True) -> RenderedPrompt:
    """Render chat messages with a GGUF model's chat template and tokenize them as llama-cpp-python's server does.

    Args:
        gguf: The model file (only its vocabulary and metadata are loaded; cached per path).
        messages: OpenAI chat messages (``build_messages``).
        generation_prompt: Append the template's assistant turn marker, as the server does for a request;
            False renders a prefix of a conversation (e.g. the system message alone).

    Returns:
        The rendered text and its tokens.

    Raises:
        ValueError: The GGUF has no chat template, or llama-cpp-python would replace it by a built-in format this
            function does not reproduce.
    """
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter, guess_chat_format_from_gguf_metadata

    llm = _vocabulary(Path(gguf))
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError(f"{gguf} has no chat template (tokenizer.chat_template); pass a chat model's GGUF")
    builtin = guess_chat_format_from_gguf_metadata(llm.metadata)
    if builtin is not None:
        raise ValueError(f"llama-cpp-python renders {gguf} with its built-in {builtin!r} format, not the template")
    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(llm.token_eos()),
        bos_token=llm._model.token_get_text(llm.token_bos()),
        add_generation_prompt=generation_prompt,
    )
    chat: list[Any] = list(messages)  # OpenAI message dicts; llama_cpp types them as TypedDicts per role
    result = formatter(messages=chat)
    tokens = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
    return RenderedPrompt(text=result.prompt, tokens=tuple(int(t) for t in tokens))


def shared_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all sequences share (what a prefix cache can reuse from one to the next).

    Args:
        sequences: Token sequences.

    Returns:
        The length of their longest common prefix; 0 for no sequence.
    """
    if not sequences:
        return 0
    n = 0
    shortest = min(len(s) for s in sequences)
    while n < shortest and all(s[n] == sequences[0][n] for s in sequences):
        n += 1
    return n
