"""TPM faults on the real swtpm: a TPM that stops answering, power lost, power lost at a chosen
command. The driver names the TPM and the command in a DeviceError subclass, in bounded time."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest

from mcim_hil.drivers.errors import DeviceTimeout, TpmError, TpmPowerLost, TpmTimeout
from mcim_hil.drivers.tpm import Tpm
from mcim_hil.emulators.swtpm import Swtpm

PCR_DEBUG = 16


@pytest.fixture()
def swtpm() -> Iterator[Swtpm]:
    with Swtpm(shared_identity=True) as emulator:
        yield emulator


def _bounded(seconds: float, call):  # noqa: ANN001, ANN202 - a test helper
    """call() in a thread: its result or exception, or pytest.fail when it blocks."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(("ok", call()))
        except BaseException as exc:  # handed to the test
            outcome.append(("error", exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"still blocked after {seconds} s")
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def test_a_tpm_that_stops_answering_times_out_naming_tpm_and_command(swtpm: Swtpm) -> None:
    pid = swtpm.pid
    with Tpm.open(swtpm.tcti, timeout=1.0) as tpm:
        tpm.pcr_read([PCR_DEBUG])
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(TpmTimeout) as timeout:
                _bounded(20, lambda: tpm.pcr_read([PCR_DEBUG]))
        finally:
            os.kill(pid, signal.SIGCONT)
        error = timeout.value
        assert isinstance(error, DeviceTimeout) and isinstance(error, TpmError)
        assert error.device == swtpm.tcti and error.command == "TPM2_PCR_Read"
        assert "1 s" in str(error)
        # the connection is given up, not reused half-way through a command
        with pytest.raises(TpmError, match="given up"):
            tpm.pcr_read([PCR_DEBUG])
    with Tpm.open(swtpm.tcti) as again:  # the TPM itself answers again
        assert PCR_DEBUG in again.pcr_read([PCR_DEBUG])


def test_power_lost_under_the_driver_is_named(swtpm: Swtpm) -> None:
    with Tpm.open(swtpm.tcti) as tpm:
        ak = tpm.create_ak()
        swtpm.power_off()
        with pytest.raises(TpmPowerLost) as off:
            _bounded(20, lambda: tpm.pcr_read([PCR_DEBUG]))
        assert off.value.device == swtpm.tcti and off.value.command == "TPM2_PCR_Read"
        swtpm.power_on()
        with pytest.raises(TpmPowerLost) as gone:
            tpm.quote(ak, b"after the power came back", [PCR_DEBUG])
        assert gone.value.command == "TPM2_Quote" and "lost power" in str(gone.value)
        # what a lab engineer does next: recreate the key, it is the same one
        again = tpm.create_ak()
        assert again.public.marshal() == ak.public.marshal()
        tpm.quote(again, b"fresh", [PCR_DEBUG])


@pytest.mark.parametrize("when, persisted", [("before", False), ("after", True)])
def test_power_lost_at_a_chosen_command(when: str, persisted: bool) -> None:
    from tpm2_pytss.constants import TPM2_CC

    handle = 0x81000042
    with Swtpm(shared_identity=True, faults=True) as swtpm:
        with Tpm.open(swtpm.tcti) as tpm:
            ak = tpm.create_ak()
            swtpm.power_loss_at(int(TPM2_CC.EvictControl), when)
            with pytest.raises(TpmPowerLost) as lost:
                _bounded(20, lambda: tpm.persist(ak, handle))
            assert lost.value.command == "TPM2_EvictControl" and lost.value.device == swtpm.tcti
        assert swtpm.power_cuts == [(int(TPM2_CC.EvictControl), when)]
        with Tpm.open(swtpm.tcti) as tpm:  # the power came back: the TPM answers, PCRs reset
            assert (handle in tpm.list_persistent()) is persisted
            if persisted:
                tpm.evict(handle)


def test_power_loss_at_needs_the_relay(swtpm: Swtpm) -> None:
    from mcim_hil.emulators.swtpm import SwtpmError

    with pytest.raises(SwtpmError, match="faults=True"):
        swtpm.power_loss_at(0x120)
