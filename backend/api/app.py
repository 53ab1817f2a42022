"""The FastAPI application: models load in the lifespan, never at import."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from sqlalchemy import select

from backend.adapters.jobs import CeleryJobQueue
from backend.adapters.llm import OpenAIChatClient
from backend.adapters.models import ModelRegistry
from backend.api import comparison, dashboard, errors, limits, ml_backend, platform, quality, sampling
from backend.db.models import ModelVersion, Project
from backend.db.session import make_engine, session_factory
from backend.ports import JobQueue, LLMClient
from backend.services.llm_annotation import LLMAnnotator
from backend.services.predictions import Predictor
from backend.services.sweep import sweep
from backend.settings import Settings, get_settings

log = logging.getLogger("nerloop")


def create_app(
    settings: Settings | None = None, *, llm_client: LLMClient | None = None, jobs: JobQueue | None = None
) -> FastAPI:
    """Build the app; the database schema must exist (``nerloop db upgrade``)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout_s=settings.db_pool_timeout_s,
        )
        app.state.settings = settings
        app.state.webhook_limiter = anyio.CapacityLimiter(settings.webhook_concurrency)
        app.state.sessions = session_factory(engine)
        registry = ModelRegistry()
        client = llm_client or OpenAIChatClient(settings.llm)
        app.state.predictor = Predictor(
            registry, LLMAnnotator(client, settings.llm, app.state.sessions), max_text_chars=settings.max_text_chars
        )
        app.state.jobs = jobs or CeleryJobQueue(settings.redis_url)
        with app.state.sessions() as db:
            rows = db.execute(
                select(Project.id, ModelVersion.path).join(
                    ModelVersion,
                    (ModelVersion.project_id == Project.id) & (ModelVersion.version == Project.current_version),
                )
            )
            for project_id, path in rows:
                registry.preload(project_id, path)
        await asyncio.to_thread(app.state.predictor.prepare_tokenizers, app.state.sessions)
        # label indexes and demonstration indexes are built in the background: the app answers meanwhile
        warming = threading.Event()
        warm_up = threading.Thread(target=_warm_up, args=(app, warming), name="warm-up", daemon=True)
        warm_up.start()
        stop = asyncio.Event()
        sweeper = asyncio.create_task(_sweep_periodically(app, settings, stop))
        try:
            yield
        finally:
            stop.set()
            warming.set()
            await sweeper  # a sweep under way ends first (its broker calls time out within a second or two)
            await asyncio.to_thread(warm_up.join)  # nothing may use the engine once it is disposed
            await asyncio.to_thread(app.state.predictor.close)
            engine.dispose()

    app = FastAPI(title="nerloop", version="0.1.0", lifespan=lifespan)
    errors.install(app)
    app.add_middleware(limits.BodyChecks, max_body_bytes=settings.max_body_bytes)
    app.include_router(ml_backend.router)
    app.include_router(ml_backend.protected)
    app.include_router(platform.router)
    app.include_router(sampling.router)
    app.include_router(dashboard.router)
    app.include_router(quality.router)
    app.include_router(comparison.router)
    return app


def _warm_up(app: FastAPI, stop: threading.Event) -> None:
    try:
        app.state.predictor.warm_up(app.state.sessions, stop)
    except Exception:  # requests build what they need themselves; this only saves them the wait
        log.exception("warm-up failed")


async def _sweep_periodically(app: FastAPI, settings: Settings, stop: asyncio.Event) -> None:
    """Every NER_SWEEP_INTERVAL_S, until ``stop``.

    Re-send what the broker lost or never got, fail runs whose process died, start due retrains
    (``backend.services.sweep``). So jobs of events stored while Redis was away reach the running workers once it is
    back, without restarting them.
    """
    if settings.sweep_interval_s <= 0:
        return
    while True:
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.sweep_interval_s)
            return
        except TimeoutError:
            pass
        try:
            report = await asyncio.to_thread(
                sweep,
                app.state.sessions,
                app.state.jobs,
                heartbeat_timeout_s=settings.run_heartbeat_timeout_s,
                max_resend_interval_s=settings.train_time_limit_s,
            )
        except Exception as exc:  # the broker or the database is away: the next period tries again
            log.warning("sweep failed: %s", exc)
            continue
        if report:
            log.info("sweep: %s", report)
