"""Faults an emulated module can be told to show, for the harness's fault matrix.

The harness arms them through the module's control channel (``EmulatedModem.control``: a
socket pair the module's own serving thread reads, one JSON object a line, each acknowledged
with ``ack N``), as the virtual card takes its faults on stdin (vuicc_faults.py). What a
module can do wrong with a command line:

- ``silent``: take it and never answer (the host's command times out);
- ``garbage``: run it, but the answer comes back as bytes no module sends as text (line
  noise, a wrong baud rate);
- ``reset``: the module restarts on it: no answer, its settings back to the defaults (E1,
  +CMEE=0), no registration or bearer, its SIM session reset; then its boot URCs;
- ``no-carrier``: answer ``NO CARRIER`` (V.250 6.3.4 result code 3) instead of running it;
- ``cme``: answer ``+CME ERROR: <code>`` (TS 27.007 9.2, in the +CMEE form set) instead.

A rule matches a command line by the AT command it starts with (``command``: "+CSIM",
"+CGATT", "E0"; none: any) and, for +CSIM, by the APDU's INS (``ins``); ``skip`` lets the
first N matching lines through; ``times`` is how many are hit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

ANSWER, SILENT, GARBAGE, RESET, NO_CARRIER, CME = "answer", "silent", "garbage", "reset", "no-carrier", "cme"
FAULTS = (SILENT, GARBAGE, RESET, NO_CARRIER, CME)

# What a module sends when it has restarted (Quectel, SIMCom: RDY; then the SIM and radio state)
BOOT_URCS = ("RDY", "+CFUN: 1", "+CPIN: READY")
# Noise: C0 controls and bytes that never occur in UTF-8 text, as a wrong baud rate shows them
NOISE = bytes([0xFF, 0x00, 0xFE, 0x1B, 0x80, 0xC1, 0xF8, 0x07])

_COMMAND = re.compile(r"(\+[A-Z0-9]+|[A-Z&][0-9]*)", re.ASCII | re.IGNORECASE)
_CSIM_APDU = re.compile(r"\+CSIM=\s*[0-9]+\s*,\s*\"([0-9A-F]{4})", re.ASCII | re.IGNORECASE)


class ModemFaultError(ValueError):
    """A control line the module does not understand (names the line's op, never data)."""


@dataclass
class _Rule:
    fault: str
    command: str | None   # upper case, "+CSIM"; None: any command line
    ins: int | None       # +CSIM only: the APDU's INS
    code: int             # cme: the +CME ERROR code
    skip: int
    times: int

    def matches(self, body: str) -> bool:
        if self.command is None:
            return True
        found = _COMMAND.match(body)
        if found is None or found.group(1).upper() != self.command:
            return False
        if self.ins is None:
            return True
        apdu = _CSIM_APDU.match(body)
        return apdu is not None and bytes.fromhex(apdu.group(1))[1] == self.ins


class ModemFaultPlan:
    """The faults armed on one module; consulted for every command line (its text after AT)."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []

    def apply(self, line: bytes) -> str:
        """One control line; returns the op done. Raises ModemFaultError."""
        try:
            msg: dict[str, Any] = json.loads(line)
            op = msg["op"]
        except (ValueError, KeyError, TypeError):
            raise ModemFaultError("control line is not a JSON object with an op") from None
        if op in FAULTS:
            try:
                command = msg.get("command")
                rule = _Rule(op, str(command).upper() if command else None, _byte_or_none(msg.get("ins")),
                             int(msg.get("code", 100)), int(msg.get("skip", 0)), int(msg.get("times", 1)))
            except (TypeError, ValueError, OverflowError):
                raise ModemFaultError(f"{op}: command, ins, code, skip or times not understood") from None
            self._rules.append(rule)
        elif op == "clear":
            self._rules.clear()
        else:
            raise ModemFaultError(f"unknown op {str(op)[:20]!r}")
        return str(op)

    def on_command(self, body: str) -> tuple[str, int]:
        """(ANSWER, 0) or (fault, code) for this command line."""
        for rule in self._rules:
            if not rule.matches(body):
                continue
            if rule.skip > 0:
                rule.skip -= 1
                continue
            rule.times -= 1
            if rule.times <= 0:
                self._rules.remove(rule)
            return rule.fault, rule.code
        return ANSWER, 0


def _byte_or_none(value: Any) -> int | None:
    if value is None:
        return None
    ins = int(value)
    if not 0 <= ins <= 0xFF:
        raise ModemFaultError("ins must be a byte")
    return ins


def control_line(op: str, **fields: Any) -> bytes:
    """What the harness writes on the module's control channel."""
    return json.dumps({"op": op, **fields}).encode() + b"\n"
