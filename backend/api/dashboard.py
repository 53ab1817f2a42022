"""The leads' dashboard: Jinja2 pages (autoescaped) over the same data as the JSON API, charts drawn by plotly.js.

``GET /dashboard`` is the overview of every project, ``GET /dashboard/{id}`` one project's page, and
``GET /dashboard/static/{name}`` its script, style sheet and plotly.js, which is read from the installed ``plotly``
package: the pages load nothing from the network. The page's controls (routing override, rollback) and its live
run progress call the platform API from the browser with the page's own credentials (same origin).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from backend.api.charts import project_charts
from backend.api.deps import DbSession, require_auth
from backend.api.schemas import ProjectOverview, ProjectProgress
from backend.errors import NotFoundError
from backend.ids import DbId
from backend.services.progress import project_progress, projects_overview
from backend.services.projects import project_by_id

router = APIRouter(prefix="/dashboard", dependencies=[Depends(require_auth)], include_in_schema=False)

STATIC = Path(__file__).resolve().parents[1] / "static"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}
# browsers may keep the assets a day; plotly.js (4.7 MB) changes only with the installed package
CACHE = {"Cache-Control": "private, max-age=86400"}


@cache
def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("backend", "templates"), autoescape=True, undefined=StrictUndefined, auto_reload=False
    )
    env.globals["static"] = lambda name: f"/dashboard/static/{name}"
    return env


def _assets() -> dict[str, Path]:
    """The files ``/dashboard/static`` serves: ``backend/static/*`` and plotly.js from the plotly package."""
    files = {path.name: path for path in STATIC.iterdir() if path.suffix in MEDIA_TYPES}
    files["plotly.min.js"] = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    return files


def render_overview(projects: list[ProjectOverview]) -> str:
    """The overview page's HTML."""
    return _templates().get_template("overview.html.j2").render(projects=projects)


def render(progress: ProjectProgress | dict[str, Any]) -> str:
    """One project's page for ``project_progress`` data (the dict, or its schema).

    Its tables, and its plotly figures (``backend.api.charts``) as JSON for plotly.js.

    Raises:
        pydantic.ValidationError: the dict does not have the progress API's shape.
    """
    data = progress if isinstance(progress, ProjectProgress) else ProjectProgress.model_validate(progress)
    serving = next((v for v in data.versions if v.version == data.serving), None)
    context: dict[str, Any] = {
        "p": data,
        "serving": serving,
        "routes": {r.label: r for r in data.routing},
        "compared": next((run for run in data.runs if run.details.gate), None),  # the newest run the gate compared
        "charts": project_charts(data),
    }
    return _templates().get_template("project.html.j2").render(**context)


@router.get("", response_class=HTMLResponse)
def overview(db: DbSession) -> str:
    """Every project: labels, serving version, types at target, latest run."""
    return render_overview([ProjectOverview.model_validate(item) for item in projects_overview(db)])


@router.get("/static/{name}", response_class=FileResponse)
def static(name: str) -> FileResponse:
    """The dashboard's script, style sheet and plotly.js (a fixed list of files; anything else is a 404)."""
    path = _assets().get(name)
    if path is None:
        raise NotFoundError(f"no dashboard asset {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=CACHE)


@router.get("/{project_id}", response_class=HTMLResponse)
def project_page(project_id: DbId, db: DbSession) -> str:
    """One project's progress towards its per-type target, with its routing, runs and versions."""
    return render(project_progress(db, project_by_id(db, project_id)))
