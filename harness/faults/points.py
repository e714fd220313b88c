"""Named fault points: one per seed step, fault kind and fault, aimed at what that step really
sends (the first request on the bus, the card command, the TPM command), as a clean probe run
recorded it. Arming wraps the step's action: armed before it, disarmed after."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from tpm2_pytss.constants import TPM2_CC

from mcim_hil.procedures.base import Procedure, SeedStep

KINDS = ("bus", "uicc", "tpm", "modem")
DEVICE_KINDS_WITH_MODEM = ("modem",)   # cases of these kinds run with the modem (module attach, AT+CSIM)

# bus faults: (name, bus fault, how many deliveries it hits). "unreachable" outlasts the
# sender's retries (RetryPolicy.attempts = 3): the step must fail cleanly.
BUS_FAULTS = (("lost", "lost", 1), ("duplicated", "duplicated", 1), ("delayed", "delayed", 1),
              ("reordered", "reordered", 1), ("unreachable", "lost", 3))
# pcscd-restart: pcscd killed and started again just before the step's card write reaches it;
# such a case runs in a child process with a pcscd of its own (pcscd_case.py)
UICC_FAULTS = ("error-sw", "silent", "removed", "pcscd-restart")
PCSCD_RESTART = "pcscd-restart"
TPM_FAULTS = ("power-before", "power-after")
# modem faults: (name, the emulated module's fault, +CME ERROR code). Each hits one command line;
# the driver sends a safe command again, so silence, noise and a restart can be recovered from.
MODEM_FAULTS = (("silence", "silent", 0), ("garbage", "garbage", 0), ("reset", "reset", 0),
                ("no-carrier", "no-carrier", 0), ("cme-error", "cme", 13))   # TS 27.007 9.2.1: SIM failure
FAULTS = {"bus": tuple(f[0] for f in BUS_FAULTS), "uicc": UICC_FAULTS, "tpm": TPM_FAULTS,
          "modem": tuple(f[0] for f in MODEM_FAULTS)}

ERROR_SW = 0x6F00          # TS 102 221 10.2.1.4: technical problem, no precise diagnosis
# commands that change what a TPM keeps: power lost at these is what hurts
_TPM_WRITES = ("TPM2_Import", "TPM2_EvictControl", "TPM2_NV_Write", "TPM2_NV_DefineSpace", "TPM2_Create",
               "TPM2_Load")
_CARD_WRITES = ("UPDATE BINARY", "UPDATE RECORD")


@dataclass(frozen=True)
class FaultPoint:
    step: int | str
    kind: str      # bus | uicc | tpm
    fault: str     # one of FAULTS[kind]
    target: str    # message kind, card command (INS hex), TPM command name
    code: int = 0  # INS or TPM command code
    armed_at: int | str | None = None   # the step whose action runs this one (a group's leader)
    at_command: str = ""                # modem: the AT command the fault hits ("+CSIM"); code: its APDU's INS

    @property
    def name(self) -> str:
        return f"step {self.step} {self.kind} {self.fault} @ {self.target}"


def _step_events(record: Any, number: int | str) -> list[dict]:
    return [e for st in record.steps if st.number == number for e in st.events]


def _first_message(events: list[dict]) -> str | None:
    """The step's first request; a step that only answers (a group's follower): its first reply."""
    messages = [e for e in events if e.get("type") == "message" and e.get("direction") in ("request", "reply")]
    first = next((e for e in messages if e["direction"] == "request"), messages[0] if messages else None)
    return first["kind"] if first else None


def _leaders(procedure: Procedure) -> dict[int | str, int | str]:
    """Step -> the step whose action runs it (a group's followers run in their leader's)."""
    out: dict[int | str, int | str] = {}
    steps = list(procedure.steps)
    for i, step in enumerate(steps):
        out.setdefault(step.number, step.number)
        for follower in steps[i + 1:i + 1 + step.leads]:
            out[follower.number] = step.number
    return out


def _card_command(events: list[dict]) -> tuple[str, int] | None:
    cards = [e for e in events if e.get("type") == "device" and e.get("device") == "uicc"
             and len(e.get("request") or "") >= 4 and e["request"] != "<redacted>"]
    if not cards:
        return None
    pick = next((e for e in cards if e.get("command", "").startswith(_CARD_WRITES)), cards[0])
    try:
        ins = bytes.fromhex(pick["request"][:4])[1]
    except ValueError:
        return None
    return f"{pick.get('command', '?')} (INS {ins:02X})", ins


def _tpm_command(events: list[dict]) -> tuple[str, int] | None:
    names = [n for e in events if e.get("type") == "device" and e.get("device") == "tpm"
             for n in str(e.get("command", "")).split("+") if n.startswith("TPM2_")]
    if not names:
        return None
    pick = next((n for n in names if n in _TPM_WRITES), names[0])
    code = getattr(TPM2_CC, pick[len("TPM2_"):], None)
    return (pick, int(code)) if code is not None else None


def _modem_command(events: list[dict]) -> tuple[str, str, int] | None:
    """The step's AT command to hit: the +CSIM carrying its card write (by the write's INS), else
    its first AT command. (target, command name, INS or 0)."""
    names = [str(e.get("command", "")) for e in events if e.get("type") == "device" and e.get("device") == "modem"]
    names = [n for n in names if n.upper().startswith("AT")]
    if not names:
        return None
    card = _card_command(events)
    if card is not None and any(n.upper().startswith("AT+CSIM") for n in names):
        return f"AT+CSIM carrying {card[0]}", "+CSIM", card[1]
    match = re.match(r"AT([+^$%#*!@&]?[A-Z0-9_]*)", names[0], re.IGNORECASE)
    name = (match.group(1) if match else "") or names[0][2:3]
    return f"AT{name}", name.upper(), 0


def points_for(procedure: Procedure, probe: Any, steps: Iterable[int | str] | None = None,
               kinds: Iterable[str] = KINDS) -> list[FaultPoint]:
    """Every fault that applies to each numbered step, aimed by the clean probe run's record."""
    wanted = [s.number for s in procedure.steps if isinstance(s.number, int)]
    if steps is not None:
        chosen = set(steps)
        wanted = [n for n in wanted if n in chosen]
    kinds = tuple(kinds)
    leaders = _leaders(procedure)
    points: list[FaultPoint] = []
    for number in wanted:
        events = _step_events(probe, number)
        at = leaders.get(number, number)
        if "bus" in kinds and (kind := _first_message(events)):
            points += [FaultPoint(number, "bus", name, kind, armed_at=at) for name in FAULTS["bus"]]
        # device faults are armed for the whole group: aimed at the leader's own commands only
        if at != number:
            continue
        if "uicc" in kinds and (card := _card_command(events)):
            points += [FaultPoint(number, "uicc", name, card[0], card[1], armed_at=at) for name in UICC_FAULTS]
        if "tpm" in kinds and (tpm := _tpm_command(events)):
            points += [FaultPoint(number, "tpm", name, tpm[0], tpm[1], armed_at=at) for name in TPM_FAULTS]
        if "modem" in kinds and (modem := _modem_command(events)):
            points += [FaultPoint(number, "modem", name, modem[0], modem[2], armed_at=at, at_command=modem[1])
                       for name in FAULTS["modem"]]
    return points


class Armed:
    """The devices' and the bus's fault controls for one case (what ``arm`` needs)."""

    def __init__(self, bus: Any, uicc_emulator: Any, tpm_emulator: Any, reconnect_card: Callable[[], None],
                 modem_emulator: Any = None, *, uicc: Any = None, pcscd: Any = None) -> None:
        """``uicc`` (the session's card driver) and ``pcscd`` (a PrivatePcscd): for pcscd-restart."""
        self.bus, self.card, self.tpm, self.modem = bus, uicc_emulator, tpm_emulator, modem_emulator
        self.reconnect_card = reconnect_card
        self.removed = False
        self.uicc, self.pcscd = uicc, pcscd
        self._transport: Any = None

    def arm(self, point: FaultPoint) -> None:
        if point.kind == "bus":
            _, fault, times = next(f for f in BUS_FAULTS if f[0] == point.fault)
            self.bus.inject(point.target, fault, times)
        elif point.kind == "uicc" and point.fault == "error-sw":
            self.card.fail_command(point.code, ERROR_SW)
        elif point.kind == "uicc" and point.fault == "silent":
            self.card.stay_silent(point.code)   # the host's transmit times out (uicc.timeout)
            self.removed = True                 # only a power cycle brings such a card back
        elif point.kind == "uicc" and point.fault == PCSCD_RESTART:
            if self.pcscd is None or self.uicc is None:
                raise ValueError(f"{point.name}: needs a private pcscd (a case in its own mount namespace)")
            self._transport = self.uicc.transport
            self.uicc.transport = _PcscdRestartBefore(self._transport, point.code, self.pcscd.restart)
        elif point.kind == "uicc" and point.fault == "removed":
            self.card.remove()     # pulled out as the step starts
            self.removed = True
        elif point.kind == "tpm":
            self.tpm.power_loss_at(point.code, "before" if point.fault == "power-before" else "after")
        elif point.kind == "modem":
            if self.modem is None:
                raise ValueError(f"{point.name}: this case's bench has no emulated modem")
            _, fault, code = next(f for f in MODEM_FAULTS if f[0] == point.fault)
            self.modem.arm_fault(fault, point.at_command or None, ins=point.code or None, code=code)

    def disarm(self, point: FaultPoint) -> None:
        if point.kind == "bus":
            self.bus.clear_faults()
        elif point.kind == "modem" and self.modem is not None:
            self.modem.clear_faults()
        elif point.kind == "uicc" and point.fault == PCSCD_RESTART:
            if self._transport is not None:
                self.uicc.transport, self._transport = self._transport, None
        elif point.kind == "uicc":
            self.card.clear_faults()
            if self.removed:       # the engineer puts it back; the host opens a new card session
                if point.fault == "silent":
                    self.card.remove()
                self.card.insert()
                self.removed = False
                self.reconnect_card()


class _PcscdRestartBefore:
    """The card driver's transport, with pcscd restarted once just before the first APDU with
    this INS goes out: that APDU then meets what a restart leaves (a dead context and handle)."""

    def __init__(self, inner: Any, ins: int, restart: Callable[[], None]) -> None:
        self._inner, self._ins, self._restart = inner, ins, restart
        self.fired = False

    def transmit(self, apdu: bytes, *, secret: bool = False) -> tuple[bytes, int]:
        if not self.fired and len(apdu) >= 2 and apdu[1] == self._ins:
            self.fired = True
            self._restart()
        return self._inner.transmit(apdu, secret=secret)

    def __getattr__(self, name: str) -> Any:   # name, atr, transaction(), reconnect() ...
        return getattr(self._inner, name)


def with_fault(procedure: Procedure, point: FaultPoint, armed: Armed) -> Procedure:
    """``procedure`` with ``point`` armed around its step's action."""
    def wrap(step: SeedStep) -> SeedStep:
        def action(ctx: Any) -> str:
            armed.arm(point)
            try:
                return step.action(ctx)
            finally:
                armed.disarm(point)
        return replace(step, action=action)
    at = point.step if point.armed_at is None else point.armed_at
    return replace(procedure, steps=tuple(wrap(s) if s.number == at else s for s in procedure.steps))
