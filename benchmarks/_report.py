"""Markdown tables and the marker-delimited sections of RESULTS.md."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks._harness import CaseResults, Config, TableContext, Workload, table_stats

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def fmt(v: float) -> str:
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def run_line(cfg: Config, stamp: str) -> str:
    size = "--quick (sizes ÷10)" if cfg.quick else "full sizes"
    return (f"Run {stamp}: {size}, {cfg.runs} alternating rounds, each case in a fresh "
            f"process; --workers {cfg.workers} (mpgo workers and pool size where the "
            "workload does not fix them); median and min–max over the rounds.")


def render_workload(wl: Workload, results: dict[str, CaseResults], cfg: Config,
                    stamp: str) -> str:
    out = [f"### {wl.key} — {wl.title}", "", run_line(cfg, stamp), ""]
    for table in wl.tables:
        stats = table_stats(table, results)
        ctx = TableContext(table, {s.row.label: s.median for s in stats if s.median is not None})
        better = "higher" if table.higher_better else "lower"
        out.append(f"**{table.title}** ({table.unit}, {better} is better)")
        out.append("")
        head = ["case", f"median {table.unit}", "min–max", "runs"]
        head += [title for title, _ in table.refs]
        head += ["target (PERF.md)", "result"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for s in stats:
            row = [s.row.label]
            if s.median is None:
                row += [_cell(s.error or "ERROR"), "", ""]
                row += ["" for _ in table.refs]
            else:
                row += [fmt(s.median), f"{fmt(s.lo)}–{fmt(s.hi)}", str(s.n)]
                for _, labels in table.refs:
                    r = ctx.ratio(s.median, labels)
                    row.append("" if r is None else f"{r:.2f}×")
            tgt = s.row.target
            if tgt is None:
                row += ["", ""]
            else:
                ok = None if s.median is None else tgt.check(s.median, ctx)
                row += [_cell(tgt.text), {True: "PASS", False: "FAIL", None: "—"}[ok]]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    notes = list(wl.notes)
    notes.append("Ratio columns: how many times better than the reference row(s) "
                 "(> 1 = better; value ÷ ref for rates, ref ÷ value for times; "
                 "“best of” several rows takes the best median among them).")
    for res in results.values():
        key = f"`{res.case.key}`"
        if len(res.notes) == 1:
            notes.append(f"{key}: {res.notes[0]}")
        elif res.notes:
            notes.append(f"{key} (varied by round): " + " / ".join(res.notes[:5]))
        if res.errors and res.runs:
            notes.append(f"{key}: {len(res.errors)} round(s) failed, last: {res.error}")
    out += [f"- {_cell(n)}" for n in notes]
    return "\n".join(out).rstrip() + "\n"


def replace_section(text: str, key: str, body: str) -> str:
    """Replace ``<!-- BEGIN key -->…<!-- END key -->`` in ``text`` (append if absent)."""
    block = f"<!-- BEGIN {key} -->\n{body.rstrip()}\n<!-- END {key} -->"
    pat = re.compile(rf"<!-- BEGIN {re.escape(key)} -->.*?<!-- END {re.escape(key)} -->", re.S)
    if pat.search(text):
        return pat.sub(lambda m: block, text, count=1)
    return text.rstrip() + "\n\n" + block + "\n"


DEFAULT_HEADER = """# mpgo benchmark results

Reproduce with `python -m benchmarks --write` from the repository root
(`--quick` for a fast smoke run, `--only W1,W3` for some workloads).
Workloads, peers and targets: `shared/PERF.md`. The sections between
`<!-- BEGIN … -->` and `<!-- END … -->` markers are rewritten by `--write`;
text outside them is kept.
"""


def write_sections(sections: dict[str, str], path: Path = RESULTS) -> None:
    text = path.read_text() if path.exists() else DEFAULT_HEADER
    for key, body in sections.items():
        text = replace_section(text, key, body)
    path.write_text(text)
