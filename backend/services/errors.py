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


class UpstreamRefusedError(UpstreamError):
    """The service understood the request and refused it (an HTTP 4xx other than 408 and 429): the same request
    will be refused again, so it is not retried. ``upstream_status`` is the service's HTTP status (404: the object
    is gone)."""

    def __init__(self, message: str, *, upstream_status: int) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
