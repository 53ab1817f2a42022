"""The ``nerloop`` command: parses arguments and calls one library function per command.

spaCy, torch and the converters are imported inside the commands that use them, so that ``--help`` and the light
commands start at once (``tests/unit/test_cli_imports.py``, ``bench/cli_start.py``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import ValidationError

from annotation_guide import GuideError, label_studio_config, load_guide
from ml.errors import MLError, ModelError

if TYPE_CHECKING:
    from annotation_guide import Guide
    from ml.converters import ConversionResult, Policy, ReadOptions, UnknownLabels
    from ml.training import Progress
    from ml.training.settings import Architecture

app = typer.Typer(
    help="nerloop: annotation-to-model active learning for NER.", no_args_is_help=True, pretty_exceptions_enable=False
)
guide_app = typer.Typer(help="Validate and render annotation guides.", no_args_is_help=True)

T = TypeVar("T")
GuideOpt = Annotated[Path, typer.Option("--guide", "-g", help="Annotation guide (YAML).")]


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; return the exit (code 2) for the caller to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


@contextmanager
def errors(*more: type[Exception]) -> Iterator[None]:
    """Turn domain errors, bad settings, unreadable files (and ``more``) into one line on stderr and exit 2."""
    caught: tuple[type[Exception], ...] = (MLError, GuideError, *more)
    try:
        yield
    except caught as exc:
        raise fail("; ".join([str(exc), *getattr(exc, "__notes__", [])])) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where, message = ".".join(map(str, first["loc"])), first["msg"].removeprefix("Value error, ")
        raise fail(f"{where}: {message}" if where else message) from None
    except OSError as exc:
        raise fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None


def _policy(value: str) -> Policy:
    from ml.converters import POLICIES

    if value not in POLICIES:
        raise fail(f"--policy must be one of {', '.join(POLICIES)}, not {value!r}")
    return value


def _guarded(func: Callable[[], T]) -> T:
    with errors():
        return func()


def _report_issues(result: ConversionResult, source: Path) -> None:
    if result.issues:
        typer.echo(f"{source}: {len(result.issues)} issue(s), spans changed or left out, records ignored:", err=True)
        for issue in result.issues[:20]:
            typer.echo(f"  {issue}", err=True)
        if len(result.issues) > 20:
            typer.echo(f"  ... and {len(result.issues) - 20} more (see --report)", err=True)


def _load(path: Path, guide: Guide, policy: Policy, *, options: ReadOptions, limit: int = 0) -> ConversionResult:
    import spacy

    from ml.converters import load_docs

    result = load_docs(path, spacy.blank(guide.language), labels=guide.labels, policy=policy, options=options)
    _report_issues(result, path)
    if limit:
        result.docs = result.docs[:limit]
    return result


@guide_app.command("validate")
def guide_validate(path: Path) -> None:
    """Check a guide and print its entity types."""
    guide = _guarded(lambda: load_guide(path))
    typer.echo(f"{path}: ok - project {guide.project!r}, types {', '.join(guide.labels)}, target F1 {guide.targets.f1}")


@guide_app.command("render")
def guide_render(path: Path) -> None:
    """Print the Label Studio labeling config of a guide."""
    typer.echo(label_studio_config(_guarded(lambda: load_guide(path))), nl=False)


PolicyOpt = Annotated[
    str,
    typer.Option(
        help="Where spans lie: strict refuses spans off token boundaries, with whitespace at their edges, "
        "overlapping or outside the text, and malformed records; expand / contract snap spans outward / inward "
        "to tokens, trim edge whitespace and leave out the rest, reporting each. Labels are --unknown-labels' job."
    ),
]
MapLabelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map-label", help="OLD=NEW: read the data's label OLD as the guide's label NEW (repeatable, e.g. PER=person)."
    ),
]
UnknownLabelsOpt = Annotated[
    str, typer.Option(help="Labels outside the guide after --map-label: refuse (stop, listing them) | drop (report).")
]
ColumnHelp = "CoNLL: the {what}'s column, counted from 1; negative counts from the end (-1: last). Default: {default}."
TokenColumnOpt = Annotated[int | None, typer.Option(help=ColumnHelp.format(what="token", default="the first"))]
TagColumnOpt = Annotated[
    int | None,
    typer.Option(
        help=ColumnHelp.format(what="tag", default="the last; a file of more than 2 columns needs one of these")
    ),
]


def _unknown(value: str) -> UnknownLabels:
    from ml.converters import UNKNOWN_LABELS

    if value not in UNKNOWN_LABELS:
        raise fail(f"--unknown-labels must be one of {', '.join(UNKNOWN_LABELS)}, not {value!r}")
    return "drop" if value == "drop" else "refuse"


def _read_options(
    g: Guide,
    *,
    map_label: list[str] | None,
    unknown_labels: str,
    columns: tuple[int | None, int | None],
) -> ReadOptions:
    """The reading options of the data commands (convert, train)."""
    from ml.converters import ReadOptions, parse_label_map

    names = g.label_studio
    return ReadOptions(
        # the guide's own Label Studio label values first; --map-label adds to them
        label_map={**g.label_names, **parse_label_map(map_label or [], labels=g.labels)},
        unknown_labels=_unknown(unknown_labels),
        token_column=columns[0],
        tag_column=columns[1],
        # A guide that names its Labels control reads only that control's results; one that does not, any.
        from_name=names.from_name if "label_studio" in g.model_fields_set else None,
        text_field=names.text_field,
    )


def convert(
    source: Annotated[Path, typer.Argument(help="Input: .conll/.txt (BIO), .json (Label Studio), .jsonl, .spacy")],
    target: Annotated[Path, typer.Argument(help="Output; its suffix picks the format")],
    guide: GuideOpt,
    policy: PolicyOpt = "strict",
    report: Annotated[Path | None, typer.Option(help="Write every issue as JSON lines here.")] = None,
    map_label: MapLabelOpt = None,
    unknown_labels: UnknownLabelsOpt = "refuse",
    token_column: TokenColumnOpt = None,
    tag_column: TagColumnOpt = None,
) -> None:
    """Convert annotated data between formats, reporting every span that does not fit."""
    import spacy

    from ml.converters import load_docs, write_docs

    with errors():
        g = load_guide(guide)
        options = _read_options(
            g, map_label=map_label, unknown_labels=unknown_labels, columns=(token_column, tag_column)
        )
        result = load_docs(source, spacy.blank(g.language), labels=g.labels, policy=_policy(policy), options=options)
        _report_issues(result, source)
        write_docs(result.docs, target)
    if report is not None:
        report.write_text("".join(json.dumps(vars(i)) + "\n" for i in result.issues), encoding="utf-8")
    typer.echo(f"wrote {len(result.docs)} docs to {target} ({len(result.issues)} issue(s))")


def _print_progress(progress: Progress) -> None:
    eta = f", ETA {progress.eta_s:.0f}s" if progress.eta_s is not None else ""
    dev = f", dev F1 {progress.dev_f1:.3f}" if progress.dev_f1 is not None else ""
    typer.echo(f"[{progress.stage}] {progress.fraction:6.1%} step {progress.step}{dev}{eta}", err=True)


def train_command(
    guide: GuideOpt,
    train_data: Annotated[Path, typer.Option("--train", help="Training data (any supported format).")],
    dev_data: Annotated[Path, typer.Option("--dev", help="Dev data: checkpoint selection and calibration.")],
    test_data: Annotated[
        Path | None, typer.Option("--test", help="Test data, touched by nothing else: the figures printed.")
    ] = None,
    output: Annotated[Path, typer.Option(help="Directory of model versions.")] = Path("models"),
    architecture: Annotated[str, typer.Option(help="cnn (spaCy) or transformer (MiniLM token classifier).")] = "cnn",
    limit: Annotated[int, typer.Option(help="Use only the first N training docs (0: all).")] = 0,
    max_steps: Annotated[int, typer.Option(help="CNN: most optimizer steps.")] = 6000,
    epochs: Annotated[int, typer.Option(help="Transformer: passes over the data.")] = 3,
    init_tok2vec: Annotated[str | None, typer.Option(help="CNN: start from this pipeline's tok2vec.")] = None,
    vectors: Annotated[str | None, typer.Option(help="CNN: static vectors from this pipeline.")] = None,
    width: Annotated[int | None, typer.Option(help="CNN: tok2vec width (default 96).")] = None,
    depth: Annotated[int | None, typer.Option(help="CNN: tok2vec CNN layers (default 4).")] = None,
    embed_rows: Annotated[
        str | None, typer.Option(help="CNN: hash rows for NORM,PREFIX,SUFFIX,SHAPE (default 10000,2500,5000,2500).")
    ] = None,
    transformer: Annotated[str | None, typer.Option(help="Transformer: model directory (MiniLM by default).")] = None,
    policy: PolicyOpt = "strict",
    seed: int = 0,
    map_label: MapLabelOpt = None,
    unknown_labels: UnknownLabelsOpt = "refuse",
    token_column: TokenColumnOpt = None,
    tag_column: TagColumnOpt = None,
) -> None:
    """Train a model version and print its scores per entity type with 95% intervals: on --test when given, else
    on --dev (optimistic: those documents chose the checkpoint and fitted the calibration). Files are read as
    `convert` reads them."""
    if architecture not in ("cnn", "transformer"):
        raise fail(f"--architecture must be cnn or transformer, not {architecture!r}")
    from ml.evaluation import format_report
    from ml.training import TrainSettings, train

    arch: Architecture = "cnn" if architecture == "cnn" else "transformer"
    with errors():
        g = load_guide(guide)
        settings = TrainSettings(
            architecture=arch,
            max_steps=max_steps,
            epochs=epochs,
            init_tok2vec_from=init_tok2vec,
            vectors=vectors,
            width=width,
            depth=depth,
            embed_rows=_rows(embed_rows),
            transformer=transformer,
            seed=seed,
        )
        options = _read_options(
            g, map_label=map_label, unknown_labels=unknown_labels, columns=(token_column, tag_column)
        )
        train_docs = _load(train_data, g, _policy(policy), options=options, limit=limit).docs
        dev_docs = _load(dev_data, g, _policy(policy), options=options).docs
        test_docs = None if test_data is None else _load(test_data, g, _policy(policy), options=options).docs
        typer.echo(f"training {arch} on {len(train_docs)} docs, selecting on {len(dev_docs)}", err=True)
        trained = train(
            train_docs,
            dev_docs,
            g,
            settings=settings,
            output_root=output,
            on_progress=_print_progress,
            test_docs=test_docs,
        )
    if trained.test_report is None:
        typer.echo("dev scores (optimistic: the dev docs chose the checkpoint; give --test for untouched figures)")
    else:
        typer.echo(f"test scores ({len(test_docs or [])} documents touched by nothing else)")
    typer.echo(format_report(trained.report))
    typer.echo(f"model: {trained.path}")


def _rows(value: str | None) -> tuple[int, int, int, int] | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise fail(f"--embed-rows takes four positive integers like 5000,1000,2500,2500, not {value!r}")
    return (int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]))


def evaluate_command(
    model: Annotated[Path, typer.Option(help="A model version directory.")],
    data: Annotated[Path, typer.Option(help="Gold data (any supported format).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    policy: PolicyOpt = "strict",
    map_label: MapLabelOpt = None,
    unknown_labels: UnknownLabelsOpt = "refuse",
    token_column: TokenColumnOpt = None,
    tag_column: TagColumnOpt = None,
) -> None:
    """Score a model version per entity type (exact and partial F1, calibration); the data is read as `convert`
    reads it, against the model's labels."""
    import spacy

    from ml.converters import ReadOptions, load_docs, parse_label_map
    from ml.evaluation import evaluate, format_report
    from ml.model_store import load_model, read_meta

    with errors():
        meta = read_meta(model)
        labels = list(meta.get("labels") or [])
        if not labels:
            raise ModelError(f"{model}: its meta.json lists no labels; it is not a complete nerloop model")
        target = float(meta.get("guide", {}).get("target_f1", 0.85))
        ner = load_model(model)
        options = ReadOptions(
            label_map=parse_label_map(map_label or [], labels=labels),
            unknown_labels=_unknown(unknown_labels),
            token_column=token_column,
            tag_column=tag_column,
        )
        result = load_docs(data, spacy.blank("en"), labels=labels, policy=_policy(policy), options=options)
        _report_issues(result, data)
        report = evaluate(ner, result.docs, labels=labels, target_f1=target)
    if as_json:
        typer.echo(json.dumps({"model": meta["version"], "data": str(data), **report.to_dict()}, indent=2))
    else:
        typer.echo(format_report(report))


def register(target: typer.Typer) -> None:
    """Add the ml commands (guide, convert, train, evaluate) to a Typer app."""
    target.add_typer(guide_app, name="guide")
    target.command("convert")(convert)
    target.command("train")(train_command)
    target.command("evaluate")(evaluate_command)


register(app)


def main() -> None:
    """Entry point that also turns an interrupt into a clean exit."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
