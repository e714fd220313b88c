"""The emulated module's AT command-line grammar (V.250 5.2-5.4) and result texts (TS 27.007 9.2).

Only parsing lives here; the commands themselves are in modem_commands.py and the
vendor profiles. Every parameter is checked as ASCII digits: str.isdigit() is also true
for '²' and '¹', which int() refuses, so bytes like those are incorrect parameters
(+CME ERROR: 50), never an exception inside the module.
"""

from __future__ import annotations

import re

__all__ = ["CmeFailure", "SyntaxFailure", "CME_TEXT", "params", "number", "string", "split_line"]

# TS 27.007 9.2.1 / 9.2.2: the texts this module uses with AT+CMEE=2.
CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    16: "incorrect password",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    50: "incorrect parameters",
    100: "unknown",
    103: "Illegal MS",
    106: "Illegal ME",
    107: "GPRS services not allowed",
    111: "PLMN not allowed",
    112: "Location area not allowed",
    113: "Roaming not allowed in this location area",
}
CME_INCORRECT_PARAMETERS = 50   # TS 27.007 9.2.1

_DIGITS = re.compile(r"[0-9]+", re.ASCII)
# V.250 5.3.1 basic commands: a letter (or & and a letter) with an optional number;
# S-parameters (5.3.2) read with '?' or set with '='.
_BASIC = re.compile(r"S[0-9]+(?:\?|=[0-9]*)|&[A-Z][0-9]*|[A-RT-Z][0-9]*", re.ASCII | re.IGNORECASE)


class CmeFailure(Exception):
    """Ends a command with +CME ERROR: <code> (or ERROR under +CMEE=0)."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(code)


class SyntaxFailure(Exception):
    """Ends a command with plain ERROR (V.250: unknown command, bad syntax)."""


def params(text: str) -> list[str]:
    """Comma-separated parameters; commas inside quotes belong to the string."""
    fields, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    fields.append("".join(current).strip())
    return fields


def is_number(text: str) -> bool:
    return _DIGITS.fullmatch(text.strip()) is not None


def number(text: str, low: int, high: int) -> int:
    text = text.strip()
    if not is_number(text) or not low <= int(text) <= high:
        raise CmeFailure(CME_INCORRECT_PARAMETERS)
    return int(text)


def string(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    if '"' in text:
        raise CmeFailure(CME_INCORRECT_PARAMETERS)
    return text


def split_line(body: str) -> list[str]:
    """The commands of one command line after "AT" (V.250 5.4): basic commands follow each
    other directly (``E0V1``), an extended command runs to the next ';' outside quotes
    (``+CGMI;+CGMM``). Raises SyntaxFailure on what is neither."""
    commands: list[str] = []
    i = 0
    while i < len(body):
        if body[i] in " ;":
            i += 1
            continue
        if body[i] == "+":
            end, quoted = i, False
            while end < len(body) and (quoted or body[end] != ";"):
                quoted ^= body[end] == '"'
                end += 1
            commands.append(body[i:end].strip())
            i = end + 1
            continue
        match = _BASIC.match(body, i)
        if match is None:
            raise SyntaxFailure()
        commands.append(match.group(0).upper())
        i = match.end()
    return commands
