"""report.html: one self-contained page a lab engineer opens after a run, online or not.

Header (procedure, seed, bench, verdict, timings), the steps table, an SVG sequence diagram of
the entities (one lifeline per entity, one arrow per message, grouped by seed step, device
commands as notes) and the device commands per step; links to the other artifacts by
relative path. No external URL, no script: inline CSS and SVG only. Every text shown passes
``Record.scrub`` then ``html.escape``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Iterable

from mcim_hil.record import FAILED, PASSED, REDACTED, REVEALED, SKIPPED, Record

from .logs import ARROWS, M2ME, Entities, Group, groups, key_fields, short_value, utc
from .timing import enclosing_steps, is_seed_step, time_in_steps

VERDICT_WORDS = {PASSED: "PASS", FAILED: "FAIL", SKIPPED: "SKIP"}
DEVICE_NAMES = {"uicc": "UICC", "tpm": "TPM", "modem": "AT"}

# the diagram's geometry, in SVG user units (px at 100 %)
_GUTTER = 112        # left column: the step labels
_COLUMN = 128        # distance between lifelines
_TOP = 14
_HEAD_H = 44
_FIRST_Y = _TOP + _HEAD_H + 16
_MSG_H = 26
_NOTE_H = 26
_BAND_PAD = 8


@dataclass(frozen=True)
class RunSummary:
    verdict: str            # PASSED, FAILED, NOT PASSED
    verdict_detail: str
    css: str                # pass, fail, skip
    counts: dict[str, int]


def summarise(run: dict[str, Any]) -> RunSummary:
    """The run's verdict as the CLI gives it: passed only when every step passed.

    The counts are of the seed's numbered steps, as the procedure's title counts them; a
    check run around them (step "after") is named beside the count, not added to it."""
    steps = run.get("steps", [])
    seed = [s for s in steps if is_seed_step(s)]
    extra = [str(s["number"]) for s in steps if not is_seed_step(s)]
    verdicts = [s.get("verdict") for s in seed]
    counts = {v: verdicts.count(v) for v in (PASSED, FAILED, SKIPPED)}
    failed = next((s for s in steps if s.get("verdict") == FAILED), None)
    also = f" and the {', '.join(extra)} check" if extra else ""
    if steps and all(s.get("verdict") == PASSED for s in steps):
        return RunSummary("PASSED", f"all {len(seed)} steps{also} passed", "pass", counts)
    if failed is not None:
        return RunSummary("FAILED", f"at step {failed['number']}: {failed.get('title', '')}", "fail", counts)
    if not steps:
        return RunSummary("NOT PASSED", "no step ran", "skip", counts)
    return RunSummary("NOT PASSED", f"{counts[SKIPPED]} of {len(seed)} steps skipped", "skip", counts)


class _Html:
    """Builds the page; ``t`` is the one way text gets in."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def t(self, value: Any) -> str:
        return html.escape(self.record.scrub("" if value is None else str(value)), quote=True)


def render_report(record: Record, links: Iterable[str] = ()) -> str:
    """The whole page as text; ``links`` are the artifact file names beside it."""
    run = record.to_dict()
    h = _Html(record)
    summary = summarise(run)
    placed = groups(run)
    meta = run.get("meta") or {}
    title = meta.get("title") or f"procedure {meta.get('procedure', '?')}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{h.t(summary.verdict)} · {h.t(meta.get('procedure', 'run'))} · mcim-hil</title>",
        f"<style>{_CSS}</style></head><body>",
        _header(h, run, summary, title, placed, list(links)),
        _steps_table(h, run),
        _diagram_section(h, run, placed),
        _devices_section(h, run, placed),
        f'<footer>mcim-hil run {h.t(run["run_id"])} · started {h.t(utc(run["started"]))} · '
        "keys, PINs and MCIM data are redacted in every artifact</footer>",
        "</body></html>",
    ]
    return record.scrub("\n".join(parts) + "\n")


# -- header ----------------------------------------------------------------------------------------

def _header(h: _Html, run: dict[str, Any], summary: RunSummary, title: str, placed: list[Group],
            links: list[str]) -> str:
    meta = run.get("meta") or {}
    events = [e for g in placed for e in g.events]
    devices = [e for e in events if e["type"] == "device"]
    count = {d: sum(1 for e in devices if e["device"] == d) for d in DEVICE_NAMES}
    messages = sum(1 for e in events if e["type"] == "message")
    steps_s = time_in_steps(run.get("steps", []))   # each interval once: nested steps are not added again
    facts = [
        ("procedure", meta.get("procedure")), ("seed", meta.get("seed")),
        ("bench", f"{meta.get('bench_name', '?')}" + (f" ({meta['bench']})" if meta.get("bench") else "")),
        ("air interface", meta.get("air")), ("PCID", meta.get("pcid")), ("platform", meta.get("platform_id")),
        ("started", utc(run["started"])[:19].replace("T", " ") + " UTC"),
        ("bench set-up", _seconds(meta.get("setup_s"))),
        ("procedure time", _seconds(meta.get("procedure_s"))),
        ("time in steps", _seconds(steps_s)),
        ("run id", run["run_id"]),
    ]
    fact_html = "".join(f"<div><dt>{h.t(k)}</dt><dd>{h.t(v)}</dd></div>" for k, v in facts if v not in (None, ""))
    units = _identities(meta.get("devices") or {})
    unit_html = "".join(f'<div><dt>{h.t(k)}</dt><dd class="mono">{h.t(v)}</dd></div>' for k, v in units)
    tallies = [
        (f"{summary.counts[PASSED]}", "passed", "pass"), (f"{summary.counts[FAILED]}", "failed", "fail"),
        (f"{summary.counts[SKIPPED]}", "skipped", "skip"), (str(messages), "messages", ""),
        (str(count["uicc"]), "UICC APDUs", ""), (str(count["modem"]), "AT commands", ""),
        (str(count["tpm"]), "TPM operations", ""),
    ]
    tally_html = "".join(f'<li class="{css}"><b>{h.t(n)}</b> {h.t(label)}</li>' for n, label, css in tallies)
    link_html = "".join(f'<a href="{h.t(name)}">{h.t(name)}</a>' for name in links)
    return (
        f'<header class="banner {summary.css}">'
        f'<div class="verdict-block"><div class="verdict">{h.t(summary.verdict)}</div>'
        f'<div class="verdict-detail">{h.t(summary.verdict_detail)}</div></div>'
        f'<div class="head-main"><h1>{h.t(title)}</h1>'
        f'<dl class="facts">{fact_html}</dl>'
        + (f'<dl class="facts units" aria-label="device identities">{unit_html}</dl>' if unit_html else "") +
        f'<ul class="tallies">{tally_html}</ul>'
        + (f'<nav class="artifacts"><span>artifacts</span>{link_html}</nav>' if links else "")
        + "</div></header>"
        + (_REVEALED_BANNER if meta.get("session_keys") == REVEALED else "")
    )


def _identities(found: dict[str, str]) -> list[tuple[str, str]]:
    """(label, value) of the units the run was on, as device_identity.py read them."""
    def joined(*keys: str) -> str:
        return " ".join(found[k] for k in keys if found.get(k))
    imsi = found.get("imsi_before", "")
    if found.get("imsi_after") and found.get("imsi_after") != imsi:
        imsi = f"{imsi} → {found['imsi_after']}" if imsi else found["imsi_after"]
    rows = [
        ("ICCID", found.get("iccid", "")), ("IMSI before → after", imsi), ("IMEI", found.get("imei", "")),
        ("module", joined("module_manufacturer", "module_model")),
        ("module firmware", found.get("module_firmware", "")),
        ("TPM", joined("tpm_manufacturer", "tpm_vendor")), ("TPM firmware", found.get("tpm_firmware", "")),
        ("EK certificate", "; ".join(f"{label} {found[key]}" for label, key in (
            ("subject", "ek_certificate_subject"), ("issuer", "ek_certificate_issuer"),
            ("serial", "ek_certificate_serial")) if found.get(key))),
    ]
    return [(label, value) for label, value in rows if value]


# --reveal-session-keys: whoever opens the report must see at once that it holds session keys
_REVEALED_BANNER = ('<div class="revealed" role="alert"><b>Session keys revealed.</b> This run was made with '
                    '--reveal-session-keys: RES, CK, IK and Kc of the card\'s AUTHENTICATE answers are in '
                    'run.json, apdu.pcap and the logs. Handle these artifacts as secrets.</div>')


def _seconds(value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _duration(value: float | None) -> str:
    return "" if value is None else f"{value * 1000:.1f} ms"


# -- steps table -----------------------------------------------------------------------------------

def _steps_table(h: _Html, run: dict[str, Any]) -> str:
    rows = []
    longest = max((s.get("duration_s") or 0.0 for s in run.get("steps", [])), default=0.0) or 1.0
    within = enclosing_steps(run.get("steps", []))
    for step in run.get("steps", []):
        verdict = step.get("verdict") or FAILED
        css = {PASSED: "pass", FAILED: "fail"}.get(verdict, "skip")
        detail = step.get("detail") or ""
        error = step.get("error")
        error_html = (f'<div class="error">{h.t(error)}</div>'
                      if error and not _says(detail, error) and verdict == FAILED else "")
        reason = (f'<div class="why">{h.t(error)}</div>'
                  if error and verdict == SKIPPED and not _says(detail, error) else "")
        events = step.get("events", [])
        messages = sum(1 for e in events if e["type"] == "message")
        devices = [e for e in events if e["type"] == "device"]
        device_note = ", ".join(f"{DEVICE_NAMES.get(d, d)} {n}" for d, n in _tally(devices).items())
        rows.append(
            f'<tr class="{css}" id="step-{h.t(step["number"])}">'
            f'<td class="num">{h.t(step["number"])}</td>'
            f'<td class="entities">{h.t(", ".join(step.get("entities", [])))}</td>'
            f'<td class="title">{h.t(step.get("title"))}</td>'
            f'<td class="detail">{h.t(detail)}{error_html}{reason}</td>'
            f'<td class="count">{messages or ""}</td>'
            f'<td class="devices">{h.t(device_note)}</td>'
            f'<td class="duration">{h.t(_duration(step.get("duration_s")))}'
            + (f'<div class="why">within step {h.t(within[str(step["number"])])}</div>'
               if str(step["number"]) in within else "") +
            f'<div class="time-bar"><i style="width:{100 * (step.get("duration_s") or 0.0) / longest:.1f}%">'
            "</i></div></td>"
            f'<td class="verdict-cell"><span class="pill {css}">{h.t(VERDICT_WORDS.get(verdict, verdict))}</span></td>'
            "</tr>")
    return (
        '<section><h2>Steps</h2><table class="steps"><thead><tr>'
        "<th>step</th><th>entities</th><th>title</th><th>what happened</th><th>msgs</th>"
        "<th>device commands</th><th>duration</th><th>verdict</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table></section>")


def _says(detail: str, error: str) -> bool:
    """Whether the row text already tells the error ("StepFailed: x" is told by "x")."""
    return error in detail or error.split(": ", 1)[-1] in detail


def _tally(devices: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in devices:
        out[e["device"]] = out.get(e["device"], 0) + 1
    return out


# -- sequence diagram ------------------------------------------------------------------------------

def _diagram_section(h: _Html, run: dict[str, Any], placed: list[Group]) -> str:
    svg, arrows = sequence_svg(h, run, placed)
    return ('<section><h2>Message sequence</h2>'
            f'<p class="hint">{arrows} messages between the entities, grouped by seed step; solid arrows are '
            "requests, dashed ones replies, red ones errors; the yellow notes count the M2ME's device "
            "commands. Hover an arrow for its fields.</p>"
            f'<div class="diagram">{svg}</div></section>')


def sequence_svg(h: _Html, run: dict[str, Any], placed: list[Group]) -> tuple[str, int]:
    """The SVG and its number of message arrows."""
    entities = Entities.of(run)
    messages = [e for g in placed for e in g.of_type("message")]
    used = [a for e in messages for a in (e["sender"], e["recipient"])]
    for g in placed:   # an entity a step names, even if it sent nothing, keeps its lifeline
        for name in (g.step or {}).get("entities", []):
            used.extend(a for a, n in entities.by_address.items() if n == name)
    lanes = entities.ordered(used) or [(M2ME, [])]
    if lanes[0][0] != M2ME and any(g.of_type("device") for g in placed):
        lanes.insert(0, (M2ME, []))
    x_of = {name: _GUTTER + _COLUMN * i + _COLUMN // 2 for i, (name, _) in enumerate(lanes)}
    width = _GUTTER + _COLUMN * len(lanes) + 8
    start = run["started"]

    body: list[str] = []
    bands: list[str] = []
    y = _FIRST_Y
    arrows = 0
    shaded = False
    for group in placed:
        msgs = group.of_type("message")
        devices = group.of_type("device")
        if group.step is None and not msgs and not devices:
            continue
        top = y
        y += _BAND_PAD
        for event in msgs:
            y += _MSG_H
            body.append(_arrow(h, event, x_of[entities.name(event["sender"])],
                               x_of[entities.name(event["recipient"])], y, start))
            arrows += 1
        if devices or not msgs:
            y += _NOTE_H
            body.append(_note(h, devices, x_of.get(M2ME, x_of[lanes[0][0]]), y, bool(msgs)))
        y += _BAND_PAD + 4
        bands.append(_band(h, group, top, y, width, shaded))
        shaded = not shaded
    height = y + 12

    lifelines = []
    for name, addresses in lanes:
        x = x_of[name]
        lifelines.append(f'<line class="lifeline" x1="{x}" y1="{_TOP + _HEAD_H}" x2="{x}" y2="{height - 6}"/>')
    pcid = (run.get("meta") or {}).get("pcid")
    heads = [_head(h, name, addresses, x_of[name], f"PCID {pcid}" if name == M2ME and pcid else None)
             for name, addresses in lanes]
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="message sequence diagram">'
           "<defs>"
           '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f2328"/></marker>'
           '<marker id="arrow-error" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#cf222e"/></marker>'
           "</defs>"
           + "".join(bands) + "".join(lifelines) + "".join(heads) + "".join(body) + "</svg>")
    return svg, arrows


def _head(h: _Html, name: str, addresses: list[str], x: int, caption: str | None = None) -> str:
    w = _COLUMN - 12
    css = "head m2me" if name == M2ME else "head"
    shown = caption or (addresses[0] if addresses else "")
    if len(addresses) > 1 and caption is None:
        shown = f"{shown} +{len(addresses) - 1}"
    shown = short_value(shown, 22)
    return (f'<g class="{css}"><title>{h.t(name)}: {h.t(", ".join(addresses) or "device under test")}</title>'
            f'<rect x="{x - w // 2}" y="{_TOP}" width="{w}" height="{_HEAD_H}" rx="6"/>'
            f'<text class="head-name" x="{x}" y="{_TOP + 19}"{_fit(name, 13, w)}>{h.t(name)}</text>'
            f'<text class="head-address" x="{x}" y="{_TOP + 35}"{_fit(shown, 9.5, w)}>{h.t(shown)}</text></g>')


def _fit(text: str, font_px: float, box_w: int) -> str:
    """Squeeze a label that may be wider than its box (SVG textLength), so it never overflows."""
    room = box_w - 10
    if len(text) * font_px * 0.62 <= room:   # 0.62 em: wider than the average glyph of a sans font
        return ""
    return f' textLength="{room}" lengthAdjust="spacingAndGlyphs"'


def _band(h: _Html, group: Group, top: int, bottom: int, width: int, shaded: bool) -> str:
    step = group.step
    verdict = (step or {}).get("verdict")
    css = {PASSED: "pass", FAILED: "fail", SKIPPED: "skip"}.get(verdict or "", "none")
    sub = VERDICT_WORDS.get(verdict or "", "outside the steps") if step is not None else "outside the steps"
    tip = f"{group.label}: {step.get('title', '')}" if step is not None else group.label
    label = f'<text class="band-label" x="14" y="{top + 20}">{h.t(group.label)}</text>'
    if step is not None:   # the label leads to the step's row in the table
        label = f'<a href="#step-{h.t(group.key)}">{label}</a>'
    return (f'<g class="band {css}"><title>{h.t(tip)}</title>'
            f'<rect class="{"shade" if shaded else "plain"}" x="0" y="{top}" width="{width}" height="{bottom - top}"/>'
            f'<rect class="bar" x="0" y="{top}" width="5" height="{bottom - top}"/>'
            f'{label}<text class="band-sub" x="14" y="{top + 35}">{h.t(sub)}</text></g>')


def _arrow(h: _Html, event: dict[str, Any], x1: int, x2: int, y: int, start: float) -> str:
    direction = event["direction"]
    css = f"msg {direction}"
    marker = "arrow-error" if direction == "error" else "arrow"
    label = event["kind"] + (" ✗" if direction == "error" else "")
    tip = (f"+{event['started'] - start:.6f} s  {event['sender']} {ARROWS.get(direction, '->')} "
           f"{event['recipient']}\n{event['kind']} ({direction})\n{key_fields(event['fields'], 120)}")
    attrs = f'data-seq="{event["seq"]}" data-kind="{h.t(event["kind"])}"'
    if x1 == x2:   # a message to itself: a small loop to the right
        shape = (f'<path d="M{x1},{y - 8} h28 v12 h-28" fill="none" marker-end="url(#{marker})"/>')
        text_x, anchor = x1 + 34, "start"
    else:
        shape = f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" marker-end="url(#{marker})"/>'
        text_x, anchor = (x1 + x2) // 2, "middle"
    return (f'<g class="{css}" {attrs}><title>{h.t(tip)}</title>{shape}'
            f'<text x="{text_x}" y="{y - 6}" text-anchor="{anchor}">{h.t(label)}</text></g>')


def _note(h: _Html, devices: list[dict[str, Any]], x: int, y: int, has_messages: bool) -> str:
    if devices:
        tally = _tally(devices)
        text = " · ".join(f"{DEVICE_NAMES.get(d, d)} {n}" for d, n in tally.items())
        secret = sum(1 for e in devices if e.get("secret"))
        text += " device commands" + (f" ({secret} secret)" if secret else "")
    else:
        text = "no messages, no device commands"
    w = max(120, int(len(text) * 6.3) + 16)
    return (f'<g class="note{"" if devices else " empty"}">'
            f'<rect x="{x - 14}" y="{y - 17}" width="{w}" height="20" rx="3"/>'
            f'<text x="{x - 6}" y="{y - 3}">{h.t(text)}</text></g>')


# -- device commands -------------------------------------------------------------------------------

def _devices_section(h: _Html, run: dict[str, Any], placed: list[Group]) -> str:
    start = run["started"]
    blocks = []
    for group in placed:
        devices = group.of_type("device")
        if not devices:
            continue
        tally = ", ".join(f"{DEVICE_NAMES.get(d, d)} {n}" for d, n in _tally(devices).items())
        title = f": {group.step.get('title', '')}" if group.step else ""
        rows = "".join(_device_row(h, e, start) for e in devices)
        blocks.append(
            f"<details><summary><b>{h.t(group.label)}</b>{h.t(title)} <span class=\"muted\">— {h.t(tally)}"
            "</span></summary><table class=\"devices\"><thead><tr><th>time +s</th><th>device</th><th>command</th>"
            "<th>status</th><th>duration</th><th>request</th><th>response</th></tr></thead><tbody>"
            f"{rows}</tbody></table></details>")
    return ('<section><h2>Device commands</h2><p class="hint">Every command to the TPM, the UICC and the '
            "module, by step. The APDUs are in apdu.pcap (open it in Wireshark), the AT lines in at.log, "
            "the TPM operations in tpm.log.</p>" + "".join(blocks) + "</section>")


def _device_row(h: _Html, event: dict[str, Any], start: float) -> str:
    secret = event.get("secret")
    if secret:
        request = response = "(secret: not recorded)"
        if event.get("request_header"):
            header, length = event["request_header"], event.get("request_length") or 0
            request = (f"{header}… ({length} bytes, data withheld)" if length > len(header) // 2
                       else f"{header} (no data)")
            withheld = event.get("response_length") or 0
            response = (f"({withheld} bytes withheld) " if withheld else "") + f"SW {event.get('sw') or '?'}"
    else:
        request, response = event["request"], event["response"]
        if event["device"] == "modem":
            request, response = _printable(request), _printable(response)
    css = ' class="secret"' if secret else ""
    return (f"<tr{css}><td class=\"num\">{event['started'] - start:.4f}</td>"
            f"<td>{h.t(DEVICE_NAMES.get(event['device'], event['device']))}</td>"
            f"<td class=\"mono\">{h.t(event['command'])}</td><td class=\"mono nowrap\">{h.t(event['status'])}</td>"
            f"<td class=\"num\">{h.t(_duration(event.get('duration_s')))}</td>"
            f"<td class=\"mono\">{h.t(short_value(request, 64))}</td>"
            f"<td class=\"mono\">{h.t(short_value(response, 64))}</td></tr>")


def _printable(hex_text: str) -> str:
    if hex_text == REDACTED:
        return hex_text
    try:
        text = bytes.fromhex(hex_text).decode("ascii", errors="replace")
    except ValueError:
        return hex_text
    return " ⏎ ".join(part.strip() for part in text.replace("\r", "\n").split("\n") if part.strip())


_CSS = """
:root{--pass:#1a7f37;--pass-bg:#dafbe1;--fail:#cf222e;--fail-bg:#ffebe9;--skip:#6e7781;--skip-bg:#eaeef2;
--ink:#1f2328;--muted:#656d76;--line:#d0d7de;--shade:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--ink);background:#fff}
section,footer{max-width:1560px;margin:0 auto;padding:0 24px}
h2{font-size:18px;margin:28px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
.banner{display:flex;gap:24px;align-items:stretch;padding:20px 24px;border-bottom:4px solid var(--skip);
background:var(--skip-bg)}
.banner.pass{border-color:var(--pass);background:linear-gradient(90deg,var(--pass-bg),#fff 70%)}
.banner.fail{border-color:var(--fail);background:linear-gradient(90deg,var(--fail-bg),#fff 70%)}
.verdict-block{min-width:190px;display:flex;flex-direction:column;justify-content:center;padding-right:20px;
border-right:1px solid var(--line)}
.verdict{font-size:34px;font-weight:800;letter-spacing:.04em}
.pass .verdict{color:var(--pass)}.fail .verdict{color:var(--fail)}.skip .verdict{color:var(--skip)}
.verdict-detail{color:var(--muted);font-size:13px}
.head-main{flex:1;min-width:0}
h1{font-size:22px;margin:0 0 10px}
.facts{display:flex;flex-wrap:wrap;gap:6px 22px;margin:0 0 10px}
.facts div{display:flex;flex-direction:column}
.facts dt{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
.facts dd{margin:0;font-variant-numeric:tabular-nums;font-weight:600}
.tallies{list-style:none;display:flex;flex-wrap:wrap;gap:8px;margin:0 0 10px;padding:0}
.tallies li{background:#fff;border:1px solid var(--line);border-radius:14px;padding:1px 10px;font-size:13px}
.tallies li.pass b{color:var(--pass)}.tallies li.fail b{color:var(--fail)}.tallies li.skip b{color:var(--skip)}
.artifacts{display:flex;gap:8px;flex-wrap:wrap;align-items:center;font-size:13px}
.artifacts span{color:var(--muted);margin-right:4px}
.artifacts a{color:var(--accent);text-decoration:none;border:1px solid #b6d6fb;background:#fff;border-radius:6px;
padding:2px 9px;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.artifacts a:hover{background:#ddf4ff}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);
border-bottom:2px solid var(--line);padding:6px 8px;white-space:nowrap}
td{padding:6px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
table.steps tbody tr:nth-child(even){background:#fafbfc}
table.steps tr.fail{background:var(--fail-bg)!important}
table.steps tr.skip td{color:var(--skip)}
td.num{text-align:right;font-weight:700;font-variant-numeric:tabular-nums;white-space:nowrap}
td.entities{white-space:nowrap;color:var(--muted);font-size:13px}
td.title{font-weight:600;min-width:220px}
td.detail{color:#31373d}
td.count,td.duration{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.devices{white-space:nowrap;font-size:13px;color:var(--muted)}
.time-bar{height:3px;background:#eaeef2;border-radius:2px;margin-top:4px;min-width:70px}
.time-bar i{display:block;height:3px;border-radius:2px;background:#54aeff}
.error{margin-top:4px;color:var(--fail);font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:12px}
.why{margin-top:2px;font-size:12px}
.pill{display:inline-block;min-width:46px;text-align:center;border-radius:10px;padding:1px 8px;font-weight:700;
font-size:12px;color:#fff}
.pill.pass{background:var(--pass)}.pill.fail{background:var(--fail)}.pill.skip{background:var(--skip)}
.hint{color:var(--muted);font-size:13px;margin:0 0 10px}
.diagram{border:1px solid var(--line);border-radius:8px;overflow-x:auto;background:#fff}
svg.sequence{display:block;max-width:100%;height:auto;font-family:system-ui,-apple-system,"Segoe UI",Roboto,
Arial,sans-serif}
.sequence .band .plain{fill:#fff}.sequence .band .shade{fill:var(--shade)}
.sequence .band .bar{fill:var(--skip)}.sequence .band.pass .bar{fill:var(--pass)}
.sequence .band.fail .bar{fill:var(--fail)}.sequence .band.fail .plain,.sequence .band.fail .shade{fill:var(--fail-bg)}
.sequence .band-label{font-size:13px;font-weight:700;fill:var(--ink)}
.sequence a .band-label:hover{fill:var(--accent);text-decoration:underline}
.sequence .band-sub{font-size:10.5px;fill:var(--muted)}
.sequence .band.pass .band-sub{fill:var(--pass)}.sequence .band.fail .band-sub{fill:var(--fail)}
.sequence .lifeline{stroke:#8c959f;stroke-width:1;stroke-dasharray:4 4}
.sequence .head rect{fill:#ddf4ff;stroke:#54aeff}
.sequence .head.m2me rect{fill:#fff8c5;stroke:#d4a72c}
.sequence .head-name{font-size:13px;font-weight:700;text-anchor:middle;fill:var(--ink)}
.sequence .head-address{font-size:9.5px;text-anchor:middle;fill:var(--muted)}
.sequence .msg line,.sequence .msg path{stroke:var(--ink);stroke-width:1.3}
.sequence .msg.reply line{stroke-dasharray:5 3}
.sequence .msg.error line,.sequence .msg.error path{stroke:var(--fail)}
.sequence .msg text{font-size:11px;fill:var(--ink);paint-order:stroke;stroke:#fff;stroke-width:3px;
stroke-linejoin:round}
.sequence .msg.error text{fill:var(--fail)}
.sequence .msg:hover line{stroke:var(--accent);stroke-width:2.2}
.sequence .note rect{fill:#fff8c5;stroke:#d4a72c}
.sequence .note.empty rect{fill:#fff;stroke:var(--line)}
.sequence .note text{font-size:10.5px;fill:#4d2d00}
.sequence .note.empty text{fill:var(--muted)}
details{border:1px solid var(--line);border-radius:6px;margin:6px 0;background:#fff}
summary{cursor:pointer;padding:6px 10px}
details[open] summary{border-bottom:1px solid var(--line);background:var(--shade)}
.muted{color:var(--muted);font-weight:400}
table.devices td{font-size:12px;padding:3px 8px}
table.devices td.num{font-weight:400}
table.devices tr.secret td{color:#8250df}
.revealed{padding:10px 24px;background:#fff1e5;border-bottom:3px solid #bc4c00;color:#953800}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
.nowrap{white-space:nowrap;word-break:normal}
footer{color:var(--muted);font-size:12px;margin:30px auto 24px;border-top:1px solid var(--line);padding-top:10px}
"""
