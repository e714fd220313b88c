"""How APDUs reach a UICC: a PC/SC reader (pyscard over pcscd), or a cellular module's AT+CSIM.

A transport moves raw APDUs: it returns the response data and SW1SW2 exactly as the card
gave them. T=0 procedure bytes (61xx, 6Cxx) are the driver's business (uicc.py), so the
same logic serves a reader and a modem that passes 61xx through.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Protocol, Sequence

from smartcard import scard

from mcim_hil.drivers.errors import CardError, CardRemoved, CardTimeout, DeviceError, DeviceNotFound

# Longest one PC/SC call may take (bench file: uicc.timeout). A card answers in milliseconds to
# a second; pcscd and vpcd wait for a silent card for ever.
DEFAULT_TIMEOUT_S = 10.0


class Transport(ABC):
    """Raw APDU exchange with one card."""

    name: str                 # reader name, or "AT+CSIM via <port>"
    atr: bytes                # b"" where unknown (AT+CSIM)
    protocol: str | None      # "T=0", "T=1", or None when the path hides it (AT+CSIM)

    @abstractmethod
    def transmit(self, apdu: bytes, *, secret: bool = False) -> tuple[bytes, int]:
        """Send one APDU; return (response data, SW1SW2 as int). No T=0 handling.

        ``secret``: the APDU or its response carries a key or PIN; a transport that logs
        (a modem's AT trace) must redact it."""

    def reconnect(self) -> None:
        """Reset the card session (the card loses its selection and verified PINs)."""

    def close(self) -> None:
        """Release the card; the transport cannot be used afterwards."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the card for one command and its GET RESPONSE; a no-op where nobody else can talk."""
        yield

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _split_sw(name: str, response: bytes) -> tuple[bytes, int]:
    if len(response) < 2:
        raise CardError(name, "transmit", f"response of {len(response)} bytes has no status word")
    return bytes(response[:-2]), int.from_bytes(response[-2:], "big")


# --------------------------------------------------------------------------- PC/SC

class _Worker:
    """One daemon thread running calls in order. (A ThreadPoolExecutor's threads are joined
    at interpreter exit: one stuck in a silent reader would hang the process for good.)"""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple] | None] = \
            queue.SimpleQueue()
        threading.Thread(target=self._run, name="pcsc", daemon=True).start()

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the waiting caller
                    future.set_exception(exc)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self._calls.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        """The thread ends after what is queued (at once when idle)."""
        self._calls.put(None)


_PROTOCOLS = {
    "T0 preferred": (scard.SCARD_PROTOCOL_T0, scard.SCARD_PROTOCOL_T1),
    "T0": (scard.SCARD_PROTOCOL_T0,),
    "T1": (scard.SCARD_PROTOCOL_T1,),
}
_PROTOCOL_NAMES = {scard.SCARD_PROTOCOL_T0: "T=0", scard.SCARD_PROTOCOL_T1: "T=1"}


def _pcsc_message(hresult: int) -> str:
    return f"{scard.SCardGetErrorMessage(hresult)} (0x{hresult & 0xFFFFFFFF:08X})"


def _establish_context() -> int:
    try:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    except scard.error as exc:  # pragma: no cover - pyscard raises only on misuse
        raise DeviceNotFound("pcscd", "SCardEstablishContext", str(exc)) from exc
    if hresult != scard.SCARD_S_SUCCESS:
        if hresult == scard.SCARD_E_NO_SERVICE:
            raise DeviceNotFound("pcscd", "SCardEstablishContext",
                                 "pcscd is not running; start it with `pcscd` (as root)")
        raise DeviceNotFound("pcscd", "SCardEstablishContext", _pcsc_message(hresult))
    return context


def _list_readers(context: int) -> list[str]:
    hresult, readers = scard.SCardListReaders(context, [])
    if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
        return []
    if hresult != scard.SCARD_S_SUCCESS:
        raise DeviceNotFound("pcscd", "SCardListReaders", _pcsc_message(hresult))
    return list(readers)


def list_readers() -> list[str]:
    """The PC/SC readers pcscd knows, in its order (the index `PcscTransport.open` takes)."""
    context = _establish_context()
    try:
        return _list_readers(context)
    finally:
        scard.SCardReleaseContext(context)


def _readers_with_card(context: int, readers: Sequence[str]) -> list[str]:
    if not readers:
        return []
    hresult, states = scard.SCardGetStatusChange(context, 0, [(r, scard.SCARD_STATE_UNAWARE) for r in readers])
    if hresult != scard.SCARD_S_SUCCESS:
        raise DeviceNotFound("pcscd", "SCardGetStatusChange", _pcsc_message(hresult))
    return [r for r, state, _atr in states if state & scard.SCARD_STATE_PRESENT]


ReaderSpec = str | int | re.Pattern[str] | None


def _choose_reader(context: int, spec: ReaderSpec) -> str:
    readers = _list_readers(context)
    present = "; readers present: " + (", ".join(repr(r) for r in readers) if readers else "none")
    if isinstance(spec, str) and spec.startswith("re:"):
        spec = re.compile(spec[3:])
    if spec is None:
        with_card = _readers_with_card(context, readers)
        if not with_card:
            raise DeviceNotFound("pcscd", "choose reader", "no reader holds a card" + present)
        return with_card[0]
    if isinstance(spec, bool):
        raise TypeError("reader must be a name, a regex, an index or None")
    if isinstance(spec, int):
        if 0 <= spec < len(readers):
            return readers[spec]
        raise DeviceNotFound("pcscd", "choose reader", f"no reader at index {spec}" + present)
    if isinstance(spec, re.Pattern):
        for reader in readers:
            if spec.search(reader):
                return reader
        raise DeviceNotFound("pcscd", "choose reader", f"no reader matches /{spec.pattern}/" + present)
    if spec in readers:
        return spec
    raise DeviceNotFound("pcscd", "choose reader", f"no reader named {spec!r}" + present)


class PcscTransport(Transport):
    """A card in a PC/SC reader, through pcscd.

    ``share_mode`` says how the card is held: "shared" lets other tools (pcsc_scan,
    pySim-shell in shared mode) talk to it between our commands, "exclusive" does not.
    """

    def __init__(self, context: int, reader: str, shared: bool, protocols: tuple[int, ...],
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if timeout <= 0:
            raise ValueError(f"PC/SC timeout must be positive, got {timeout}")
        self._context = context
        self._card: int | None = None
        self.name = reader
        self.share_mode = "shared" if shared else "exclusive"
        self._share = scard.SCARD_SHARE_SHARED if shared else scard.SCARD_SHARE_EXCLUSIVE
        self._protocols = protocols
        self.timeout = timeout
        self.atr = b""
        self.protocol = None
        # pyscard blocks inside pcscd's answer: each call runs on this thread, the caller waits
        # at most `timeout` for it
        self._worker = _Worker()
        self._given_up: str | None = None
        try:
            self._connect()
        except BaseException:
            self._worker.shutdown()
            raise

    @classmethod
    def open(cls, reader: ReaderSpec = None, shared: bool = True, protocol: str = "T0 preferred",
             timeout: float = DEFAULT_TIMEOUT_S) -> PcscTransport:
        """Connect to the card in ``reader``: exact name, regex (re.Pattern or "re:..."), index,
        or None for the first reader holding a card. ``protocol``: "T0 preferred" (T=1 fallback),
        "T0" or "T1". ``timeout``: the longest one PC/SC call may take; then CardTimeout and
        the connection is given up until reconnect()."""
        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(_PROTOCOLS)}, got {protocol!r}")
        context = _establish_context()
        try:
            name = _choose_reader(context, reader)
            return cls(context, name, shared, _PROTOCOLS[protocol], timeout)
        except BaseException:
            scard.SCardReleaseContext(context)
            raise

    def _bounded(self, command: str, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on the PC/SC thread, waited for at most ``timeout``."""
        if self._given_up is not None:
            raise CardError(self.name, command, f"the connection was given up ({self._given_up}); "
                            "call reconnect()")
        future = self._worker.submit(fn, *args)
        try:
            return future.result(self.timeout)
        except FutureTimeout:
            self._given_up = f"no answer to {command} within {self.timeout:g} s"
            self._abandon()
            raise CardTimeout(self.name, command, f"no answer within {self.timeout:g} s (the card "
                              "may or may not have carried it out); the connection is given up, "
                              "call reconnect()") from None

    def _abandon(self) -> None:
        """Leave the blocked call to its thread with a fresh thread for what follows; once it
        returns (the card answers or goes), that thread releases the old handle and context."""
        old_worker, card, context = self._worker, self._card, self._context
        self._card, self._context = None, None  # type: ignore[assignment]
        if context is not None:  # wakes a blocked SCardGetStatusChange; harmless otherwise
            threading.Thread(target=scard.SCardCancel, args=(context,), daemon=True).start()
        old_worker.submit(_release, card, context)
        old_worker.shutdown()
        self._worker = _Worker()

    def _connect(self) -> None:
        if self._context is None:
            self._context = self._bounded("SCardEstablishContext", _establish_context)
        hresult = scard.SCARD_E_PROTO_MISMATCH
        for proto in self._protocols:
            hresult, card, active = self._bounded("SCardConnect", scard.SCardConnect, self._context,
                                                  self.name, self._share, proto)
            if hresult != scard.SCARD_E_PROTO_MISMATCH:
                break
        if hresult in (scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD):
            raise DeviceNotFound(self.name, "SCardConnect", "no card in the reader")
        if hresult == scard.SCARD_E_READER_UNAVAILABLE:
            raise DeviceNotFound(self.name, "SCardConnect", "reader unavailable (no card, or pcscd lost it)")
        if hresult == scard.SCARD_E_UNKNOWN_READER:
            raise DeviceNotFound(self.name, "SCardConnect", "reader has gone away")
        if hresult == scard.SCARD_E_SHARING_VIOLATION:
            raise CardError(self.name, "SCardConnect",
                            f"card held by another application ({self.share_mode} open refused)")
        if hresult != scard.SCARD_S_SUCCESS:
            wanted = "/".join(_PROTOCOL_NAMES[p] for p in self._protocols)
            raise CardError(self.name, "SCardConnect", f"{_pcsc_message(hresult)} (asked for {wanted})")
        self._card = card
        self.protocol = _PROTOCOL_NAMES.get(active, f"protocol {active}")
        self._read_status()

    def _read_status(self) -> None:
        hresult, _reader, _state, _proto, atr = self._bounded("SCardStatus", scard.SCardStatus, self._card)
        if hresult != scard.SCARD_S_SUCCESS:
            raise CardError(self.name, "SCardStatus", _pcsc_message(hresult))
        self.atr = bytes(atr)

    def _pci(self) -> int:
        return scard.SCARD_PCI_T0 if self.protocol == "T=0" else scard.SCARD_PCI_T1

    def transmit(self, apdu: bytes, *, secret: bool = False) -> tuple[bytes, int]:
        if self._card is None and self._given_up is None:
            raise CardError(self.name, "transmit", "transport is closed")
        hresult, response = self._bounded("SCardTransmit", scard.SCardTransmit, self._card,
                                          self._pci(), list(apdu))
        if hresult in _PCSCD_GONE:
            self._after_pcscd_restart("SCardTransmit", hresult)
        if hresult != scard.SCARD_S_SUCCESS:
            if hresult in _GONE:
                raise CardRemoved(self.name, "SCardTransmit",
                                  f"{_pcsc_message(hresult)}: the card left the reader")
            hint = ""
            if hresult == scard.SCARD_W_RESET_CARD:
                hint = "; the card was reset by another application, call reconnect()"
            raise CardError(self.name, "SCardTransmit", _pcsc_message(hresult) + hint)
        return _split_sw(self.name, bytes(response))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._card is None or self.share_mode == "exclusive":
            yield
            return
        hresult = self._bounded("SCardBeginTransaction", scard.SCardBeginTransaction, self._card)
        if hresult in _PCSCD_GONE:
            self._after_pcscd_restart("SCardBeginTransaction", hresult)
        if hresult in _GONE:
            raise CardRemoved(self.name, "SCardBeginTransaction",
                              f"{_pcsc_message(hresult)}: the card left the reader")
        if hresult != scard.SCARD_S_SUCCESS:
            raise CardError(self.name, "SCardBeginTransaction", _pcsc_message(hresult))
        try:
            yield
        finally:
            if self._given_up is None and self._card is not None:
                self._bounded("SCardEndTransaction", scard.SCardEndTransaction, self._card,
                              scard.SCARD_LEAVE_CARD)

    def reconnect(self) -> None:
        """Warm-reset the card (SCardReconnect with SCARD_RESET_CARD); after a timeout, a new
        context and connection (CardTimeout again if the card still does not answer)."""
        if self._card is None:
            self._given_up = None
            self._connect()
            return
        hresult = scard.SCARD_E_PROTO_MISMATCH
        for proto in self._protocols:
            hresult, active = self._bounded("SCardReconnect", scard.SCardReconnect, self._card,
                                            self._share, proto, scard.SCARD_RESET_CARD)
            if hresult != scard.SCARD_E_PROTO_MISMATCH:
                break
        if hresult in _PCSCD_GONE:   # pcscd restarted since: the old handle means nothing now
            self._renew_session("SCardReconnect", hresult)
            return
        if hresult != scard.SCARD_S_SUCCESS:
            raise CardError(self.name, "SCardReconnect", _pcsc_message(hresult))
        self.protocol = _PROTOCOL_NAMES.get(active, f"protocol {active}")
        self._read_status()

    def _renew_session(self, command: str, hresult: int) -> None:
        """pcscd went away (restarted, or stopped): its contexts and handles died with it. Open a
        new context and connect again, polling until pcscd shows the reader again, within
        ``timeout``; else CardRemoved naming pcscd and the connection is given up."""
        old_card, old_context = self._card, self._context
        self._card, self._context = None, None  # type: ignore[assignment]
        self._worker.submit(_release, old_card, old_context)   # best effort: they are dead
        deadline = time.monotonic() + self.timeout
        last = _pcsc_message(hresult)
        while True:
            try:
                self._connect()
                return
            except (DeviceNotFound, CardError) as exc:
                if isinstance(exc, CardTimeout):
                    raise
                last = exc.message if hasattr(exc, "message") else str(exc)
                if self._context is not None:
                    self._worker.submit(_release, None, self._context)
                    self._context = None  # type: ignore[assignment]
            if time.monotonic() >= deadline:
                self._given_up = f"pcscd went away at {command}"
                raise CardRemoved(self.name, command,
                                  f"pcscd went away ({_pcsc_message(hresult)}) and no card session came back "
                                  f"within {self.timeout:g} s ({last}); is pcscd running?")
            time.sleep(_PCSCD_POLL_S)

    def _after_pcscd_restart(self, command: str, hresult: int) -> None:
        """The command died with pcscd. A new context and card session are opened (bounded);
        the command is not sent again: pcscd's restart reset the card (no selection, no
        verified PIN), so the caller must start its card work over. Raises CardRemoved."""
        self._renew_session(command, hresult)
        raise CardRemoved(self.name, command,
                          f"pcscd restarted ({_pcsc_message(hresult)}): a new PC/SC context and card "
                          "session are open, the card was reset (selection and verified PINs lost); "
                          "the command was not sent again")

    def close(self) -> None:
        card, context = self._card, self._context
        self._card, self._context = None, None  # type: ignore[assignment]
        if card is not None or context is not None:
            # a reader that hangs must not hang the close: bounded, then left to its thread
            future = self._worker.submit(_release, card, context)
            try:
                future.result(self.timeout)
            except FutureTimeout:
                pass
        self._worker.shutdown()

    def __repr__(self) -> str:
        return f"<PcscTransport {self.name!r} {self.share_mode} {self.protocol}>"


# PC/SC answers meaning the card (or its reader) is gone
_GONE = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_E_READER_UNAVAILABLE,
         scard.SCARD_E_UNKNOWN_READER}


# PC/SC answers meaning pcscd itself went away (stopped or restarted): every context and handle
# it gave is dead. (pcsc-lite: a lost daemon socket is SCARD_E_NO_SERVICE; a restarted daemon
# does not know the old handles, SCARD_E_INVALID_HANDLE.)
_PCSCD_GONE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_E_INVALID_HANDLE,
               scard.SCARD_F_COMM_ERROR}
_PCSCD_POLL_S = 0.1   # how often a lost pcscd is looked for again


def _release(card: int | None, context: int | None) -> None:
    if card is not None:
        scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
    if context is not None:
        scard.SCardReleaseContext(context)


# --------------------------------------------------------------------------- AT+CSIM

class CsimModem(Protocol):
    """What CsimTransport needs of a modem driver (drivers/modem.py `Modem`)."""

    port: str

    def csim(self, apdu: bytes, *, secret: bool = False) -> bytes:
        """AT+CSIM (TS 27.007 8.17): the APDU out, response data + SW1SW2 back; ``secret``
        keeps the line out of the modem's trace."""
        ...


class CsimTransport(Transport):
    """The module's UICC through AT+CSIM. The modem stays open: it is not ours to close.

    Modules pass T=0 procedure bytes through (a '61xx' answer), so the driver's GET
    RESPONSE logic applies unchanged.
    """

    def __init__(self, modem: CsimModem) -> None:
        self._modem = modem
        self.name = f"AT+CSIM via {modem.port}"
        self.atr = b""          # the ATR does not cross AT commands
        self.protocol = None

    def transmit(self, apdu: bytes, *, secret: bool = False) -> tuple[bytes, int]:
        try:
            response = self._modem.csim(apdu, secret=secret)
        except DeviceError as exc:
            if not secret:
                raise CardError(self.name, "AT+CSIM", f"the modem failed the command ({exc.message})") from exc
            # A modem error may quote the AT line, and so the PIN or key: keep its final result
            # only, and do not chain it into a traceback.
            result = getattr(exc, "result", None)
            detail = f"{type(exc).__name__}{f', {result}' if result else ''}"
            raise CardError(self.name, "AT+CSIM", f"the modem failed the command ({detail})") from None
        return _split_sw(self.name, response)

    def reconnect(self) -> None:
        """Nothing to do: AT gives no portable card reset; the modem owns the card session."""


# --------------------------------------------------------------------------- scripted stub

class ScriptMismatch(AssertionError):
    """The code under test sent something the script did not expect."""


class ScriptedTransport(Transport):
    """A scripted stand-in for a card: expected APDUs in order, canned responses.

    For unit tests of the T=0 procedure-byte logic and the AT+CSIM framing only; every other
    test goes through pcscd. Any unexpected or extra APDU fails at once. It also answers
    ``csim()`` and has ``port``, so it can stand in for a modem under CsimTransport.
    """

    def __init__(self, script: Sequence[tuple[str, str]], name: str = "scripted card", atr: bytes = b"",
                 protocol: str | None = "T=0") -> None:
        self._script = [(bytes.fromhex(a), bytes.fromhex(r)) for a, r in script]
        self._step = 0
        self.name = name
        self.port = name
        self.atr = atr
        self.protocol = protocol
        self.sent: list[bytes] = []
        self.sent_secret: list[bool] = []  # the secret flag each APDU came with

    def _next(self, apdu: bytes, secret: bool) -> bytes:
        self.sent.append(apdu)
        self.sent_secret.append(secret)
        if self._step >= len(self._script):
            raise ScriptMismatch(f"{self.name}: unexpected APDU {apdu.hex()} after the end of the script")
        expected, response = self._script[self._step]
        if apdu != expected:
            raise ScriptMismatch(f"{self.name}: step {self._step}: expected {expected.hex()}, got {apdu.hex()}")
        self._step += 1
        return response

    def transmit(self, apdu: bytes, *, secret: bool = False) -> tuple[bytes, int]:
        return _split_sw(self.name, self._next(apdu, secret))

    def csim(self, apdu: bytes, *, secret: bool = False) -> bytes:
        return self._next(apdu, secret)

    def assert_done(self) -> None:
        if self._step != len(self._script):
            raise ScriptMismatch(f"{self.name}: {len(self._script) - self._step} scripted APDUs never sent")
