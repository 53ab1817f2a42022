"""FastAPI dependencies: the session, the app's services, authentication.

The ones that do no I/O are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, one thread hop
each per request, and under a burst those hops queue behind the requests at work (a webhook took six of them).
The session stays a plain generator: closing it may roll back on the wire, which must not block the event loop.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.http import HTTPBase
from sqlalchemy.orm import Session

from backend.ports import JobQueue
from backend.services.predictions import Predictor
from backend.settings import Settings


def get_db(request: Request) -> Iterator[Session]:
    """A session per request; routes call services, which commit."""
    session: Session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_predictor(request: Request) -> Predictor:
    """The app's predictor (models and LLM)."""
    predictor: Predictor = request.app.state.predictor
    return predictor


async def get_jobs(request: Request) -> JobQueue:
    """The job queue."""
    jobs: JobQueue = request.app.state.jobs
    return jobs


# The two schemes of :func:`require_auth`, also declared in the OpenAPI document. Basic auth goes through the generic
# scheme, which hands over the header's credentials undecoded: fastapi's HTTPBasic decodes them as ASCII and answers
# a 401 of its own to anything else, while browsers and Label Studio send UTF-8 (RFC 7617).
BEARER = HTTPBearer(auto_error=False, description="NER_AUTH_TOKEN, when set")
BASIC = HTTPBase(
    scheme="basic",
    scheme_name="HTTPBasic",
    description="NER_AUTH_USERNAME and NER_AUTH_PASSWORD, when set",
    auto_error=False,
)


async def require_auth(
    settings: Annotated[Settings, Depends(get_app_settings)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    given: Annotated[HTTPAuthorizationCredentials | None, Depends(BASIC)],
) -> None:
    """Basic auth (what Label Studio offers ML backends) or a bearer token, when configured.

    Credentials are compared as bytes: ``secrets.compare_digest`` refuses non-ASCII text, and a header may carry
    any byte (a wrong non-ASCII credential is a 401 like any wrong one).

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Basic`` when auth is configured and neither matches.
    """
    if settings.auth_token is None and settings.auth_username is None:
        return
    token = settings.auth_token
    if token is not None and bearer is not None and _same(_header_bytes(bearer.credentials), token.get_secret_value()):
        return
    if _basic_matches(given, settings):
        return
    raise HTTPException(
        401, "authentication required (basic auth or bearer token)", headers={"WWW-Authenticate": "Basic"}
    )


def _basic_matches(given: HTTPAuthorizationCredentials | None, settings: Settings) -> bool:
    """Whether a ``Basic`` header (``BASIC`` answers for any scheme) holds the configured user and password."""
    if given is None or given.scheme.lower() != "basic":
        return False
    if settings.auth_username is None or settings.auth_password is None:
        return False
    try:
        user, _, password = base64.b64decode(given.credentials).partition(b":")
    except ValueError:  # binascii.Error, and non-ASCII text, which b64decode refuses
        user, password = b"", b""
    # both compared, always: the time taken says nothing about which one was wrong
    user_ok = _same(user, settings.auth_username)
    return _same(password, settings.auth_password.get_secret_value()) and user_ok


def _header_bytes(value: str) -> bytes:
    """A header value as it came on the wire (Starlette decodes headers as latin-1)."""
    return value.encode("latin-1")


def _same(given: bytes, expected: str) -> bool:
    """Constant-time comparison of a credential's bytes with the configured (UTF-8) secret."""
    return secrets.compare_digest(given, expected.encode())


DbSession = Annotated[Session, Depends(get_db)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
