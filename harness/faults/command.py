"""`mcim-hil faults`: the matrix on the emulated bench, with progress, a table step x fault ->
outcome, totals, faults.json and faults.html. Exit 1 when any case left a device unusable."""

from __future__ import annotations

import html
import json
import sys
import time
from pathlib import Path

from mcim_hil.bench import load_bench
from mcim_hil.procedures import PROCEDURES

from .matrix import RECOVERED, SKIPPED, UNUSABLE, CaseResult, MatrixResult, run_matrix
from .points import FAULTS, KINDS

_SHORT = {RECOVERED: "ok", UNUSABLE: "UNUSABLE", SKIPPED: "skip"}


def _cell(case: CaseResult) -> str:
    return _SHORT.get(case.outcome, f"fail@{case.failed_step}")


def parse_list(text: str | None, allowed: tuple[str, ...] | None, what: str) -> list[str] | None:
    if not text:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if allowed is not None and t not in allowed]
    if bad:
        raise ValueError(f"--{what}: unknown {', '.join(bad)} (choose from {', '.join(allowed or ())})")
    return items


def parse_steps(text: str | None) -> list[int] | None:
    """'3,8-12' -> [3, 8, 9, 10, 11, 12]."""
    if not text:
        return None
    steps: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            steps += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"--steps: {text!r} is not a list of step numbers such as 3,8-12") from None
    return steps


def table(result: MatrixResult) -> list[str]:
    columns = [f"{kind}:{fault}" for kind in KINDS for fault in FAULTS[kind]
               if any(c.point and c.point.kind == kind and c.point.fault == fault for c in result.cases)]
    steps = sorted({c.point.step for c in result.cases if c.point}, key=lambda n: (str(type(n)), n))
    cells = {(c.point.step, f"{c.point.kind}:{c.point.fault}"): _cell(c) for c in result.cases if c.point}
    width = max([len(c) for c in columns] + [8])
    lines = ["step " + " ".join(c.ljust(width) for c in columns)]
    for step in steps:
        lines.append(f"{str(step):>4} " + " ".join(cells.get((step, c), "-").ljust(width) for c in columns))
    return lines


def write_html(result: MatrixResult, path: Path) -> None:
    rows = "\n".join(
        f"<tr class='{'bad' if c.outcome == UNUSABLE else ''}'><td>{html.escape(str(c.point.step))}</td>"
        f"<td>{html.escape(c.point.kind)}</td><td>{html.escape(c.point.fault)}</td>"
        f"<td>{html.escape(c.point.target)}</td><td>{html.escape(c.summary)}</td>"
        f"<td>{html.escape(c.credential)}</td><td>{html.escape(c.detail)}</td>"
        f"<td>{c.setup_s:.2f}</td><td>{c.run_s:.2f}</td></tr>"
        for c in result.cases if c.point)
    totals = ", ".join(f"{k}: {v}" for k, v in result.totals().items())
    path.write_text(f"""<!doctype html><meta charset="utf-8"><title>mcim-hil faults: {html.escape(result.procedure)}</title>
<style>body{{font-family:sans-serif}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}
table{{border-collapse:collapse}}tr.bad{{background:#fdd}}</style>
<h1>Fault matrix: {html.escape(result.procedure)}</h1><p>{html.escape(totals)}; {len(result.cases)} cases in
{result.total_s:.1f} s</p><pre>{html.escape(chr(10).join(table(result)))}</pre>
<table><tr><th>step</th><th>kind</th><th>fault</th><th>at</th><th>outcome</th><th>credential after</th>
<th>detail</th><th>set-up s</th><th>run s</th></tr>
{rows}</table>
""", encoding="utf-8")


def faults_command(bench_path: str | None, procedure: str, steps: str | None, kinds: str | None,
                   out: str | None) -> int:
    chosen_kinds = parse_list(kinds, KINDS, "kinds") or list(KINDS)
    chosen_steps = parse_steps(steps)
    out_dir = Path(out or f"runs/faults-{procedure}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = load_bench(bench_path)
    tty = sys.stdout.isatty()

    def progress(i: int, n: int, case: CaseResult) -> None:
        bar = "#" * (20 * i // n)
        assert case.point is not None
        line = f"[{bar:<20}] {i}/{n} {case.point.name}: {case.summary}"
        print(("\r" + line[:110].ljust(110)) if tty else line, end="" if tty and i < n else "\n", flush=True)

    result = run_matrix(bench, PROCEDURES[procedure], steps=chosen_steps, kinds=chosen_kinds, on_case=progress)
    print("\n".join(table(result)))
    totals = result.totals()
    setups = [c.setup_s for c in result.cases] or [0.0]
    print(f"totals: {len(result.cases)} cases: " + ", ".join(f"{v} {k}" for k, v in totals.items())
          + f"; set-up per case {sum(setups) / len(setups):.2f} s (max {max(setups):.2f} s), "
          f"TPM manufactured once in {result.prepare_s:.2f} s; matrix {result.total_s:.1f} s")
    (out_dir / "faults.json").write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    write_html(result, out_dir / "faults.html")
    print(f"written: {out_dir / 'faults.json'}, {out_dir / 'faults.html'}")
    for reason in sorted({c.detail for c in result.cases if c.outcome == SKIPPED}):
        print(f"skipped: {sum(c.detail == reason for c in result.cases)} cases: {reason}")
    for case in result.unusable:
        assert case.point is not None
        print(f"UNUSABLE end state: {case.point.name}: {case.detail}", file=sys.stderr)
    return 1 if result.unusable else 0
