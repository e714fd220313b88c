"""A known bench state, fast: the TPM manufactured once (swtpm_setup) into a golden state
directory, copied for every case; the card a fresh factory image in the card process's memory.
A case then costs a swtpm start and a card start, not swtpm_setup."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

from mcim_hil.bench import Bench
from mcim_hil.emulators.swtpm import Swtpm

CARD_TIMEOUT_S = 2.0   # a silent card costs a case this much, not the bench's 10 s
MODEM_TIMEOUT_S = 2.0  # a silent module: per attempt (the driver tries 3 times), not the bench's 5 s


class BenchState:
    """``prepare()`` once, then ``restore(case_dir)`` for each case: a Bench on a copy."""

    def __init__(self, bench: Bench, workdir: Path) -> None:
        if bench.tpm is None or bench.tpm.emulator != "swtpm" or bench.uicc is None or bench.uicc.emulator != "vuicc":
            raise ValueError(f"{bench.path}: the fault matrix needs an emulated TPM (swtpm) and card (vuicc)")
        self.bench = bench
        self.workdir = workdir
        self.golden = workdir / "tpm-golden"
        self.prepare_s = 0.0

    def prepare(self) -> None:
        """swtpm_setup once (EK, certificates); stopped with TPM2_Shutdown, so copies start safe."""
        t0 = time.perf_counter()
        tpm = Swtpm(state_dir=self.golden)
        tpm.start()
        tpm.stop()
        self.prepare_s = time.perf_counter() - t0

    def restore(self, case_dir: Path, *, modem: bool = False) -> Bench:
        """A Bench whose TPM is a copy of the golden one; its card a fresh factory image; the
        modem only when asked (the relayed AKA does without it, and a case starts faster). With
        the modem, the card is reached through it (AT+CSIM) and the module attaches itself, so
        the modem's faults meet every card command a step sends."""
        state = case_dir / "tpm"
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(self.golden, state, ignore=shutil.ignore_patterns("*.log", "*.pid"))
        assert self.bench.tpm is not None and self.bench.uicc is not None
        if modem and self.bench.modem is None:
            raise ValueError(f"{self.bench.path}: modem faults need the bench's modem (modem: emulator: at-pty)")
        return replace(self.bench, tpm=replace(self.bench.tpm, state_dir=state),
                       uicc=replace(self.bench.uicc, card_state=None, timeout=CARD_TIMEOUT_S, via_modem=modem),
                       modem=replace(self.bench.modem, timeout=MODEM_TIMEOUT_S) if modem and self.bench.modem
                       else None)
