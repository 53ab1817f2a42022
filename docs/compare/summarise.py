"""Write ``docs/compare/SUMMARY.md`` from the finished reports ``docs/compare/<corpus>/report.json``.

Run by ``run.sh``. Per corpus: the zero-shot row beside GLiNER-L's published zero-shot F1, the best LLM row, the
fine-tuned learning curve, the types the LLM serves at least as well as fine-tuning, the labels fine-tuning needed to
pass it, and the break-even volume; corpora without a report are listed as pending.

    .venv/bin/python docs/compare/summarise.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPORA = ("ai", "politics", "science", "conll2003")
# GLiNER-L (0.3B encoder), zero-shot entity F1 on the CrossNER test sets as published (Zaratiana et al., 2023)
GLINER_L = {"ai": 57.2, "politics": 72.6, "science": 62.6}


def _f1(row: dict[str, Any], key: str = "") -> str:
    scores = row[key] if key else row
    interval = scores.get("micro_f1_interval")
    band = "" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    return f"{scores['micro_f1']:.3f}{band}"


def _corpus(name: str, data: dict[str, Any]) -> list[str]:
    rows = data["rows"]
    llm = [r for r in rows if r["kind"] == "llm"]
    tuned = [r for r in rows if r["kind"] == "fine-tuned"]
    best = max(llm, key=lambda r: r["micro_f1"]) if llm else None
    largest = max(tuned, key=lambda r: r["train_docs"] or 0) if tuned else None
    lines = [f"## {name}", ""]
    lines.append(
        f"LLM rows on a seeded random sample of {data['test_docs']} of the {data['all_test_docs']} test sentences "
        f"(`--limit-llm`; the indices are in report.json); fine-tuned rows on the "
        f"same {data['test_docs']} and (last column) on all {data['all_test_docs']}. Training pool "
        f"{data['train_pool_docs']} sentences, dev {data['dev_docs']}. Exact micro F1 with its 95% bootstrap interval."
    )
    lines += [
        "",
        "| row | labels | exact micro F1 (sample) | partial | $ / 1k docs | all test sentences |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        full = _f1(r, "full_test") if r.get("full_test") else "-"
        lines.append(
            f"| {r['name']} | {r['labels'] or '-'} | {_f1(r)} | {r['partial_micro_f1']:.3f} | "
            f"{r['cost_per_1k_docs']:.4f} | {full} |"
        )
    if best is not None and largest is not None:
        overtake = data["overtake_labels"].get(largest["architecture"], {})
        lines += ["", f"Per type, against the best LLM row ({best['name']}):", ""]
        lines += ["| type | gold spans | best LLM F1 | CNN F1 with every label | labels for the CNN to pass the LLM |"]
        lines += ["|---|---|---|---|---|"]
        for label, score in best["per_type"].items():
            at = overtake.get(label)
            passed = "-" if not score["support"] else ("never (in the sizes run)" if at is None else f"{at:,.0f}")
            lines.append(
                f"| {label} | {score['support']} | {score['f1']:.3f} | "
                f"{largest['per_type'][label]['f1']:.3f} | {passed} |"
            )
        serves = [
            label
            for label, score in best["per_type"].items()
            if score["support"] and score["f1"] >= largest["per_type"][label]["f1"]
        ]
        lines += [
            "",
            f"Types the LLM serves at least as well as the CNN with every label: {', '.join(serves) or 'none'}.",
        ]
        evens = [b for b in data["break_even"] if b["row"] == largest["name"]]
        if evens:
            volume = evens[0]["volume"]
            lines.append(
                f"Break-even of {largest['name']} against {best['name']}: "
                + ("none (lower F1 or never cheaper)" if volume is None else f"{volume:,.0f} documents")
                + f"; labelling priced at {data['costs']['seconds_per_label']} s per entity and "
                f"${data['costs']['annotator_per_hour']}/h, the LLM at ${data['costs']['llm_input_per_1k']} / "
                f"${data['costs']['llm_output_per_1k']} per 1k tokens."
            )
    lines.append(f"Wall time: {', '.join(f'{k} {v:,.0f} s' for k, v in data['wall_s'].items())}.")
    return [*lines, ""]


def main() -> None:
    """Read the finished reports and write SUMMARY.md beside them."""
    reports = {
        c: json.loads((HERE / c / "report.json").read_text()) for c in CORPORA if (HERE / c / "report.json").is_file()
    }
    out = ["# Prompting vs fine-tuning: the four-corpus study (issue #13)", ""]
    out.append(
        "Written by `docs/compare/summarise.py` from the reports `run.sh` copies here. LLM: "
        "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) through llama.cpp, on 2 shared CPU cores; "
        "fine-tuned: nerloop's spaCy CNN."
    )
    out += [
        "",
        "| corpus | zero-shot exact micro F1 (LLM sample) | GLiNER-L zero-shot (published) | best LLM row "
        "| CNN, every label (sample / all) |",
    ]
    out.append("|---|---|---|---|---|")
    for corpus in CORPORA:
        data = reports.get(corpus)
        anchor = f"{GLINER_L[corpus]:.1f}" if corpus in GLINER_L else "-"
        if data is None:
            out.append(f"| {corpus} | pending | {anchor} | pending | pending |")
            continue
        rows = data["rows"]
        zero = next((r for r in rows if r["name"] == "LLM zero-shot"), None)
        llm = [r for r in rows if r["kind"] == "llm"]
        best = max(llm, key=lambda r: r["micro_f1"]) if llm else None
        tuned = [r for r in rows if r["kind"] == "fine-tuned"]
        largest = max(tuned, key=lambda r: r["train_docs"] or 0) if tuned else None
        full = _f1(largest, "full_test") if largest and largest.get("full_test") else "-"
        best_text = best["name"] + " " + _f1(best) if best else "-"
        tuned_text = _f1(largest) + " / " + full if largest else "-"
        out.append(
            f"| {corpus} | {_f1(zero) if zero else '-'} ({data['test_docs']} sentences) | {anchor} | "
            f"{best_text} | {tuned_text} |"
        )
    out += [
        "",
        "GLiNER-L's figures are entity F1 x 100 on the whole test sets from label names alone; the zero-shot row "
        "here prompts with the guide (definitions, three examples per type from the training split, an edge case and "
        "a non-entity) on a random sample of 200 test sentences, so it is the cold-start level a team reaches with a "
        "written guide.",
        "",
    ]
    for corpus in CORPORA:
        if corpus in reports:
            out += _corpus(corpus, reports[corpus])
    out += _fine_tuned_only(reports)
    out += _status(reports)
    (HERE / "SUMMARY.md").write_text("\n".join(out), encoding="utf-8")


def _fine_tuned_only(reports: dict[str, Any]) -> list[str]:
    """The CNN learning curves of ``run.sh none`` (no LLM, the whole test set), for corpora with no full report."""
    out: list[str] = []
    for corpus in CORPORA:
        path = HERE / corpus / "fine-tuned" / "report.json"
        if corpus in reports or not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        anchor = f"; GLiNER-L zero-shot: {GLINER_L[corpus]:.1f}" if corpus in GLINER_L else ""
        out += [f"## {corpus}: the CNN's learning curve (no LLM yet)", ""]
        out.append(
            f"All {data['test_docs']} test sentences; training pool {data['train_pool_docs']} sentences, dev "
            f"{data['dev_docs']}{anchor}."
        )
        out += ["", "| training sentences | labels | exact micro F1 | partial | training s |", "|---|---|---|---|---|"]
        for r in data["rows"]:
            seconds = r["train_seconds"] or 0.0
            out.append(
                f"| {r['train_docs']} | {r['labels']} | {_f1(r)} | {r['partial_micro_f1']:.3f} | {seconds:,.0f} |"
            )
        out.append("")
    return out


def _status(reports: dict[str, Any]) -> list[str]:
    out = ["## Status", ""]
    for corpus in CORPORA:
        answers = len(list((HERE / corpus / "cache" / "llm").glob("*/*.json")))
        tuned = (HERE / corpus / "fine-tuned" / "report.json").is_file()
        state = "finished" if corpus in reports else "pending"
        out.append(
            f"- {corpus}: report {state}; {answers} LLM answers cached (200 per LLM row: 600 for `--shots 0,5`); "
            f"fine-tuned-only curve {'finished' if tuned else 'pending'}."
        )
    return [*out, ""]


if __name__ == "__main__":
    main()
