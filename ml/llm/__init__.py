"""LLM pre-annotation, the pure part: prompts from the guide, demonstration choice, answer parsing, cost.

The only I/O (the chat-completion call) lives in the backend's LLM client; everything here is deterministic.
"""

from ml.llm.cost import Prices, cost_usd
from ml.llm.demos import DemoSelector, DemoStrategy
from ml.llm.parse import ParsedEntities, find_mention, parse_response
from ml.llm.prompt import (
    PROMPT_VERSION,
    Demonstration,
    build_messages,
    demonstrations_from_docs,
    prompt_version,
    response_schema,
)

__all__ = [
    "PROMPT_VERSION",
    "DemoSelector",
    "DemoStrategy",
    "Demonstration",
    "ParsedEntities",
    "Prices",
    "build_messages",
    "cost_usd",
    "demonstrations_from_docs",
    "find_mention",
    "parse_response",
    "prompt_version",
    "response_schema",
]
