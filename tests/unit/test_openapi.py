"""The HTTP contract is typed (issue #16).

Every route's success answer has a schema in the OpenAPI document, so Label Studio's answers (``/health``, ``/setup``,
``/predict``, ``/webhook``, ``/versions``) and the platform API's are described field by field, never as "any object".
"""

from __future__ import annotations

from typing import Any

from backend.api.app import create_app
from backend.settings import Settings

DOCUMENT = create_app(Settings(database_url="sqlite://")).openapi()
PAGES = ("text/html", "text/javascript", "text/css")


def described(schema: dict[str, Any]) -> bool:
    """Whether a JSON schema names its fields: a component, a list or union of described schemas, or a scalar.

    A bare object (``dict[str, Any]``, ``additionalProperties``) or an empty schema (no response model) is not.
    """
    if "$ref" in schema:
        return True
    if "anyOf" in schema:
        return all(described(part) for part in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        return described(schema.get("items", {}))
    return kind in ("string", "integer", "number", "boolean", "null")


def success(operation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The operation's 2xx answer: its status and its declaration."""
    code = next(code for code in sorted(operation["responses"]) if code.startswith("2"))
    return code, operation["responses"][code]


def undescribed() -> list[str]:
    """``METHOD path (status)`` of each route whose success answer has no described schema."""
    missing = []
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            code, answer = success(operation)
            content = answer.get("content", {})
            bodies = [body.get("schema", {}) for kind, body in content.items() if kind not in PAGES]
            if not content or not all(described(schema) for schema in bodies):
                missing.append(f"{method.upper()} {path} ({code})")
    return missing


def test_every_route_declares_a_schema_for_its_success_answer() -> None:
    assert undescribed() == []


def test_label_studio_answers_are_components() -> None:
    """The ML backend protocol's answers are named schemas with the fields Label Studio reads."""
    components = DOCUMENT["components"]["schemas"]
    expected = {
        ("get", "/health"): ("Health", {"status", "model_class"}),
        ("post", "/setup"): ("SetupReply", {"model_version"}),
        ("post", "/predict"): ("PredictReply", {"results"}),
        ("post", "/webhook"): ("WebhookReply", {"action", "event_id", "status", "label_change"}),
        ("get", "/versions"): ("Versions", {"versions"}),
    }
    for (method, path), (name, required) in expected.items():
        _, answer = success(DOCUMENT["paths"][path][method])
        assert answer["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}
        assert set(components[name]["required"]) == required, name
    region = components["Region"]
    assert set(region["required"]) == {"from_name", "to_name", "type", "value", "score"}
    assert set(components["SpanValue"]["required"]) == {"start", "end", "text", "labels"}


def test_the_check_refuses_an_untyped_answer() -> None:
    """``described`` tells a bare object from a typed one (so the first test can fail)."""
    assert not described({"type": "object", "additionalProperties": True})
    assert not described({"type": "object", "additionalProperties": {"type": "string"}})
    assert not described({})
    assert described({"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}})
    assert described({"anyOf": [{"$ref": "#/components/schemas/LatestComparison"}, {"type": "null"}]})
