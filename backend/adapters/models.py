"""Loaded NER models per project, swapped atomically when a new version is promoted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ml.model_store import load_model
from ml.prediction import NERModel

log = logging.getLogger(__name__)
Loader = Callable[[Path], NERModel]


class ModelRegistry:
    """Holds one loaded model per project.

    A request that finds a newer serving version starts loading it in the background and keeps using the
    loaded one; the next requests get the new model once it is ready. Requests in flight keep the
    reference they took, so a swap never breaks them. Only when nothing is loaded yet does a request wait.
    A version that fails to load is not tried again for ``retry_after_s``; ``error`` says why it failed.
    """

    def __init__(self, loader: Loader = load_model, *, retry_after_s: float = 30.0) -> None:
        self._loader = loader
        self._models: dict[int, NERModel] = {}
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Thread] = {}
        self._failed: dict[int, tuple[Path, str, float]] = {}
        self._retry_after_s = retry_after_s

    def get(self, project_id: int, *, version: str | None, path: str | None) -> NERModel | None:
        """The model to serve for a project whose current version is ``version`` (stored at ``path``)."""
        loaded = self._models.get(project_id)
        if version is None or path is None:
            return None
        if loaded is not None and loaded.version == version:
            return loaded
        failed = self._failed.get(project_id)
        if failed is not None and failed[0] == Path(path) and time.monotonic() - failed[2] < self._retry_after_s:
            return loaded  # the serving version failed to load a moment ago: keep what is loaded, if anything
        if loaded is None:
            self._load(project_id, Path(path))
            return self._models.get(project_id)
        with self._lock:
            if project_id not in self._loading:
                thread = threading.Thread(target=self._load, args=(project_id, Path(path)), daemon=True)
                self._loading[project_id] = thread
                thread.start()
        return loaded

    def preload(self, project_id: int, path: str) -> None:
        """Load a project's model now (the app's lifespan calls this for every project with a model)."""
        self._load(project_id, Path(path))

    def error(self, project_id: int) -> str | None:
        """Why the project's last load failed (None when it did not)."""
        failed = self._failed.get(project_id)
        return failed[1] if failed is not None else None

    def wait(self, timeout: float = 60.0) -> None:
        """Wait for background loads (tests and shutdown)."""
        for thread in list(self._loading.values()):
            thread.join(timeout)

    def _load(self, project_id: int, path: Path) -> None:
        try:
            model = self._loader(path)
        except Exception as exc:  # a broken version must never take the backend down: recorded, retried later
            log.exception("cannot load model %s for project %s", path, project_id)
            self._failed[project_id] = (
                path,
                f"model at {path} cannot be loaded ({type(exc).__name__}: {exc})",
                time.monotonic(),
            )
            return
        finally:
            with self._lock:
                self._loading.pop(project_id, None)
        self._failed.pop(project_id, None)
        self._models[project_id] = model  # one reference assignment: atomic for readers
        log.info("project %s now serves model %s", project_id, model.version)
