"""Faults a virtual card can be told to show, for the harness's fault matrix.

The harness (``VirtualUicc`` in the parent process) arms them through the card's control
channel: one JSON object a line on the card process's stdin, each acknowledged on its stdout
with ``ack N``. What a card can do wrong:

- ``fail``: answer a chosen command (by INS) with an error status word instead of running it;
- ``silent``: take a chosen command and never answer it (the reader waits: the host times out);
- ``remove`` / ``insert``: leave vpcd, so pcscd reports the card removed, and come back.

``skip`` lets the first N matching commands through; ``times`` is how many are hit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ANSWER, FAIL, SILENT = "answer", "fail", "silent"


class FaultCommandError(ValueError):
    """A control line the card does not understand (names the line's op, never data)."""


@dataclass
class _Rule:
    kind: str            # FAIL or SILENT
    ins: int | None      # None: any command
    sw: int
    skip: int
    times: int

    def matches(self, apdu: bytes) -> bool:
        return self.ins is None or (len(apdu) >= 2 and apdu[1] == self.ins)


class FaultPlan:
    """The faults armed on one card; consulted for every command APDU."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self.removed = False

    def apply(self, line: bytes) -> str:
        """One control line; returns the op done. Raises FaultCommandError."""
        try:
            msg: dict[str, Any] = json.loads(line)
            op = msg["op"]
        except (ValueError, KeyError, TypeError):
            raise FaultCommandError("control line is not a JSON object with an op") from None
        if op in (FAIL, SILENT):
            self._rules.append(_Rule(op, _byte_or_none(msg.get("ins")),
                                     _number(msg, "sw", 0x6F00, 0x6000, 0x9FFF),  # ISO 7816-4 5.6: SW1 6X/9X
                                     _number(msg, "skip", 0, 0, 1 << 20), _number(msg, "times", 1, 1, 1 << 20)))
        elif op == "clear":
            self._rules.clear()
        elif op == "remove":
            self.removed = True
        elif op == "insert":
            self.removed = False
        else:
            raise FaultCommandError(f"unknown op {str(op)[:20]!r}")
        return op

    def on_command(self, apdu: bytes) -> tuple[str, int]:
        """(ANSWER, 0), (FAIL, sw) or (SILENT, 0) for this command APDU."""
        for rule in self._rules:
            if not rule.matches(apdu):
                continue
            if rule.skip > 0:
                rule.skip -= 1
                continue
            rule.times -= 1
            if rule.times <= 0:
                self._rules.remove(rule)
            return rule.kind, rule.sw
        return ANSWER, 0


def _byte_or_none(value: Any) -> int | None:
    if value is None:
        return None
    return _number({"ins": value}, "ins", 0, 0, 0xFF)


def _number(msg: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """A whole number field in [low, high]; anything else (text, 1e400, a float, a bool) is the
    control line's fault, never the card's crash."""
    value = msg.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FaultCommandError(f"{name} must be a whole number from {low} to {high}")
    return value


def control_line(op: str, **fields: Any) -> bytes:
    """What the harness writes on the card's control channel."""
    return json.dumps({"op": op, **fields}).encode() + b"\n"
