"""The one place that maps errors to HTTP answers: JSON ``{"error": message}``, never a traceback.

``STATUS_OF`` gives each kind of ``backend.errors.ServiceError`` its status; routes raise those errors and never
choose a status for one themselves.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

from backend.errors import (
    ComparisonConflictError,
    InvalidInputError,
    ModelUnavailableError,
    NotFoundError,
    ServiceError,
    UpstreamError,
)
from ml.errors import DataError, MLError, ModelError

log = logging.getLogger("nerloop.api")

STATUS_OF: dict[type[ServiceError], int] = {
    NotFoundError: 404,
    ComparisonConflictError: 409,
    InvalidInputError: 422,
    UpstreamError: 502,  # UpstreamRefusedError too: the upstream service's refusal is a bad gateway to our client
    ModelUnavailableError: 503,
}
"""HTTP status per kind of service error (a subclass gets its nearest listed base's); any other: 500."""


ML_STATUS_OF: dict[type[MLError], int] = {
    ModelError: 500,  # a stored model or its recorded metrics are broken: the server's fault, not the request's
    DataError: 422,
}
"""HTTP status per kind of ``ml`` error reaching a route (nearest listed base; any other: 422, the input's fault)."""


def status_of(exc: ServiceError | MLError) -> int:
    """The HTTP status of a service or ``ml`` error (``STATUS_OF``, ``ML_STATUS_OF``).

    A service error of a kind neither lists answers 500; an ``ml`` error, 422 (its message names the bad input).
    """
    table: dict[type[Any], int] = STATUS_OF if isinstance(exc, ServiceError) else ML_STATUS_OF
    for kind in type(exc).__mro__:
        if kind in table:
            return table[kind]
    return 500 if isinstance(exc, ServiceError) else 422


def _validation_message(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    more = len(exc.errors()) - 1
    return f"{where}: {first.get('msg', 'invalid')}" + (f" (and {more} more)" if more else "")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=status_of(exc))

    @app.exception_handler(MLError)
    async def ml_error(request: Request, exc: MLError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(exc)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(PoolTimeoutError)
    async def pool_exhausted(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        log.warning("no free database connection for %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"error": "the database is busy (no free connection; NER_DB_POOL_SIZE, NER_DB_MAX_OVERFLOW); retry"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("unexpected error %s on %s %s", incident, request.method, request.url.path)
        # Starlette re-raises after this answer and uvicorn then closes the connection: say so, or a keep-alive
        # client sends its next request on a connection about to close and gets no answer (bench/RESULTS.md)
        return JSONResponse(
            {"error": f"internal error {incident}; the backend log has the details"},
            status_code=500,
            headers={"Connection": "close"},
        )
