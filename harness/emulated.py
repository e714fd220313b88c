"""Brings up the emulated devices a bench file asks for, and takes them down again.

Each device section of a bench is either real (left as it is) or emulated: swtpm for the
TPM, the virtual card on a free vpcd slot for the UICC, the AT modem on a pty (whose SIM is
that card's reader, or the bench's real reader) for the module.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .bench import Bench


@dataclass
class Endpoints:
    """Where each device of a bench is reached: what the drivers open."""

    tpm_tcti: str | None = None
    uicc_reader: str | None = None
    modem_port: str | None = None
    ek_ca_certificates: list[Path] = field(default_factory=list)
    startup_s: float = 0.0
    lab: dict | None = None      # the labgrid place held and its resources (mcim_hil.lab.place)

    def lines(self) -> list[str]:
        out = []
        if self.tpm_tcti:
            out.append(f"tpm_tcti={self.tpm_tcti}")
        if self.uicc_reader:
            out.append(f"uicc_reader={self.uicc_reader}")
        if self.modem_port:
            out.append(f"modem_port={self.modem_port}")
        out += [f"ek_ca={path}" for path in self.ek_ca_certificates]   # a bench file's tpm.ek_ca
        return out


def _factory_imsi(iccid: str) -> str:
    # A blank card answers with a test-network IMSI (MCC 001, MNC 01: TS 23.003 test PLMN)
    # until the equipment supplier programs its PCID.
    return "00101" + iccid[-10:].rjust(10, "0")


def _wait_through_interrupts(done: threading.Event) -> KeyboardInterrupt | None:
    """Wait for ``done`` even if SIGINT/SIGTERM arrives meanwhile (the thread may be starting
    swtpm, which must then be stopped too); the interrupt is handed back for the caller to raise."""
    interrupted = None
    while not done.is_set():
        try:
            done.wait()
        except KeyboardInterrupt as exc:
            interrupted = exc
    return interrupted


class EmulatedBench:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager)."""

    def __init__(self, bench: Bench, workdir: Path | None = None, *, faults: bool = False) -> None:
        """faults: the TPM's TCTI goes through swtpm's power-cut relay (Swtpm.power_loss_at).
        The card's fault controls (VirtualUicc.fail_command, stay_silent, remove/insert)
        are always there: ``uicc_emulator``; the TPM's: ``tpm_emulator``."""
        self.bench = bench
        self._faults = faults
        self.tpm_emulator = None
        self.uicc_emulator = None
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="mcim-hil-bench-")) if workdir is None else workdir
        self.endpoints = Endpoints()
        self._stack: list = []   # things to stop, in start order
        self.modem_emulator = None

    def start(self) -> Endpoints:
        t0 = time.perf_counter()
        # swtpm_setup (a fresh EK certificate) and pcscd noticing the card each take most of a
        # second and do not depend on each other: the TPM comes up in a thread meanwhile.
        tpm_error: list[BaseException] = []
        tpm_done = threading.Event()   # not Thread.join(): a signal during join() can mark a running
                                       # thread as stopped (Python 3.11, bpo-45274's fix)

        def start_tpm() -> None:
            try:
                self._start_tpm()
            except BaseException as exc:  # handed to the caller below
                tpm_error.append(exc)
            finally:
                tpm_done.set()

        threading.Thread(target=start_tpm, name="swtpm-start").start()
        try:
            self._start_uicc()
            self._start_modem()
            tpm_done.wait()      # inside: a SIGTERM while waiting here must stop what started
        except BaseException as exc:
            interrupted = _wait_through_interrupts(tpm_done)
            self.stop()
            if interrupted is not None:
                raise interrupted from exc
            raise
        if tpm_error:
            self.stop()
            raise tpm_error[0]
        self.endpoints.startup_s = time.perf_counter() - t0
        return self.endpoints

    def _start_tpm(self) -> None:
        res = self.bench.tpm
        if res is None:
            return
        if not res.emulator:
            self.endpoints.tpm_tcti = res.tcti
            return
        from .emulators.swtpm import Swtpm
        tpm = Swtpm(state_dir=res.state_dir, faults=self._faults)
        self._stack.append(tpm)
        tpm.start()
        self.tpm_emulator = tpm
        self.endpoints.tpm_tcti = tpm.tcti
        self.endpoints.ek_ca_certificates = list(tpm.ek_ca_certificates())

    def _start_uicc(self) -> None:
        res = self.bench.uicc
        if res is None:
            return
        if not res.emulator:
            if isinstance(res.reader, str) and not res.reader.startswith("re:"):
                self.endpoints.uicc_reader = res.reader
            return
        from .emulators.pcscd import claim_free_slot
        from .emulators.vuicc import VirtualUicc, card_image, create_card_file
        claim = claim_free_slot()
        self._stack.append(claim)
        state = res.card_state
        image = None
        if state is None or not state.exists():
            if res.adm1 is None:
                raise ValueError(f"{self.bench.path}: uicc.secrets.adm1 is needed to make the virtual card")
            iccid = res.iccid or "8988211000000000017"
            factory = dict(iccid=iccid, imsi=_factory_imsi(iccid),
                           k=secrets.token_bytes(16), opc=secrets.token_bytes(16),
                           adm1=res.adm1.resolve_key(),
                           pin1=res.pin1.resolve_key() if res.pin1 else b"1234")
            if state is None:
                # a card for this run only: its K, OPc and PINs live in its process's memory,
                # never in a file (a kept uicc.card_state is a 0600 file, by the user's choice)
                image = card_image(**factory)
            else:
                state.parent.mkdir(parents=True, exist_ok=True)
                create_card_file(state, **factory)
        card = VirtualUicc(state, claim.slot.port, reader=claim.slot.reader, image=image)
        self._stack.append(card)
        card.start()
        self.uicc_emulator = card
        self.endpoints.uicc_reader = claim.slot.reader

    def _start_modem(self) -> None:
        res = self.bench.modem
        if res is None:
            return
        if self.bench.labgrid is not None:   # the place's serial port is the modem; released in stop()
            from .lab.place import PlaceLease
            lease = PlaceLease(self.bench.labgrid, where=f"{self.bench.path}: labgrid")
            self._stack.append(lease.acquire())
            self.endpoints.modem_port, self.endpoints.lab = lease.modem_url, lease.describe()
            return
        if not res.emulator:
            self.endpoints.modem_port = res.port
            return
        from .emulators.modem import EmulatedModem
        if self.endpoints.uicc_reader is None:
            raise ValueError(f"{self.bench.path}: the emulated modem needs a SIM reader (uicc section)")
        kwargs = {"imei": res.imei} if res.imei else {}
        if res.profile:
            kwargs["profile"] = res.profile
        modem = EmulatedModem(self.endpoints.uicc_reader, **kwargs)
        self._stack.append(modem)
        self.endpoints.modem_port = modem.start()
        self.modem_emulator = modem

    def stop(self) -> None:
        errors = []
        interrupted: KeyboardInterrupt | None = None
        while self._stack:
            thing = self._stack.pop()
            try:
                (thing.release if hasattr(thing, "release") else thing.stop)()
            except KeyboardInterrupt as exc:   # SIGINT/SIGTERM mid-stop: stop the rest first
                interrupted = exc
            except Exception as exc:  # keep stopping the rest
                errors.append(f"{type(thing).__name__}: {exc}")
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if interrupted is not None:
            raise interrupted
        if errors:
            raise RuntimeError("stopping the emulated bench: " + "; ".join(errors))

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
