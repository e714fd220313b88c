"""A virtual UICC behind the real pcscd: the vpcd card side, a T=0 USIM with Milenage.

The card is vpcd's TCP client (facts/pcsc.md): every message both ways is a 2-byte
big-endian length then the payload; a 1-byte payload from vpcd is a control byte
(0 power off, 1 power on, 2 reset, 4 get ATR), anything longer a command APDU that
gets response data + SW1 SW2 back. So pyscard reaches it through pcscd exactly as it
reaches a card in a reader.

The card follows TS 102 221 / TS 31.102 for a subset of commands (SELECT, STATUS,
READ/UPDATE BINARY and RECORD, VERIFY, CHANGE/DISABLE/ENABLE PIN, AUTHENTICATE,
GET RESPONSE, TERMINAL PROFILE) and behaves as a T=0 card when its ATR offers T=0
(the sysmoISIM-SJA2 ATR offers only T=0): case-4 answers are '61xx' + GET RESPONSE,
a wrong Le on a case-2 command is answered '6Cxx'. With an ATR offering only T=1 the
response comes with the command (and a short READ BINARY ends '6282').

PIN counters: a wrong VERIFY answers '63Cx' with x the tries left ('63C0' on the try
that blocks), a blocked PIN answers '6983'; an empty VERIFY answers '63Cx', or '9000'
once verified. Verification is lost on power off and reset. PIN values live in
DF.SYSTEM (EF.CHV1 6F01, EF.ADM1 6F0A); an ADM write there resets that PIN's counter.

Its content lives in a JSON state file (vuicc_fs) rewritten atomically on every
change (UPDATE, PIN counter, SQN array), so a restart keeps it as a real card would.

Run one card per vpcd slot:

    python -m mcim_hil.emulators.vuicc --state card.json --port 35963

or from Python with ``VirtualUicc(state_file, port)``. The emulator never logs APDU
data, keys or PINs.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
from pathlib import Path
from typing import Callable

from mcim_hil.emulators.vuicc_apdu import SW_TECHNICAL, _sw
from mcim_hil.emulators.vuicc_card import UiccCard
from mcim_hil.emulators.vuicc_faults import ANSWER, FAIL, FaultCommandError, FaultPlan
from mcim_hil.emulators.vuicc_link import (
    CONTROL_FOLLOW_S,
    VPCD_GET_ATR,
    VPCD_POWER_OFF,
    VPCD_POWER_ON,
    VPCD_RESET,
    _connect,
    _ControlChannel,
    _life,
    _on_signal,
    _Stop,
    _VpcdLink,
)
from mcim_hil.emulators.vuicc_process import VirtualUicc, VirtualUiccError, reader_for_port
from mcim_hil.emulators.vuicc_fs import SJA2_ATR, CardState, CardStateError, factory_state, pad_pin

__all__ = [
    "SJA2_ATR",
    "card_image",
    "UiccCard",
    "VirtualUicc",
    "VirtualUiccError",
    "create_card_file",
    "reader_for_port",
    "serve",
]


def create_card_file(path: Path | str, *, iccid: str, imsi: str, k: bytes, opc: bytes,
                     adm1: bytes, pin1: bytes = b"1234", mnc_len: int = 2,
                     atr: bytes = SJA2_ATR, sqn_flags: int | None = None) -> None:
    """Write a factory-fresh card (sysmoISIM-SJA2 layout, Milenage with OPc, PIN1 disabled).

    ``adm1`` and ``pin1`` are the ASCII digits of the keys (4..8 bytes, 'FF' padded to 8).
    ``sqn_flags`` overrides EF.USIM_SQN flag byte 1 (default: delta and SQN checks, 5-bit IND).
    """
    _factory_card(str(path), iccid=iccid, imsi=imsi, k=k, opc=opc, adm1=adm1, pin1=pin1,
                  mnc_len=mnc_len, atr=atr, sqn_flags=sqn_flags).save(Path(path))


def card_image(*, iccid: str, imsi: str, k: bytes, opc: bytes, adm1: bytes,
               pin1: bytes = b"1234", mnc_len: int = 2, atr: bytes = SJA2_ATR,
               sqn_flags: int | None = None) -> bytes:
    """The same factory-fresh card as create_card_file, as bytes for ``VirtualUicc(image=...)``:
    a card that lives in its process's memory only, never in a file."""
    state = _factory_card("card image", iccid=iccid, imsi=imsi, k=k, opc=opc, adm1=adm1,
                          pin1=pin1, mnc_len=mnc_len, atr=atr, sqn_flags=sqn_flags)
    return json.dumps(state.to_json()).encode()


def _factory_card(where: str, *, iccid: str, imsi: str, k: bytes, opc: bytes, adm1: bytes,
                  pin1: bytes, mnc_len: int, atr: bytes, sqn_flags: int | None) -> CardState:
    kwargs = {} if sqn_flags is None else {"sqn_flags": sqn_flags}
    try:
        return factory_state(iccid=iccid, imsi=imsi, k=k, opc=opc, adm1=pad_pin(adm1),
                             pin1=pin1, mnc_len=mnc_len, atr=atr, **kwargs)
    except ValueError as exc:
        raise VirtualUiccError(f"{where}: {exc}") from None


def serve(state_file: Path | None, port: int, host: str = "127.0.0.1", *,
          announce: Callable[[str], None] = lambda _event: None,
          connect_timeout: float = 3.0, image: bytes | None = None,
          control: _ControlChannel | None = None) -> int:
    """Run the card on vpcd ``host:port`` until SIGTERM; returns an exit code. When vpcd goes
    away (pcscd restarted) the card waits for it to come back, as a card left in its reader.

    ``announce`` hears 'connected' and then 'atr' (the first ATR asked by vpcd).
    ``image`` (card_image()) instead of a state file: the card lives in memory only.
    ``control``: where the harness arms faults (vuicc_faults); each is acknowledged by
    announcing ``ack <op>``.
    """
    if image is not None:
        try:
            state = CardState.from_json(json.loads(image))
        except (ValueError, KeyError, TypeError) as exc:
            raise CardStateError(f"card image: malformed ({type(exc).__name__})") from None
        card = UiccCard(state, lambda s: None)  # its keys never reach a disk
    else:
        assert state_file is not None
        state_file = Path(state_file)
        card = UiccCard(CardState.load(state_file), lambda s: s.save(state_file))
    sock = _connect(host, port, connect_timeout)
    sock.settimeout(None)
    link = _VpcdLink(sock)
    announce("connected")
    atr_announced = False
    plan = FaultPlan()
    try:
        while True:
            if control is not None and (plan.removed or not link.has_frame()):
                watch = [control.fd] if plan.removed else [control.fd, sock]
                if control.fd in select.select(watch, [], [])[0]:
                    was_removed = plan.removed
                    for line in control.lines():
                        try:
                            announce(f"ack {plan.apply(line)}")
                        except FaultCommandError as exc:
                            announce(f"nak {exc}")
                    if control.closed:
                        control = None  # the harness is gone; PDEATHSIG ends us
                    if plan.removed and not was_removed:
                        card.reset()  # pulled out: vpcd's next poll finds no card
                        sock.close()
                    elif was_removed and not plan.removed:
                        sock = _connect(host, port, connect_timeout)
                        sock.settimeout(None)
                        link = _VpcdLink(sock)
                    continue
            try:
                payload = link.receive()
            except ConnectionError:
                payload = None
            if payload is None:
                # vpcd went away (pcscd restarted): like a card left in its reader, wait for
                # the reader to come back, powered off meanwhile
                card.reset()
                sock.close()
                sock = _connect(host, port, float("inf"))
                sock.settimeout(None)
                link = _VpcdLink(sock)
                continue
            vpcd_control = len(payload) == 1 and (
                payload[0] == VPCD_GET_ATR
                or payload[0] in (VPCD_POWER_OFF, VPCD_POWER_ON, VPCD_RESET)
                and link.frame_within(CONTROL_FOLLOW_S))
            _life.busy = True
            if vpcd_control:
                if payload[0] == VPCD_GET_ATR:
                    link.send(card.atr)
                    if not atr_announced:
                        announce("atr")
                        atr_announced = True
                else:
                    card.reset()
            else:  # an APDU; one of 1 byte is answered '6700' (ISO 7816-4 5.1: 4 bytes at least)
                verdict, sw = plan.on_command(payload)
                if verdict == FAIL:
                    link.send(_sw(sw))
                elif verdict == ANSWER:
                    link.send(_answer(card, payload, port))
                # SILENT: no answer; vpcd waits until the harness removes the card
            _life.busy = False
            if _life.stop_requested:
                return 0
    except (_Stop, ConnectionError):
        return 0
    finally:
        _life.busy = False
        sock.close()


def _answer(card: UiccCard, apdu: bytes, port: int) -> bytes:
    try:
        return card.process(apdu)
    except Exception as exc:  # a card bug must not kill the card: say so (no data), answer 6F00
        print(f"virtual UICC port {port}: internal error on INS {apdu[1]:02X}: {type(exc).__name__}",
              file=sys.stderr, flush=True)
        return _sw(SW_TECHNICAL)


def _die_with_parent(parent_pid: int) -> None:
    """Get SIGTERM when the harness dies, so an orphan card never keeps the slot (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        raise _Stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcim_hil.emulators.vuicc",
                                     description="virtual UICC behind pcscd/vpcd")
    parser.add_argument("--state", required=True,
                        help="card state file (JSON), or - for a card image on stdin, kept in memory only")
    parser.add_argument("--port", required=True, type=int, help="vpcd TCP port of the slot")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--connect-timeout", type=float, default=3.0)
    parser.add_argument("--parent-pid", type=int, help="stop when this process (the harness) dies")
    parser.add_argument("--control-stdin", action="store_true",
                        help="take fault controls from stdin (one JSON line each, see vuicc_faults)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    def announce(event: str) -> None:
        print(event, flush=True)

    try:
        if args.parent_pid is not None:
            _die_with_parent(args.parent_pid)
        control = _ControlChannel(sys.stdin.fileno()) if args.control_stdin or args.state == "-" \
            else None
        image = control.first_line() if control is not None and args.state == "-" else None
        if control is not None and not args.control_stdin:
            control = None
        return serve(None if image is not None else Path(args.state), args.port, args.host,
                     announce=announce, connect_timeout=args.connect_timeout, image=image,
                     control=control)
    except _Stop:
        return 0
    except (VirtualUiccError, CardStateError) as exc:
        print(f"virtual UICC port {args.port}: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
