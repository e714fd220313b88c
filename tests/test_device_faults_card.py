"""Card faults through the real stack (pcscd + vpcd + the virtual card): a card that stops
answering, and the fault controls of the virtual card. The driver names the reader and the
command in a DeviceError subclass, in bounded time."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcim_hil.drivers.errors import CardError, CardRemoved, CardTimeout, DeviceTimeout
from mcim_hil.drivers.uicc import Uicc
from mcim_hil.drivers.uicc_transport import PcscTransport
from mcim_hil.emulators.pcscd import SlotClaim, claim_free_slot
from mcim_hil.emulators.vuicc import VirtualUicc, create_card_file

ICCID = "8988211000000123456"


@pytest.fixture(scope="module")
def slot() -> Iterator[SlotClaim]:
    claim = claim_free_slot()
    yield claim
    claim.release()


@pytest.fixture()
def vuicc(slot: SlotClaim, tmp_path: Path) -> Iterator[VirtualUicc]:
    state = tmp_path / "card.json"
    create_card_file(state, iccid=ICCID, imsi="001010123456789", k=os.urandom(16),
                     opc=os.urandom(16), adm1=b"53046284")
    card = VirtualUicc(state, slot.slot.port, reader=slot.slot.reader)
    card.start()
    yield card
    card.stop()


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


def test_a_card_that_stops_answering_times_out_naming_reader_and_command(
        vuicc: VirtualUicc) -> None:
    uicc = Uicc(PcscTransport.open(vuicc.reader, timeout=1.0))
    try:
        assert uicc.read_iccid() == ICCID
        os.kill(vuicc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(CardTimeout) as timeout:
                _bounded(20, lambda: uicc.select("3F00"))
        finally:
            os.kill(vuicc.pid, signal.SIGCONT)
        error = timeout.value
        assert isinstance(error, DeviceTimeout) and isinstance(error, CardError)
        assert error.device == vuicc.reader and error.command == "SELECT 3F00"
        assert "1 s" in str(error) and "SCardTransmit" in str(error)
        # given up until reconnect(): never a second command into a wedged exchange
        with pytest.raises(CardError, match="given up"):
            uicc.select("3F00")
        _bounded(20, uicc.reconnect)
        assert uicc.read_iccid() == ICCID
    finally:
        uicc.close()


def test_a_chosen_command_answered_with_an_error_status_word(vuicc: VirtualUicc) -> None:
    uicc = Uicc(PcscTransport.open(vuicc.reader, timeout=5.0))
    try:
        vuicc.fail_command(0xB0, 0x6581, skip=1)  # the second READ BINARY: memory problem
        assert uicc.read_iccid() == ICCID
        with pytest.raises(CardError) as failure:
            uicc.read_iccid()
        assert failure.value.sw == 0x6581 and failure.value.device == vuicc.reader
        assert uicc.read_iccid() == ICCID  # once only
    finally:
        uicc.close()


def test_a_silent_card_times_out_and_comes_back_when_reinserted(vuicc: VirtualUicc) -> None:
    uicc = Uicc(PcscTransport.open(vuicc.reader, timeout=1.0))
    try:
        vuicc.stay_silent(0xA4)
        with pytest.raises(CardTimeout) as timeout:
            _bounded(20, lambda: uicc.select("3F00"))
        assert timeout.value.command == "SELECT 3F00"
        vuicc.remove()
        vuicc.insert()
        _bounded(20, uicc.reconnect)
        assert uicc.read_iccid() == ICCID
    finally:
        uicc.close()


def test_a_removed_card_is_reported_removed(vuicc: VirtualUicc) -> None:
    uicc = Uicc(PcscTransport.open(vuicc.reader, timeout=5.0))
    try:
        assert uicc.read_iccid() == ICCID
        vuicc.remove()
        with pytest.raises(CardRemoved) as removed:
            _bounded(20, uicc.read_iccid)
        assert removed.value.device == vuicc.reader
        vuicc.insert()
        _bounded(20, uicc.reconnect)
        assert uicc.read_iccid() == ICCID
    finally:
        uicc.close()


def test_a_process_left_with_a_silent_card_still_exits(vuicc: VirtualUicc) -> None:
    import subprocess
    import sys

    script = (
        "from mcim_hil.drivers.errors import CardTimeout\n"
        "from mcim_hil.drivers.uicc import Uicc\n"
        "from mcim_hil.drivers.uicc_transport import PcscTransport\n"
        f"uicc = Uicc(PcscTransport.open({vuicc.reader!r}, timeout=1.0))\n"
        "try:\n"
        "    uicc.select('3F00')\n"
        "except CardTimeout as exc:\n"
        "    print('timeout:', exc.command)\n"
        "uicc.close()\n")
    vuicc.stay_silent(0xA4)
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    finally:
        vuicc.remove()
        vuicc.insert()
    assert done.returncode == 0, done.stderr[-500:]
    assert "timeout: SELECT 3F00" in done.stdout
