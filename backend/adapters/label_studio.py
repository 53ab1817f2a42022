"""Label Studio over HTTP (SDK 2.x): the calls nerloop makes, with errors turned into clear messages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from backend.errors import UpstreamError, UpstreamRefusedError
from backend.settings import LabelStudioSettings

IMPORT_CHUNK = 500
# Label Studio checks a backend it connects by calling it with a 3 s read timeout (shared/docs/label-studio.md):
# a backend briefly busy (a loaded machine, a starting worker beside it) fails that check, not the connection
CONNECT_ATTEMPTS = 5
_BACKEND_DID_NOT_ANSWER = ("timed out", "Connection aborted")  # not "refused": no backend listens there
_TRANSIENT = (408, 429)  # 4xx answers that a later try may not get (the rest raise UpstreamRefusedError)


def _backend_did_not_answer(exc: BaseException) -> bool:
    """Label Studio refused the backend because its check call got no answer in time (worth another try).

    Rather than because of what the backend answered (final).
    """
    return (
        isinstance(exc, ApiError)
        and exc.status_code == 400
        and any(marker in str(exc.body) for marker in _BACKEND_DID_NOT_ANSWER)
    )


@contextmanager
def _explained(what: str, url: str) -> Iterator[None]:
    try:
        yield
    except ApiError as exc:
        message = f"Label Studio at {url} refused to {what}: HTTP {exc.status_code} {exc.body}"
        if exc.status_code is not None and 400 <= exc.status_code < 500 and exc.status_code not in _TRANSIENT:
            raise UpstreamRefusedError(message, upstream_status=exc.status_code) from None
        raise UpstreamError(message) from None
    except httpx.HTTPError as exc:
        raise UpstreamError(f"cannot reach Label Studio at {url} to {what} ({exc})") from None


def _id(value: int | None, what: str) -> int:
    if value is None:
        raise UpstreamError(f"Label Studio created a {what} but returned no id")
    return value


class LabelStudioGateway:
    """The project-level operations of nerloop on a Label Studio instance."""

    def __init__(self, settings: LabelStudioSettings) -> None:
        if settings.api_key is None:
            raise UpstreamError("no Label Studio token: set NER_LABEL_STUDIO__API_KEY")
        self.url = settings.url
        self._http = httpx.Client(timeout=120)
        self.client = LabelStudio(  # type: ignore[no-untyped-call]
            base_url=settings.url, api_key=settings.api_key.get_secret_value(), httpx_client=self._http
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> LabelStudioGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_project(self, *, title: str, label_config: str, description: str = "") -> int:
        """Create a project; return its id."""
        with _explained("create the project", self.url):
            project = self.client.projects.create(title=title, label_config=label_config, description=description)
        return _id(project.id, "project")

    def delete_project(self, project_id: int) -> None:
        """Delete a project with its tasks (undoes a project creation that failed half-way)."""
        with _explained(f"delete project {project_id}", self.url):
            self.client.projects.delete(id=project_id)

    def import_tasks(self, project_id: int, texts: Sequence[str], *, field: str = "text") -> list[int]:
        """Import text tasks (``{field: text}``) in chunks; return the new task ids in order."""
        ids: list[int] = []
        with _explained("import tasks", self.url):
            for start in range(0, len(texts), IMPORT_CHUNK):
                chunk: Any = [{field: text} for text in texts[start : start + IMPORT_CHUNK]]
                response = self.client.projects.import_tasks(id=project_id, request=chunk, return_task_ids=True)
                ids.extend(int(i) for i in (getattr(response, "task_ids", None) or []))
        return ids

    def project_config(self, project_id: int) -> tuple[str, str]:
        """A project's title and labeling config (``<View>`` XML)."""
        with _explained(f"read project {project_id}", self.url):
            project = self.client.projects.get(id=project_id)
        return project.title or f"project {project_id}", project.label_config or ""

    def backend_urls(self, project_id: int) -> dict[str, int]:
        """The ML backends connected to a project: url -> ML backend id."""
        with _explained(f"list the ML backends of project {project_id}", self.url):
            backends: Any = self.client.ml.list(project=project_id)
        return {str(b.url).rstrip("/"): int(b.id) for b in backends if b.id is not None and b.url}

    def connect_backend(self, project_id: int, *, url: str, title: str, basic_auth: tuple[str, str] | None) -> int:
        """Connect the ML backend (interactive pre-annotation on); return the ML backend id.

        Label Studio calls the backend before it accepts it; when that call timed out, the
        connection is tried again, ``CONNECT_ATTEMPTS`` times in all, 1-8 s apart (tenacity).

        Raises:
            UpstreamError: Label Studio refused the backend (its reason quoted) or cannot be reached.
        """
        auth: dict[str, Any] = {}
        if basic_auth is not None:
            auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
        create = retry(
            retry=retry_if_exception(_backend_did_not_answer),
            stop=stop_after_attempt(CONNECT_ATTEMPTS),
            wait=wait_exponential(multiplier=1, max=8),
            reraise=True,
        )(self.client.ml.create)
        with _explained("connect the ML backend", self.url):
            backend = create(project=project_id, url=url, title=title, is_interactive=True, **auth)
        return _id(backend.id, "ML backend")

    def use_uncertainty_sampling(self, project_id: int, *, model_version: str | None = None) -> None:
        """Serve the lowest-scored task next; scores count only for ``model_version`` (the project's)."""
        fields: dict[str, Any] = {"sampling": "Uncertainty sampling"}
        if model_version is not None:
            fields["model_version"] = model_version
        with _explained("switch on uncertainty sampling", self.url):
            self.client.projects.update(id=project_id, **fields)

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of a project with its annotations, in Label Studio's export shape."""
        tasks: list[dict[str, Any]] = []
        with _explained("list the project's tasks", self.url):
            pages: Any = self.client.tasks.list(project=project_id, fields="all", page_size=500)
            for task in pages:
                raw = task.model_dump(mode="json") if hasattr(task, "model_dump") else dict(task)
                tasks.append(
                    {"id": raw["id"], "data": raw.get("data") or {}, "annotations": raw.get("annotations") or []}
                )
        return tasks

    def task_text(self, task_id: int, *, field: str = "text") -> str | None:
        """The text of one task, ``data[field]`` (None when it has none, or when the task was deleted)."""
        with _explained(f"read task {task_id}", self.url):
            try:
                task = self.client.tasks.get(id=str(task_id))
            except ApiError as exc:
                if exc.status_code == 404:
                    return None
                raise
        text = (task.data or {}).get(field)
        return text if isinstance(text, str) else None

    def task_predictions(self, task_id: int) -> dict[int, str]:
        """A task's predictions: prediction id -> model version."""
        with _explained(f"list the predictions of task {task_id}", self.url):
            predictions = self.client.predictions.list(task=task_id)
        return {int(p.id): str(p.model_version or "") for p in predictions if p.id is not None}

    def delete_prediction(self, prediction_id: int) -> None:
        """Remove one prediction.

        One that is already gone (HTTP 404: deleted in Label Studio, or with its task) is done, not an error.
        """
        with _explained(f"delete prediction {prediction_id}", self.url):
            try:
                self.client.predictions.delete(id=prediction_id)
            except ApiError as exc:
                if exc.status_code != 404:
                    raise

    def push_prediction(self, task_id: int, *, result: list[dict[str, Any]], score: float, model_version: str) -> int:
        """Store one scored prediction on a task; return its id."""
        with _explained("store a prediction", self.url):
            prediction = self.client.predictions.create(
                task=task_id, result=result, score=score, model_version=model_version
            )
        return _id(prediction.id, "prediction")

    def update_prediction(
        self, prediction_id: int, *, result: list[dict[str, Any]], score: float, model_version: str
    ) -> None:
        """Replace a stored prediction's result and score."""
        with _explained(f"update prediction {prediction_id}", self.url):
            self.client.predictions.update(id=prediction_id, result=result, score=score, model_version=model_version)

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Make ``model_version`` the project's (ordering and /next use only its predictions)."""
        with _explained("set the project's model version", self.url):
            self.client.projects.update(id=project_id, model_version=model_version)

    def ensure_prediction_view(self, project_id: int, *, title: str, model_version: str) -> int:
        """A Data Manager tab of the project, ``title``, showing the tasks with a prediction of ``model_version``.

        The filter is ``tasks:predictions_model_versions``; the tab is created once and found by its title after.

        Returns:
            The view's id (``client.tasks.list(project=..., view=<id>)`` lists its tasks).
        """
        with _explained(f"list the Data Manager tabs of project {project_id}", self.url):
            for view in self.client.views.list(project=project_id):
                if view.id is not None and (view.data or {}).get("title") == title:
                    return int(view.id)
        filters = {
            "conjunction": "and",
            "items": [
                {
                    "filter": "filter:tasks:predictions_model_versions",
                    "operator": "contains",
                    "type": "List",
                    "value": [model_version],  # a list: Label Studio matches any of its items as a substring
                }
            ],
        }
        data: Any = {"title": title, "filters": filters}
        with _explained(f"add the {title!r} tab to project {project_id}", self.url):
            view = self.client.views.create(project=project_id, data=data)
        return _id(view.id, "view")
