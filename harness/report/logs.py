"""Text artifacts of a run: the AT log, the TPM log and the message sequence.

They read the record's events in run order, each placed in its seed step (or in the set-up
before the first step, or the tear-down after the last). Every text goes through
``Record.scrub`` before it is written: the record already redacted secret fields and secret
device events; the scrub is the second line of defence.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from mcim_hil.record import REDACTED, Record

SETUP = "set-up"
TEARDOWN = "tear-down"
M2ME = "M2ME"

# the network's roles as the seeds name them (record meta "network" -> "addresses" keys)
ROLE_NAMES: dict[str, str] = {
    "vno": "VNO", "icf": "RO/ICF", "drf": "RO/DRF", "dpf": "RO/DPF", "sho": "SHO", "nsho": "NSHO",
    "pva": "PVA", "ivf": "IVF", "m2mes": "M2MES", "ccif": "CCIF",
}
ROLE_ORDER = ("M2ME", "VNO", "RO/ICF", "RO/DRF", "RO/DPF", "SHO", "NSHO", "PVA", "IVF", "M2MES", "CCIF")

_FIELD_CHARS = 48   # a field value longer than this is shortened in one-line views


@dataclass(frozen=True)
class Group:
    """The events of one seed step, or of the set-up / tear-down outside the steps."""

    key: str                        # "set-up", "tear-down", or the step number as text
    step: dict[str, Any] | None     # the step as in run.json (None for set-up / tear-down)
    events: tuple[dict[str, Any], ...]

    @property
    def label(self) -> str:
        """"step 13", or the key itself for set-up, tear-down and unnumbered steps ("after")."""
        return f"step {self.key}" if self.step is not None and self.key.isdigit() else self.key

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


def groups(run: dict[str, Any]) -> list[Group]:
    """The run's events in order: set-up, each step (events by sequence number), tear-down."""
    steps = run.get("steps", [])
    step_seqs = [e["seq"] for s in steps for e in s["events"]]
    first = min(step_seqs) if step_seqs else None
    outside = sorted(run.get("outside", []), key=lambda e: e["seq"])
    setup = [e for e in outside if first is None or e["seq"] < first]
    teardown = [e for e in outside if first is not None and e["seq"] >= first]
    found = [Group(SETUP, None, tuple(setup))]
    found += [Group(str(s["number"]), s, tuple(sorted(s["events"], key=lambda e: e["seq"]))) for s in steps]
    found.append(Group(TEARDOWN, None, tuple(teardown)))
    return found


# -- entities -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entities:
    """Bus address -> the entity's name in the seeds (M2ME for the device under test)."""

    by_address: dict[str, str]

    @classmethod
    def of(cls, run: dict[str, Any]) -> Entities:
        addresses = ((run.get("meta") or {}).get("network") or {}).get("addresses") or {}
        names: dict[str, list[str]] = {}
        for role, address in addresses.items():
            names.setdefault(address, []).append(ROLE_NAMES.get(role, role.upper()))
        return cls({address: "+".join(roles) for address, roles in names.items()})

    def name(self, address: str) -> str:
        if address in self.by_address:
            return self.by_address[address]
        if _is_m2me(address):
            return M2ME
        return address

    def ordered(self, addresses: Iterable[str]) -> list[tuple[str, list[str]]]:
        """(entity name, its addresses) in the seeds' usual left-to-right order, M2ME first."""
        seen: dict[str, list[str]] = {}
        for address in addresses:
            bucket = seen.setdefault(self.name(address), [])
            if address not in bucket:
                bucket.append(address)

        def rank(name: str) -> tuple[int, str]:
            first = name.split("+")[0]
            return (ROLE_ORDER.index(first) if first in ROLE_ORDER else len(ROLE_ORDER), name)

        return [(name, seen[name]) for name in sorted(seen, key=rank)]


def _is_m2me(address: str) -> bool:
    """The M2ME talks as "m2me:<IMSI>" over the air and from its IP address once attached."""
    if address.startswith("m2me:"):
        return True
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


# -- formatting -------------------------------------------------------------------------------

def utc(t: float, *, date: bool = True) -> str:
    """A wall-clock time in UTC with microseconds, as lab logs of other tools can be lined up."""
    moment = datetime.fromtimestamp(t, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if date else "%H:%M:%S.%f")


def short_value(value: Any, limit: int = _FIELD_CHARS) -> str:
    """A field value on one line: long hex shown as its start and byte count."""
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"), default=str)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if len(text) <= limit:
        return text
    if _is_hex(text):
        return f"{text[:16]}...({len(text) // 2} bytes)"
    return text[:limit - 3] + "..."


def key_fields(fields: dict[str, Any], limit: int = _FIELD_CHARS) -> str:
    """``name=value`` for each field that has a value (redacted ones say so)."""
    return " ".join(f"{name}={short_value(value, limit)}" for name, value in fields.items()
                    if value is not None and value != "")


def _is_hex(text: str) -> bool:
    return len(text) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in text)


ARROWS = {"request": "->", "oneway": "->", "reply": "-->", "error": "-x"}


def sequence_text(record: Record) -> str:
    """One line per message: time, step, sender -> recipient, kind, key fields."""
    run = record.to_dict()
    entities = Entities.of(run)
    start = run["started"]
    messages = [(g, e) for g in groups(run) for e in g.of_type("message")]
    used = [a for _, e in messages for a in (e["sender"], e["recipient"])]
    meta = run.get("meta") or {}
    lines = [
        f"# mcim-hil message sequence: {meta.get('procedure', '?')} (seed {meta.get('seed', '?')}), "
        f"bench {meta.get('bench_name', '?')}, run {run['run_id']}",
        f"# run started {utc(start)}; +s = seconds since then; -> request, --> reply, -x error",
    ]
    lines += [f"# {name:<7} = {', '.join(addresses)}" for name, addresses in entities.ordered(used)]
    rows = []
    for group, event in messages:
        arrow = ARROWS.get(event["direction"], "->")
        flow = f"{entities.name(event['sender'])} {arrow} {entities.name(event['recipient'])}"
        rows.append((f"{utc(event['started'], date=False)}", f"+{event['started'] - start:.6f}", group.label,
                     flow, event["kind"], key_fields(event["fields"])))
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(5)]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths)) + "  " + row[5])
    return record.scrub("\n".join(lines) + "\n")


# -- device logs ---------------------------------------------------------------------------------

def _ports(events: list[dict[str, Any]]) -> list[str]:
    return sorted({e["port"] for e in events})


def at_log_text(record: Record) -> str:
    """Every AT command line sent (>>) and every line received (<<), in time order.

    A secret command shows only its name (the driver already recorded it without parameters)
    and its final result.
    """
    run = record.to_dict()
    placed = [(g, e) for g in groups(run) for e in g.of_type("device") if e["device"] == "modem"]
    ports = _ports([e for _, e in placed])
    with_port = len(ports) > 1
    meta = run.get("meta") or {}
    lines = [f"# mcim-hil AT log: {meta.get('procedure', '?')}, bench {meta.get('bench_name', '?')}, "
             f"run {run['run_id']}",
             f"# serial port: {', '.join(ports) or 'none used'}; >> sent, << received; time UTC"]
    current = None
    for group, event in placed:
        if group.key != current:
            current = group.key
            title = f": {group.step['title']}" if group.step else ""
            lines.append(f"# -- {group.label}{title}")
        where = f"{event['port']}  " if with_port else ""
        sent_at, answered_at = event["started"], event["started"] + (event.get("duration_s") or 0.0)
        took = f"[{(event.get('duration_s') or 0.0) * 1000:.1f} ms]"
        if event.get("secret") or event["request"] == REDACTED:
            lines.append(f"{utc(sent_at)}  {where}>> {event['command']}")
            lines.append(f"{utc(answered_at)}  {where}<< {event['status']}  {took} (secret: answer not logged)")
            continue
        for sent in _text_lines(event["request"]):
            lines.append(f"{utc(sent_at)}  {where}>> {sent}")
        answers = _text_lines(event["response"])
        if not answers or answers[-1] != event["status"]:
            answers.append(f"[{event['status']}]")
        for n, received in enumerate(answers):
            tail = f"  {took}" if n == len(answers) - 1 else ""
            lines.append(f"{utc(answered_at)}  {where}<< {received}{tail}")
    return record.scrub("\n".join(lines) + "\n")


def _text_lines(hex_bytes: str) -> list[str]:
    """The non-empty lines of a recorded AT exchange (hex of the raw bytes)."""
    try:
        raw = bytes.fromhex(hex_bytes)
    except ValueError:      # already scrubbed: show what is left, never guess
        return [hex_bytes] if hex_bytes else []
    text = raw.decode("ascii", errors="backslashreplace")
    return [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]


def tpm_log_text(record: Record) -> str:
    """One line per TPM operation: time, step, duration, response code, the TPM2 command(s)."""
    run = record.to_dict()
    placed = [(g, e) for g in groups(run) for e in g.of_type("device") if e["device"] == "tpm"]
    ports = _ports([e for _, e in placed])
    meta = run.get("meta") or {}
    lines = [f"# mcim-hil TPM log: {meta.get('procedure', '?')}, bench {meta.get('bench_name', '?')}, "
             f"run {run['run_id']}",
             f"# TCTI: {', '.join(ports) or 'none used'}; time UTC; one line per driver operation "
             "(its TPM2 commands joined by +)"]
    rows = []
    for group, event in placed:
        where = [event["port"]] if len(ports) > 1 else []
        note = "  (secret: parameters not recorded)" if event.get("secret") else ""
        rows.append([utc(event["started"]), group.label, *where,
                     f"{(event.get('duration_s') or 0.0) * 1000:8.3f} ms", event["status"],
                     event["command"] + note])
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    return record.scrub("\n".join(lines) + "\n")


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
