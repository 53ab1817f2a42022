"""FastAPI dependencies: the session, the app's services, authentication."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from backend.adapters.jobs import JobQueue
from backend.services.predictions import Predictor
from backend.settings import Settings


def get_db(request: Request) -> Iterator[Session]:
    """A session per request; routes call services, which commit."""
    session: Session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_predictor(request: Request) -> Predictor:
    """The app's predictor (models and LLM)."""
    predictor: Predictor = request.app.state.predictor
    return predictor


def get_jobs(request: Request) -> JobQueue:
    """The job queue."""
    jobs: JobQueue = request.app.state.jobs
    return jobs


def require_auth(request: Request, settings: Annotated[Settings, Depends(get_app_settings)]) -> None:
    """Basic auth (what Label Studio offers ML backends) or a bearer token, when configured.

    Credentials are compared as bytes: ``secrets.compare_digest`` refuses non-ASCII text, and a header may carry
    any byte (a wrong non-ASCII credential is a 401 like any wrong one).
    """
    if settings.auth_token is None and settings.auth_username is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    token = settings.auth_token
    if token is not None and scheme.lower() == "bearer" and _same(_header_bytes(value), token.get_secret_value()):
        return
    if settings.auth_username is not None and settings.auth_password is not None and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value).partition(b":")
        except ValueError:  # binascii.Error, and non-ASCII text, which b64decode refuses
            user, password = b"", b""
        # both compared, always: the time taken says nothing about which one was wrong
        user_ok = _same(user, settings.auth_username)
        if _same(password, settings.auth_password.get_secret_value()) and user_ok:
            return
    raise HTTPException(
        401, "authentication required (basic auth or bearer token)", headers={"WWW-Authenticate": "Basic"}
    )


def _header_bytes(value: str) -> bytes:
    """A header value as it came on the wire (Starlette decodes headers as latin-1)."""
    return value.encode("latin-1")


def _same(given: bytes, expected: str) -> bool:
    """Constant-time comparison of a credential's bytes with the configured (UTF-8) secret."""
    return secrets.compare_digest(given, expected.encode())


DbSession = Annotated[Session, Depends(get_db)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
