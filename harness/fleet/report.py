"""A fleet run's report: the table with and without the IVF side by side, fleet.json, and
fleet.html with the PVA's load over time for both runs (inline SVG, no script)."""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .population import FleetSpec
from .runner import ModeSummary

JSON_FILE = "fleet.json"
HTML_FILE = "fleet.html"
COLOURS = {True: "#1b7837", False: "#b2182b"}

ROWS: tuple[tuple[str, Any], ...] = (
    ("M2MEs", lambda s: f"{s.m2mes} ({s.real} real, {s.simulated} simulated)"),
    ("M2MEs changed", lambda s: s.changed),
    ("refused", lambda s: f"{s.refused} ({s.refused_tampered} of {s.tampered} tampered)"),
    ("IVF result not used (NOTE)", lambda s: s.fallbacks),
    ("updated before (validated in full)", lambda s: f"{s.updated} ({s.updated_full})"),
    ("PVA authenticity checks", lambda s: int(s.pva_change.get("authenticity_checks", 0))),
    ("PVA integrity validations", lambda s: int(s.pva_change.get("integrity_validations", 0))),
    ("PVA OCSP requests", lambda s: int(s.pva_change.get("ocsp_requests", 0))),
    ("PVA reference-values requests", lambda s: int(s.pva_change.get("reference_values_requests", 0))),
    ("PVA CPU s", lambda s: f"{s.pva_change.get('cpu_s', 0):.3f}"),
    ("simulated M2MEs/s", lambda s: f"{s.m2mes_per_s:.1f}"),
    ("latency p50 ms", lambda s: f"{s.latency_p50_ms:.2f}"),
    ("latency p99 ms", lambda s: f"{s.latency_p99_ms:.2f}"),
    ("peak memory MiB", lambda s: f"{s.peak_rss_mib:.0f}"),
)


def table(summaries: Sequence[ModeSummary]) -> str:
    """The change of SHO, one column per mode."""
    header = ["change of SHO (seed 004 c4)"] + [s.label for s in summaries]
    rows = [header] + [[name] + [str(get(s)) for s in summaries] for name, get in ROWS]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_json(spec: FleetSpec, summaries: Sequence[ModeSummary], meta: dict[str, Any]) -> dict[str, Any]:
    return {"fleet": dataclasses.asdict(spec), "meta": meta,
            "note": "simulated M2MEs are SIMULATED TREs (software keys, TPM 2.0 formats); they run the change "
                    "up to the new SHO's M2MSIMMobj (step 6); real benches run every step",
            "runs": [{"label": s.label, **dataclasses.asdict(s)} for s in summaries]}


def _svg(summaries: Sequence[ModeSummary], width: int = 720, height: int = 280) -> str:
    pad = 48
    points = [p for s in summaries for p in s.load]
    if not points:
        return "<p>no simulated M2MEs: no PVA load to plot</p>"
    t_max = max(t for t, _ in points) or 1.0
    y_max = max(c for _, c in points) or 1.0
    x = lambda t: pad + (width - 2 * pad) * t / t_max  # noqa: E731
    y = lambda c: height - pad - (height - 2 * pad) * c / y_max  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="PVA CPU seconds per second over the change">',
           f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
           f'<text x="{width / 2}" y="{height - 10}" text-anchor="middle" font-size="12">seconds into the change '
           f'(0 .. {t_max:.2f})</text>',
           f'<text x="12" y="{height / 2}" font-size="12" transform="rotate(-90 12 {height / 2})" '
           f'text-anchor="middle">PVA CPU s per s (max {y_max:.3f})</text>']
    for i, s in enumerate(summaries):
        colour = COLOURS[s.with_ivf]
        path = " ".join(f"{x(t):.1f},{y(c):.1f}" for t, c in s.load)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        out.append(f'<text x="{width - pad - 140}" y="{pad + 16 * i}" font-size="12" fill="{colour}">'
                   f'{html.escape(s.label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def write(out_dir: Path, spec: FleetSpec, summaries: Sequence[ModeSummary], meta: dict[str, Any]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = to_json(spec, summaries, meta)
    (out_dir / JSON_FILE).write_text(json.dumps(data, indent=1))
    reals = [b for s in summaries for b in s.real_benches]
    real_rows = "".join(
        f"<tr><td>{html.escape(b['label'])} {b['index']}, {'with' if b['with_ivf'] else 'without'} IVF</td>"
        f"<td>{html.escape(str(b['platform_id']))}</td>"
        f"<td>{'changed' if b['changed'] else 'FAILED at step ' + str(b['failed_step'])}</td>"
        f"<td>{html.escape(str(b['source']))}</td>"
        f"<td><a href=\"{html.escape(Path(b['artifacts']).name)}/report.html\">report</a></td></tr>"
        for b in reals)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mcim-hil fleet: {spec.devices} M2MEs</title>
<style>body{{font-family:sans-serif;margin:2em}} pre{{background:#f4f4f4;padding:1em}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.2em .5em}}</style></head><body>
<h1>Mass change of SHO: {spec.devices} M2MEs ({spec.real} real, {spec.simulated} SIMULATED)</h1>
<p>Seed 004: the M2MEs are provisioned by the old SHO (3rd change), then all change to the new SHO
(4th change). With the IVF the new SHO inquires the integrity result and the PVA checks authenticity
only; without it the PVA validates authenticity and integrity of every M2ME.
{spec.configurations} platform configuration(s), {spec.tampered} tampered M2ME(s), {spec.updated} updated
before the change (a new module firmware and PfC: the IVF's result superseded, integrity validated in full).
Simulated M2MEs are simulated TREs (software keys, TPM 2.0 formats) and stop at the new SHO's
M2MSIMMobj (step 6); real benches run every step.</p>
<pre>{html.escape(table(summaries))}</pre>
<h2>PVA load over the change</h2>
{_svg(summaries)}
<h2>Real benches</h2>
<table><tr><th>bench</th><th>platform</th><th>verdict</th><th>integrity from</th><th>artifacts</th></tr>
{real_rows or '<tr><td colspan="5">none</td></tr>'}</table>
<p>Run: {html.escape(json.dumps(meta))}</p>
</body></html>
"""
    (out_dir / HTML_FILE).write_text(page)
    return {"json": out_dir / JSON_FILE, "html": out_dir / HTML_FILE}
