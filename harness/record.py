"""The run record: THE single place where traces are written and secrets are redacted.

Procedures open steps (seed number, title, entities), the network bus adds every message,
the drivers' :class:`~mcim_hil.drivers.hook.CommandHook` adds every device command. A step
holds what happened while it was open; what happens outside any step goes to ``outside``.

Two lines of defence keep secrets out:
1. at recording time: a message's secret fields are already ``"<redacted>"`` (see
   ``Message.to_record``), a device event flagged ``secret`` keeps no request/response bytes
   (a UICC one keeps only its APDU header, lengths and status word, so a trace can show it);
2. at writing time: every value registered with :meth:`Record.secret_values` (and every
   top-level secret field of a recorded message) is scrubbed from every string written
   (values and keys; numbers stay numbers, so the JSON stays valid), as raw text and as
   hex in upper and lower case.

Session keys (RES, CK, IK, Kc of a card's AUTHENTICATE answer, TS 31.102 7.1.2.1) are secrets
too: the answer keeps only its outline and its values are registered for the scrub, unless the
record was made with ``reveal_session_keys`` (``mcim-hil run --reveal-session-keys``, for an
engineer who must decrypt air traces); then they show and ``meta["session_keys"]`` says so.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

from mcim_hil.drivers.hook import CommandEvent

REDACTED = "<redacted>"
RUN_FILE = "run.json"
_MIN_SECRET_CHARS = 4  # shorter strings would scrub unrelated text (a PIN is already 4)

REVEALED = "revealed"  # meta["session_keys"] of a record made with reveal_session_keys
SNIFFED = "sniffed"  # event type: an exchange seen on the card interface (GSMTAP), not sent by the harness

# What a sniffed exchange may show (the harness's own commands are flagged by its drivers; a
# tracer's are not, so the record judges them by what they are):
_PIN_INS = frozenset({0x20, 0x24, 0x26, 0x28, 0x2C})  # TS 102 221 11.1.9-13: data is a PIN or key
_AUTHENTICATE_INS = frozenset({0x88, 0x89})  # TS 31.102 7.1.2: RAND/AUTN may show; RES, CK, IK, Kc are session secrets
_GET_RESPONSE = 0xC0                         # TS 102 221 10.1.2: carries the previous command's answer (T=0)
_FILE_DATA_INS = frozenset({0xB0, 0xB2, 0xD6, 0xDC})  # READ/UPDATE BINARY/RECORD: the selected file's content
_SELECT = 0xA4

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"


class RecordedMessage(Protocol):
    """What the record needs from a network message (see mcim_hil.network.messages)."""

    sender: str
    recipient: str

    @property
    def kind(self) -> str: ...

    def to_record(self) -> dict[str, Any]: ...

    def secret_values(self) -> list[bytes | str]: ...

    # optional: ``session_key_values() -> dict[str, bytes]``, the fields that are session keys


class StepSkipped(Exception):
    """Raise inside ``with record.step(...)`` to end the step as skipped (the exception is swallowed)."""


@dataclass
class Step:
    number: int | str
    title: str
    entities: list[str]
    started: float
    duration_s: float | None = None
    verdict: str | None = None
    error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # messages and device commands, in order
    detail: str | None = None  # what happened, in one line (the run's row text)

    def skip(self, reason: str) -> None:
        """Mark the step skipped without raising (for example a seed step a topology folds away)."""
        self.verdict = SKIPPED
        self.error = reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "entities": self.entities,
            "started": self.started,
            "duration_s": self.duration_s,
            "verdict": self.verdict,
            "error": self.error,
            "detail": self.detail,
            "events": self.events,
        }


class Record:
    """Collects steps, messages and device commands of one run; writes run.json."""

    def __init__(self, run_id: str | None = None, *, meta: dict[str, Any] | None = None,
                 reveal_session_keys: bool = False) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.started = time.time()
        self.meta: dict[str, Any] = dict(meta or {})
        self.reveal_session_keys = reveal_session_keys
        if reveal_session_keys:
            self.meta["session_keys"] = REVEALED
        self.steps: list[Step] = []
        self.outside: list[dict[str, Any]] = []  # events recorded while no step was open
        self._open: list[Step] = []
        self._secrets: set[str] = set()
        self._scrubber: re.Pattern[str] | None = None
        self._seq = 0
        self._lock = threading.RLock()
        self._sniff_state: dict[str, _SniffState] = {}   # per tracer: the selected file, a secret answer pending

    # -- secrets -----------------------------------------------------------------------
    def secret_values(self, *values: bytes | str) -> None:
        """Register secret values; the writer scrubs them anywhere, raw and as hex (upper/lower)."""
        with self._lock:
            for value in values:
                for text in _forms(value):
                    if len(text) >= _MIN_SECRET_CHARS and text not in self._secrets:
                        self._secrets.add(text)
                        self._scrubber = None

    def scrub(self, text: str) -> str:
        """Replace every registered secret in ``text`` by ``<redacted>``."""
        with self._lock:
            if not self._secrets:
                return text
            if self._scrubber is None:
                # longest first, so a secret containing another one goes whole
                alternatives = sorted(self._secrets, key=len, reverse=True)
                self._scrubber = re.compile("|".join(re.escape(a) for a in alternatives))
            return self._scrubber.sub(REDACTED, text)

    # -- steps -------------------------------------------------------------------------
    @contextmanager
    def step(self, number: int | str, title: str, entities: Sequence[str] = ()) -> Iterator[Step]:
        """Record one seed step: duration and verdict (passed, failed with the error, or skipped)."""
        step = Step(number=number, title=title, entities=list(entities), started=time.time())
        t0 = time.perf_counter()
        with self._lock:
            self.steps.append(step)
            self._open.append(step)
        try:
            yield step
        except StepSkipped as skipped:
            step.verdict = SKIPPED
            step.error = str(skipped) or None
        except BaseException as exc:
            step.verdict = FAILED
            step.error = f"{type(exc).__name__}: {exc}"
            raise
        else:
            if step.verdict is None:
                step.verdict = PASSED
        finally:
            step.duration_s = time.perf_counter() - t0
            with self._lock:
                self._open.remove(step)

    def skip_step(self, number: int | str, title: str, entities: Sequence[str], reason: str,
                  detail: str | None = None) -> None:
        """Record a step that was not run."""
        step = Step(number=number, title=title, entities=list(entities), started=time.time(),
                    duration_s=0.0, verdict=SKIPPED, error=reason, detail=detail)
        with self._lock:
            self.steps.append(step)

    @property
    def current_step(self) -> Step | None:
        with self._lock:
            return self._open[-1] if self._open else None

    # -- events ------------------------------------------------------------------------
    def message(self, msg: RecordedMessage, direction: str, started: float,
                duration: float | None) -> None:
        """Add one network message; ``direction`` is request, reply, error or oneway."""
        self.secret_values(*msg.secret_values())
        fields = msg.to_record()
        session_keys = getattr(msg, "session_key_values", None)
        for name, value in (session_keys() if callable(session_keys) else {}).items():
            if self.reveal_session_keys:
                fields[name] = value.hex()
            else:
                self.secret_values(value)
        entry = {
            "type": "message",
            "direction": direction,
            "kind": msg.kind,
            "sender": msg.sender,
            "recipient": msg.recipient,
            "started": started,
            "duration_s": duration,
            "fields": fields,
        }
        self._add(entry)

    def message_error(self, msg: RecordedMessage, error: BaseException, started: float,
                      duration: float) -> None:
        """The recipient of ``msg`` failed instead of replying."""
        entry = {
            "type": "message",
            "direction": "error",
            "kind": msg.kind,
            "sender": msg.recipient,
            "recipient": msg.sender,
            "started": started,
            "duration_s": duration,
            "fields": {"error": f"{type(error).__name__}: {error}"},
        }
        self._add(entry)

    def device(self, event: CommandEvent) -> None:
        """Add one device command (subscribe this to the drivers' CommandHook)."""
        entry = {
            "type": "device",
            "device": event.device,
            "port": event.port,
            "command": event.command,
            "request": REDACTED if event.secret else event.request.hex(),
            "response": REDACTED if event.secret else event.response.hex(),
            "status": event.status,
            "started": event.started,
            "duration_s": event.duration_s,
            "secret": event.secret,
        }
        authenticate = event.device == "uicc" and len(event.request) > 1 and event.request[1] in _AUTHENTICATE_INS
        if authenticate and not self.reveal_session_keys:
            self.secret_values(*session_keys(event.response[:-2]))
        if event.secret and event.device == "uicc":
            entry.update(apdu_outline(event.request, event.response))
        elif authenticate and self.reveal_session_keys:
            entry["session_keys"] = REVEALED
        elif authenticate:
            entry["response"] = REDACTED   # RAND/AUTN may show; the answer holds the session keys
            entry["secret"] = True
            entry.update(apdu_outline(event.request, event.response))
        self._add(entry)

    def sniffed(self, started: float, source: str, command: str, request: bytes, response: bytes) -> None:
        """Add one exchange seen on the card interface by a tracer (GSMTAP), marked sniffed.

        Redacted as the drivers flag the harness's own commands: a PIN command keeps only its
        outline; AUTHENTICATE keeps RAND/AUTN but not its answer (nor the GET RESPONSE that
        fetches it); reads and writes of a key file keep no data; and bytes holding a
        registered secret keep only the outline.
        """
        with self._lock:
            state = self._sniff_state.setdefault(source, _SniffState())
            answer = len(request) >= 5 and (request[1] in _AUTHENTICATE_INS or
                                            (request[1] == _GET_RESPONSE and state.answer_pending))
            if answer and not self.reveal_session_keys:
                self.secret_values(*session_keys(response[:-2]))
            hide_request, hide_response = state.judge(request, response, self.reveal_session_keys)
            if not (hide_request or hide_response) and \
                    any(self.scrub(part.hex()) != part.hex() for part in (request, response) if part):
                hide_request = hide_response = True
        secret = hide_request or hide_response
        entry: dict[str, Any] = {
            "type": SNIFFED,
            "kind": SNIFFED,          # never a message kind: a group leader's split keeps it where it came
            "device": "uicc",
            "source": source,
            "command": command,
            "request": REDACTED if hide_request else request.hex(),
            "response": REDACTED if hide_response else response.hex(),
            "status": response[-2:].hex().upper() if len(response) >= 2 else "",
            "started": started,
            "duration_s": 0.0,
            "secret": secret,
        }
        if secret:
            entry.update(apdu_outline(request, response))
        self._add(entry)

    def _add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            step = self._open[-1] if self._open else None
            entry["step"] = step.number if step is not None else None
            (step.events if step is not None else self.outside).append(entry)

    def messages(self) -> list[dict[str, Any]]:
        """All recorded messages in order (inside and outside steps)."""
        with self._lock:
            events = [e for s in self.steps for e in s.events] + list(self.outside)
        return sorted((e for e in events if e["type"] == "message"), key=lambda e: e["seq"])

    # -- output ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "run_id": self.run_id,
                "started": self.started,
                "meta": self.meta,
                "steps": [s.to_dict() for s in self.steps],
                "outside": list(self.outside),
            }

    def to_json(self) -> str:
        """The whole record as JSON, every registered secret scrubbed."""
        return json.dumps(self._scrubbed(self.to_dict()), indent=1)

    def _scrubbed(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub(str(k)): self._scrubbed(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self._scrubbed(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return self._scrubbed(_json_default(value))

    def write(self, directory: str | Path) -> Path:
        """Write ``run.json`` into ``directory`` (created if needed); return its path."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / RUN_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def _forms(value: bytes | str) -> list[str]:
    """The ways a secret may show up in the JSON text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if not raw:
            return []
        forms = [raw.hex(), raw.hex().upper()]
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return forms
        if text.isprintable():
            forms.append(text)
        return forms
    if isinstance(value, str):
        if not value:
            return []
        raw = value.encode("utf-8")  # a PIN typed as text travels as its bytes in an APDU
        return [value, raw.hex(), raw.hex().upper()]
    raise TypeError(f"a secret value must be bytes or str, not {type(value).__name__}")


def apdu_outline(request: bytes, response: bytes) -> dict[str, Any]:
    """What a secret APDU exchange may show: its header and lengths and SW, never its data.

    The header is CLA INS P1 P2 and P3 (Lc, or Le of a case-2 command; ISO/IEC 7816-3 12.1.1),
    three bytes longer for an extended Lc ('00' + 2 bytes, ISO/IEC 7816-4 5.1).
    """
    size = 5
    if len(request) > 7 and request[4] == 0:
        size = 7
    header = request[:size]
    return {
        "request_header": header.hex(),
        "request_length": len(request),
        "response_length": max(len(response) - 2, 0),  # data bytes, without SW1 SW2
        "sw": response[-2:].hex().upper() if len(response) >= 2 else None,
    }


def session_keys(answer: bytes) -> list[bytes]:
    """RES, CK, IK and Kc of an AUTHENTICATE answer (data without SW), for the scrub.

    TS 31.102 7.1.2.1: 3G context 'DB' L RES L CK L IK [L Kc]; GSM context L SRES L Kc.
    A sync failure ('DC' L AUTS) or anything else holds no session key.
    """
    fields: list[bytes] = []
    if answer[:1] == bytes([0xDB]):
        rest = answer[1:]
    elif len(answer) == 14 and answer[0] == 4 and answer[5] == 8:
        rest = answer
    else:
        return []
    while rest:
        size = rest[0]
        if size == 0 or len(rest) < 1 + size:
            break       # malformed: keep what was read, the outline hides the rest anyway
        fields.append(rest[1:1 + size])
        rest = rest[1 + size:]
    return fields


def _secret_fids() -> frozenset[bytes]:
    from mcim_hil.drivers.uicc_files import ALL_FILES
    return frozenset(bytes.fromhex(ef.fid) for ef in ALL_FILES if ef.secret)


class _SniffState:
    """What a tracer's stream has shown so far that decides how the next exchange is redacted."""

    def __init__(self) -> None:
        self.selected: bytes | None = None   # FID of the file selected last
        self.answer_pending = False          # the next GET RESPONSE fetches a secret answer

    def judge(self, request: bytes, response: bytes, reveal_session_keys: bool = False) -> tuple[bool, bool]:
        """(hide the command's data, hide the answer's data) for this exchange; updates the state."""
        if len(request) < 5:
            return True, True
        ins, p1 = request[1], request[2]
        in_key_file = self.selected in _secret_fids()
        hide_request = hide_response = False
        if ins in _PIN_INS:
            hide_request = hide_response = True
        elif ins in _AUTHENTICATE_INS:
            hide_response = not reveal_session_keys
        elif ins == _GET_RESPONSE:
            hide_response = self.answer_pending
        elif ins in _FILE_DATA_INS and not (ins in (0xB0, 0xD6) and p1 & 0x80):  # not by SFI
            hide_request = hide_response = in_key_file
        elif ins in _FILE_DATA_INS:
            hide_request = hide_response = True   # by SFI: which file is unknown here, so withheld
        if ins == _SELECT:
            data = request[5:5 + request[4]]
            self.selected = data[-2:] if p1 in (0x00, 0x08, 0x09) and len(data) >= 2 else None
        # T=0: '61xx'/'9Fxx' means the answer follows with GET RESPONSE (TS 102 221 7.3.1.1.4)
        more = len(response) >= 2 and response[-2] in (0x61, 0x9F)
        self.answer_pending = more and (hide_response or (ins == _GET_RESPONSE and self.answer_pending))
        return hide_request, hide_response


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return str(value)
