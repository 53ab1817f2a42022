"""The ``nerloop`` command: parses arguments and calls one library function per command.

spaCy, torch and the converters are imported inside the commands that use them, so that ``--help`` and the light
commands start at once (``tests/unit/test_cli_imports.py``, ``bench/cli_start.py``).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import ValidationError

from annotation_guide import GuideError, label_studio_config, load_guide
from ml.costs import CostSettings
from ml.errors import MLError, ModelError

if TYPE_CHECKING:
    from annotation_guide import Guide
    from ml.compare import CompareOptions, LLMConnector
    from ml.converters import ConversionResult, Policy, ReadOptions, UnknownLabels
    from ml.training import Progress

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


def raise_interrupt(signum: int, frame: object) -> None:
    """A signal handler that raises ``KeyboardInterrupt``: SIGTERM then unwinds as Ctrl-C does."""
    del signum, frame
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises ``KeyboardInterrupt``, so ``finally`` blocks and context managers run.

    Python's default SIGTERM ends the process at once: a child process it started (``nerloop compare --gguf``'s
    llama.cpp server, 4.7 GB with the 1.5B model) would be left running. Only the main thread can set a handler;
    elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    architecture: Annotated[
        str,
        typer.Option(
            help="cnn (spaCy CNN), spacy-transformer (MiniLM + spaCy NER), hf-transformer (MiniLM token "
            "classifier), or transformer (the default transformer, ml.training.settings.DEFAULT_TRANSFORMER)."
        ),
    ] = "cnn",
    limit: Annotated[int, typer.Option(help="Use only the first N training docs (0: all).")] = 0,
    max_steps: Annotated[int, typer.Option(help="Most optimizer steps (the CNN's budget).")] = 6000,
    min_steps: Annotated[int, typer.Option(help="Fewest optimizer steps, however small the data.")] = 300,
    epochs: Annotated[float, typer.Option(help="Transformers: passes over the data that set the steps.")] = 3.0,
    learn_rate: Annotated[float | None, typer.Option(help="Peak learning rate (default: the architecture's).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Documents per step (default: CNN spaCy's 100-1000 words, transformers 16).")
    ] = None,
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
    """Train a model version and print its scores per entity type with 95% intervals.

    On --test when given, else on --dev (optimistic: those documents chose the checkpoint and fitted the calibration).
    Files are read as `convert` reads them.
    """
    from ml.evaluation import format_report
    from ml.training import TrainSettings, train
    from ml.training.settings import ARCHITECTURES

    if architecture not in ARCHITECTURES:
        raise fail(f"--architecture must be one of {', '.join(ARCHITECTURES)}, not {architecture!r}")
    with errors():
        g = load_guide(guide)
        settings = TrainSettings.model_validate(
            {
                "architecture": architecture,
                "max_steps": max_steps,
                "min_steps": min_steps,
                "epochs": epochs,
                "learn_rate": learn_rate,
                "batch_size": batch_size,
                "init_tok2vec_from": init_tok2vec,
                "vectors": vectors,
                "width": width,
                "depth": depth,
                "embed_rows": _rows(embed_rows),
                "transformer": transformer,
                "seed": seed,
            }
        )
        options = _read_options(
            g, map_label=map_label, unknown_labels=unknown_labels, columns=(token_column, tag_column)
        )
        train_docs = _load(train_data, g, _policy(policy), options=options, limit=limit).docs
        dev_docs = _load(dev_data, g, _policy(policy), options=options).docs
        test_docs = None if test_data is None else _load(test_data, g, _policy(policy), options=options).docs
        typer.echo(f"training {settings.concrete} on {len(train_docs)} docs, selecting on {len(dev_docs)}", err=True)
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
    for warning in trained.warnings:
        typer.echo(f"warning: {warning}", err=True)
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
    """Score a model version per entity type (exact and partial F1, calibration).

    The data is read as `convert` reads it, against the model's labels.
    """
    import spacy

    from ml.converters import ReadOptions, load_docs, parse_label_map
    from ml.evaluation import evaluate, format_report
    from ml.model_store import load_model, read_meta

    with errors():
        meta = read_meta(model)
        labels = list(meta.labels)
        if not labels:
            raise ModelError(f"{model}: its meta.json lists no labels; it is not a complete nerloop model")
        target = meta.guide.target_f1 if meta.guide is not None else 0.85
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
        typer.echo(json.dumps({"model": meta.version, "data": str(data), **report.to_dict()}, indent=2))
    else:
        typer.echo(format_report(report))


def _numbers(option: str, value: str, *, all_word: bool = False) -> list[int | None]:
    """``"50,100,all"`` -> ``[50, 100, None]``; a clear error for anything else."""
    out: list[int | None] = []
    for part in (p.strip() for p in value.split(",") if p.strip()):
        if all_word and part == "all":
            out.append(None)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise fail(f"{option} takes comma-separated whole numbers{' or all' if all_word else ''}, not {part!r}")
    if not out:
        raise fail(f"{option} is empty")
    return out


_COSTS = CostSettings()


def _compare_options(
    lists: tuple[str, str, str, str],
    *,
    costs: CostSettings,
    train: tuple[int, int],
    limit_llm: int,
    seed: int,
    progress: bool,
) -> CompareOptions:
    """The comparison's options from ``--shots``, ``--strategies``, ``--sizes`` and ``--architectures``, checked."""
    from ml.compare import CompareOptions
    from ml.training import TrainSettings

    shots, strategies, sizes, architectures = lists
    arch = [a.strip() for a in architectures.split(",") if a.strip()]
    strats = [s.strip() for s in strategies.split(",") if s.strip()]
    if not arch or not set(arch) <= {"cnn", "transformer"}:
        raise fail(f"--architectures takes cnn and/or transformer, not {architectures!r}")
    if not strats or not set(strats) <= {"random", "similar"}:
        raise fail(f"--strategies takes random and/or similar, not {strategies!r}")
    return CompareOptions(
        shots=tuple(k for k in _numbers("--shots", shots) if k is not None),
        strategies=tuple("random" if s == "random" else "similar" for s in strats),
        sizes=tuple(_numbers("--sizes", sizes, all_word=True)),
        architectures=tuple("cnn" if a == "cnn" else "transformer" for a in arch),
        train_settings=TrainSettings(max_steps=train[0], epochs=train[1], seed=seed),
        limit_llm=limit_llm,
        costs=costs,
        seed=seed,
        progress=progress,
    )


def _compare_command(llm: LLMConnector | None) -> Callable[..., None]:
    """The ``compare`` command; ``llm`` opens the endpoint (the backend's; None: only fine-tuned rows can run)."""

    def compare_command(
        guide: GuideOpt,
        train_data: Annotated[Path, typer.Option("--train", help="Training data: pool, dev split, demonstrations.")],
        test_data: Annotated[Path, typer.Option("--test", help="Test data, scored and touched by nothing else.")],
        out: Annotated[Path, typer.Option(help="Report folder; rerunning into it reuses answers and models.")],
        llm_url: Annotated[
            str | None, typer.Option(help="An OpenAI-compatible endpoint (http://host:port/v1).")
        ] = None,
        gguf: Annotated[Path | None, typer.Option(help="A GGUF file, served as `nerloop llm serve` does.")] = None,
        llm_model: Annotated[str, typer.Option(help="Model name sent to --llm-url.")] = "local",
        shots: Annotated[str, typer.Option(help="Demonstrations per prompt; 0 is zero-shot.")] = "0,5,10",
        strategies: Annotated[str, typer.Option(help="Demonstrations of the k-shot rows.")] = "random,similar",
        sizes: Annotated[str, typer.Option(help="Training docs of each fine-tuned point; all: the pool.")] = (
            "50,100,200,500,all"
        ),
        architectures: Annotated[str, typer.Option(help="Fine-tuned architectures.")] = "cnn,transformer",
        limit_llm: Annotated[
            int, typer.Option(min=0, help="Every row on N random test docs, seed 0 (0: all); fine-tuned also on all.")
        ] = 0,
        llm_concurrency: Annotated[
            int, typer.Option(min=0, help="LLM requests at once (0: the server's slots, 1 when it does not say).")
        ] = 0,
        llm_timeout: Annotated[float, typer.Option(min=1.0, help="Seconds per LLM request.")] = 120.0,
        max_tokens: Annotated[int, typer.Option(min=1, help="Most completion tokens per answer.")] = 512,
        max_steps: Annotated[int, typer.Option(min=1, help="CNN: most optimizer steps per size.")] = 2000,
        epochs: Annotated[int, typer.Option(min=1, help="Transformer: passes over the data.")] = 3,
        llm_input_per_1k: Annotated[float, typer.Option(min=0.0, help="$ per 1k prompt tokens.")] = (
            _COSTS.llm_input_per_1k
        ),
        llm_output_per_1k: Annotated[float, typer.Option(min=0.0, help="$ per 1k completion tokens.")] = (
            _COSTS.llm_output_per_1k
        ),
        llm_compute_per_hour: Annotated[
            float, typer.Option(min=0.0, help="$ an hour of a self-hosted LLM's machine (0: hosted API).")
        ] = _COSTS.llm_compute_per_hour,
        compute_per_hour: Annotated[
            float, typer.Option(min=0.0, help="$ an hour of the machine that trains and serves the fine-tuned model.")
        ] = _COSTS.compute_per_hour,
        seconds_per_label: Annotated[float, typer.Option(min=0.0, help="Annotator seconds per entity.")] = (
            _COSTS.seconds_per_label
        ),
        annotator_per_hour: Annotated[float, typer.Option(min=0.0, help="$ an hour of an annotator.")] = (
            _COSTS.annotator_per_hour
        ),
        seed: int = 0,
        progress: Annotated[bool, typer.Option(help="Progress bars on stderr.")] = True,
        policy: PolicyOpt = "strict",
        map_label: MapLabelOpt = None,
        unknown_labels: UnknownLabelsOpt = "refuse",
    ) -> None:
        """Prompting vs fine-tuning on your data.

        The LLM zero-shot and k-shot, each architecture on growing training sizes, and the per-type router, all scored
        on the same test docs; writes report.md, report.html, report.json and each row's predictions under --out, with
        costs, break-even volume and, per type, the labels at which fine-tuning overtakes the LLM. Rerunning reuses the
        cached answers and the trained sizes.
        """
        from ml.compare import compare
        from ml.compare_report import write_report

        if (llm_url or gguf) and llm is None:
            raise fail("this command has no LLM client: run `nerloop compare` (python -m ml compares fine-tuning only)")
        costs = (llm_input_per_1k, llm_output_per_1k, llm_compute_per_hour, compute_per_hour, seconds_per_label)
        opts = _compare_options(
            (shots, strategies, sizes, architectures),
            costs=CostSettings(*costs, annotator_per_hour=annotator_per_hour),
            train=(max_steps, epochs),
            limit_llm=limit_llm,
            seed=seed,
            progress=progress,
        )
        with errors():
            g = load_guide(guide)
            options = _read_options(g, map_label=map_label, unknown_labels=unknown_labels, columns=(None, None))
            train_docs = _load(train_data, g, _policy(policy), options=options).docs
            test_docs = _load(test_data, g, _policy(policy), options=options).docs
            inputs = {"guide": str(guide), "train": str(train_data), "test": str(test_data)}
            if llm is None or (llm_url is None and gguf is None):
                result = compare(train_docs, test_docs, g, annotate=None, options=opts, work_dir=out)
            else:  # a SIGTERM stops the LLM server this command started
                llm_open = llm(url=llm_url, gguf=gguf, model=llm_model, timeout_s=llm_timeout, max_tokens=max_tokens)
                with sigterm_as_interrupt(), llm_open as end:
                    concurrency = llm_concurrency or end.slots
                    typer.echo(f"LLM {end.name}: {concurrency} request(s) at once", err=True)
                    opts = dataclasses.replace(opts, concurrency=concurrency, llm_name=end.name)
                    result = compare(train_docs, test_docs, g, annotate=end.annotate, options=opts, work_dir=out)
            data = write_report(result, out, inputs=inputs)
        for row in data["rows"]:
            typer.echo(
                f"{row['name']:<40} exact micro F1 {row['micro_f1']:.3f}  ${row['cost_per_1k_docs']:.4f}/1k docs"
            )
        typer.echo(f"report: {out / 'report.md'}, {out / 'report.html'}, {out / 'report.json'}")

    return compare_command


def register(target: typer.Typer, *, llm: LLMConnector | None = None) -> None:
    """Add the ml commands (guide, convert, train, evaluate, compare) to a Typer app.

    ``llm`` opens the LLM of ``compare`` (the backend passes its client, which ml may not import).
    """
    target.add_typer(guide_app, name="guide")
    target.command("convert")(convert)
    target.command("train")(train_command)
    target.command("evaluate")(evaluate_command)
    target.command("compare")(_compare_command(llm))


register(app)


def main() -> None:
    """Entry point that also turns an interrupt into a clean exit."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
