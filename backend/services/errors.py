"""Domain errors of the backend; ``backend.api.errors`` maps each to one HTTP status."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: the message is safe to show to a client and says what to do."""

    status_code = 500


class NotFoundError(ServiceError):
    """A project, version or label does not exist."""

    status_code = 404


class InvalidInputError(ServiceError):
    """The request is well-formed JSON but makes no sense (unknown label, text too long...)."""

    status_code = 422


class UpstreamError(ServiceError):
    """A service we depend on (the LLM, Label Studio, the broker) failed or timed out."""

    status_code = 502


class ModelUnavailableError(ServiceError):
    """The serving model cannot be loaded and nothing else can answer for its types."""

    status_code = 503
