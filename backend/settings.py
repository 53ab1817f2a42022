"""Settings of the backend and workers, from ``NER_*`` environment variables (read only at entrypoints)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ml.review_settings import ReviewSettings

_ANY_URL: TypeAdapter[AnyUrl] = TypeAdapter(AnyUrl)


def _url_of(schemes: tuple[str, ...], expected: str) -> Callable[[str], str]:
    """A validator for ``AfterValidator``: the string unchanged when it parses as a URL with one of ``schemes``.

    The check parses with pydantic's ``AnyUrl`` and raises ``ValueError`` for a string that is not a URL or has
    another scheme; its message says what is ``expected`` and never repeats the value (a URL may hold a password).
    pydantic adds the field, which ``get_settings`` names as its ``NER_`` variable.
    """

    def check(value: str) -> str:
        try:
            scheme = _ANY_URL.validate_python(value).scheme
        except ValidationError as exc:
            raise ValueError(f"not a URL ({exc.errors()[0]['msg']}); expected {expected}") from None
        if scheme not in schemes:
            raise ValueError(f"a {scheme}:// URL; expected {expected}")
        return value

    return check


def _database_url(value: str) -> str:
    """``value`` unchanged when SQLAlchemy parses it as a SQLite or PostgreSQL URL (any driver).

    Raises:
        ValueError: it does not parse, or names another database (the message never repeats it: it may hold a password).
    """
    expected = "sqlite:///<file> or postgresql[+driver]://<user>@<host>/<database>"
    try:
        backend = make_url(value).get_backend_name()
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise ValueError(f"not a database URL; expected {expected}") from None
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"a {backend} URL; expected {expected}")
    return value


# URL settings stay ``str`` (callers get exactly what was set: no added trailing slash) but are checked at load
HttpUrlStr = Annotated[str, AfterValidator(_url_of(("http", "https"), "an http:// or https:// URL"))]
RedisUrlStr = Annotated[
    str,
    AfterValidator(
        _url_of(
            ("redis", "rediss", "redis+socket", "unix"), "redis://<host>:<port>/<db>, rediss://... or unix://<socket>"
        )
    ),
]
DatabaseUrlStr = Annotated[str, AfterValidator(_database_url)]


class LabelStudioSettings(BaseModel):
    """Where Label Studio is and how to authenticate (a legacy token or a personal access token)."""

    model_config = ConfigDict(extra="forbid")
    url: HttpUrlStr = "http://127.0.0.1:8080"
    api_key: SecretStr | None = None


class LLMSettings(BaseModel):
    """Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp's server)."""

    model_config = ConfigDict(extra="forbid")
    base_url: HttpUrlStr = "http://127.0.0.1:8081/v1"
    model: str = "local"
    api_key: SecretStr = SecretStr("not-needed")
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, description="retries with backoff on timeouts, 429 and 5xx")
    concurrency: PositiveInt = 4
    response_format: Literal["json_schema", "json_object", "none"] = Field(
        default="json_object",
        description="json_object: llama.cpp server ({'type': 'json_object', 'schema': ...}); "
        "json_schema: OpenAI and vLLM structured outputs; none: plain text (the parser copes)",
    )
    max_tokens: PositiveInt = 512
    demonstrations: int = Field(default=5, ge=0)
    demo_pool_max: PositiveInt = Field(
        default=10_000,
        description="demonstrations are chosen among the project's newest labelled tasks, this many (index fit time)",
    )
    demo_max_chars: PositiveInt = Field(
        default=2000, description="labelled texts longer than this are never shown as demonstrations (prompt size)"
    )
    predict_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="how long /predict waits for the LLM-routed types; then it answers the model's types, tagged "
        "'~llm-missing' (the completion goes on and is cached for the next request)",
    )
    demo_strategy: Literal["similar", "random"] = "similar"
    span_score: float = Field(
        default=0.5, ge=0.0, le=1.0, description="score given to LLM spans (no calibrated confidence)"
    )
    price_input_per_million: float = Field(default=0.0, ge=0.0)
    price_output_per_million: float = Field(default=0.0, ge=0.0)


class Settings(BaseSettings):
    """All settings; nested ones use ``__`` (``NER_LLM__BASE_URL``)."""

    # validate_by_name: a field with a validation alias (an older variable name) is still set by its name in code
    model_config = SettingsConfigDict(
        env_prefix="NER_", env_nested_delimiter="__", extra="ignore", validate_by_name=True
    )

    database_url: DatabaseUrlStr = "sqlite:///nerloop.db"
    db_pool_size: PositiveInt = Field(default=5, description="database connections kept open per process")
    db_max_overflow: int = Field(
        default=35,
        ge=0,
        description="extra connections opened under load: with the pool, one per request thread (40), so a burst "
        "of webhooks never waits for a connection",
    )
    db_pool_timeout_s: float = Field(default=10.0, gt=0, description="wait for a free connection, then a 503")
    webhook_concurrency: PositiveInt = Field(
        default=4,
        description="webhooks applied at once; the others wait their turn without a thread: 40 threads contending "
        "for the interpreter and the project's row lock made a burst's p99 3x longer (bench/RESULTS.md)",
    )
    serve_processes: PositiveInt = Field(
        default=1,
        description="processes of `nerloop serve` on its one port (uvicorn's workers): one interpreter serves about "
        "one core; each process holds its own models and database pool (NER_DB_POOL_SIZE each)",
    )
    redis_url: RedisUrlStr = "redis://127.0.0.1:6379/0"
    model_root: Path = Path("models")
    backend_url: HttpUrlStr = Field(
        default="http://127.0.0.1:9090", description="the URL Label Studio reaches the backend at"
    )
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    auth_token: SecretStr | None = None
    retrain_every_n_label_changes: PositiveInt = Field(
        default=20,
        # the name it had first, which said "annotations" for what are label-change events; still read
        validation_alias=AliasChoices("NER_RETRAIN_EVERY_N_LABEL_CHANGES", "NER_RETRAIN_EVERY_N_ANNOTATIONS"),
        description="the retrain threshold a project gets when it is registered without one: a retrain is due at "
        "each multiple of it in the project's label-change events (an annotation created, updated or deleted; "
        "backend.services.watermark). The one default of the retrain policy: a project keeps its own threshold "
        "(projects.retrain_threshold), which a re-registration changes only when given one",
    )
    retrain_max_steps: PositiveInt = Field(
        default=2000, description="most optimizer steps of a cold automatic retrain (the CNN's budget)"
    )
    retrain_min_steps: PositiveInt = Field(
        default=300, description="fewest optimizer steps of a cold retrain however few the labels (ml.training)"
    )
    retrain_learn_rate: float | None = Field(
        default=None, gt=0.0, description="peak learning rate of automatic retrains (none: the architecture's)"
    )
    retrain_batch_size: PositiveInt | None = Field(
        default=None, description="documents per optimizer step of automatic retrains (none: the architecture's)"
    )
    retrain_architecture: Literal["cnn", "transformer", "spacy-transformer", "hf-transformer"] = "cnn"
    retrain_warm_start: bool = Field(
        default=True,
        description="a retrain starts from the serving version's weights when it is compatible, for a step budget "
        "set by the new labels (ml.training.warm_start); false: every retrain starts cold",
    )
    retrain_warm_shrink: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="warm start: the serving weights are multiplied by this before the retrain (shrink and "
        "perturb, Ash and Adams 2020; 1: kept as they are; None: ml.training.settings.TrainSettings.warm_shrink)",
    )
    retrain_warm_noise: float | None = Field(
        default=None,
        ge=0.0,
        description="warm start: s.d. of the Gaussian noise added to the shrunk weights (0: none; None: "
        "ml.training.settings.TrainSettings.warm_noise)",
    )
    retrain_eval_frequency: PositiveInt = Field(
        default=100,
        description="optimizer steps between two dev evaluations of an automatic retrain (each may keep a new best "
        "checkpoint; patience counts from it); at most a fifth of the run's step budget "
        "(ml.training.settings.eval_interval)",
    )
    retrain_cold_every: int = Field(
        default=10, ge=0, description="drift guard: every Nth retrain in a row starts cold (0: never forced)"
    )
    retrain_warm_max_new_share: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="a retrain starts cold when more than this share of its training docs are new to the serving "
        "version (a bulk import; 1: never for this reason; None: "
        "ml.training.settings.TrainSettings.warm_max_new_share)",
    )
    promotion_tolerance: float = Field(
        default=0.02, ge=0.0, le=1.0, description="per-type F1 drop that blocks a promotion when beyond the noise"
    )
    dev_fraction: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="share of tasks held out (half dev, half test), by a hash of the id"
    )
    held_out_share: float = Field(
        default=0.2, gt=0.0, le=1.0, description="share of queue places given to held-out tasks, in random order"
    )
    batch_size: PositiveInt = Field(default=20, description="tasks put first for labelling after each rescoring")
    sampling_seed: int = Field(
        default=0,
        ge=0,
        description="seed of the random generator that breaks ties when a rescoring chooses its batch (the same pool "
        "and model give the same batch)",
    )
    llm_preannotate_max: int = Field(
        default=100,
        ge=0,
        description="per model version, how many of the next tasks in labelling order the LLM pre-annotates "
        "for the types routed to it (the rest show the model's types only)",
    )
    train_time_limit_s: int = Field(default=3 * 3600, ge=120, description="hard limit of one training task")
    compare_time_limit_s: int = Field(
        default=4 * 3600,
        ge=120,
        description="hard limit of one project comparison (workers.compare_project, on the train queue: it holds "
        "retrains back while it runs); a minute before it, the comparison is recorded failed",
    )
    run_heartbeat_timeout_s: float = Field(
        default=180.0,
        ge=2.0,
        description="a running training run without a heartbeat for this long is failed (its process died) and its "
        "leftovers removed; a queued run's message is re-sent after this long, then at doubling intervals",
    )
    sweep_interval_s: float = Field(
        default=30.0,
        ge=0.0,
        description="how often the backend re-sends jobs the broker lost or never got, expires dead runs and starts "
        "due retrains (0: never; workers also sweep when they start)",
    )
    max_text_chars: PositiveInt = 100_000
    max_body_bytes: PositiveInt = Field(
        default=20 * 1024 * 1024, description="larger request bodies are refused with 413 before they are read"
    )
    label_studio: LabelStudioSettings = LabelStudioSettings()
    llm: LLMSettings = LLMSettings()
    # the likely-mislabelled spans pass after each promotion (NER_REVIEW__FOLDS, ...; ml.review_settings)
    review: ReviewSettings = ReviewSettings()

    @model_validator(mode="after")
    def _basic_auth_pair(self) -> Settings:
        if (self.auth_username is None) != (self.auth_password is None):
            raise ValueError("set NER_AUTH_USERNAME and NER_AUTH_PASSWORD together (basic auth needs both)")
        return self


class SettingsError(ValueError):
    """The ``NER_*`` environment does not make valid settings (``nerloop`` prints it as one line, exit 2)."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``NER_*`` variables of ``environ`` that name no setting, each with the closest one when there is one.

    E.g. ``"NER_RETRAIN_MAX_STEP (did you mean NER_RETRAIN_MAX_STEPS?)"``. pydantic-settings ignores such a variable
    (``extra="ignore"``), so a typo would silently leave the default in force.
    """
    known: set[str] = set()
    for name, field in Settings.model_fields.items():
        known.add(f"NER_{name.upper()}")
        if isinstance(field.validation_alias, AliasChoices):
            known.update(str(choice).upper() for choice in field.validation_alias.choices)
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            known.update(f"NER_{name.upper()}__{sub.upper()}" for sub in nested.model_fields)
    unknown = []
    for key in sorted(k for k in environ if k.upper().startswith("NER_") and k.upper() not in known):
        close = difflib.get_close_matches(key.upper(), known, n=1)
        unknown.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return unknown


@lru_cache
def get_settings() -> Settings:
    """The process's settings (FastAPI ``Depends``; tests override it).

    Raises:
        SettingsError: an ``NER_*`` environment variable names no setting (a typo would otherwise be ignored), or
            a value is invalid; the message names each variable.
    """
    unknown = unknown_variables(os.environ)
    if unknown:
        raise SettingsError(
            "unknown nerloop setting(s): " + "; ".join(unknown) + ". See the README's settings table, or unset them."
        )
    try:
        return Settings()
    except ValidationError as exc:
        problems = [f"{_variable(e['loc'], os.environ)}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("invalid nerloop setting(s): " + "; ".join(problems)) from None


def _variable(loc: tuple[int | str, ...], environ: Mapping[str, str]) -> str:
    """The environment variable a validation error's location came from.

    ``NER_`` and the field path, or, for a field that also reads an older name (its alias choices), the name that
    ``environ`` sets.
    """
    name = "__".join(map(str, loc)).upper()
    if not name.startswith("NER_"):
        return f"NER_{name}"
    given = {key.upper() for key in environ}
    for field in Settings.model_fields.values():
        choices = field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else []
        names = [str(choice).upper() for choice in choices]
        if name in names:
            return next((choice for choice in names if choice in given), name)
    return name
