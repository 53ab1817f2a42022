"""The backend's errors, all in one place.

The ones a client may see (``ServiceError`` and its kinds, each mapped to one HTTP status by ``backend.api.errors``) and
the internal ``RunLostError``.

Every layer of the backend raises these (adapters too: a Label Studio or LLM failure is an ``UpstreamError``); the
messages are safe to show to a client and say what to do next.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base: the message is safe to show to a client and says what to do (HTTP 500 when no kind fits)."""


class NotFoundError(ServiceError):
    """A project, version or label does not exist (HTTP 404)."""


class InvalidInputError(ServiceError):
    """The request is well-formed JSON but makes no sense: unknown label, text too long... (HTTP 422)."""


class ComparisonConflictError(ServiceError):
    """A comparison of the same labels with other options is queued or running (HTTP 409)."""


class UpstreamError(ServiceError):
    """A service we depend on (the LLM, Label Studio, the broker) failed or timed out (HTTP 502)."""


class ModelUnavailableError(ServiceError):
    """The serving model cannot be loaded and nothing else can answer for its types (HTTP 503)."""


class UpstreamRefusedError(UpstreamError):
    """The service understood the request and refused it (an HTTP 4xx other than 408 and 429).

    The same request will be refused again, so it is not retried. ``upstream_status`` is the service's HTTP status (404:
    the object is gone).
    """

    def __init__(self, message: str, *, upstream_status: int) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status


class RunLostError(Exception):
    """This process no longer owns the run (it was expired, and maybe asked for again): stop working on it.

    Internal: a training process stops on it; it never reaches a client.
    """
