"""Test-session set-up shared by every test module.

Test modules that run their own virtual card use fixed vpcd slots, named by environment
variables they read at import. Just before such a module is collected, its slots are claimed
(the same lock files the emulated bench uses) for the rest of the test session, so an emulated
bench started by another test never lands on them.
"""

from __future__ import annotations

import os

import pytest

from mcim_hil.emulators.pcscd import SlotClaim, claim_free_slot

# module -> (reader variable, port variable or None) for each slot it uses
_SLOTS: dict[str, list[tuple[str, str | None]]] = {
    "test_vuicc.py": [("VUICC_TEST_READER", "VUICC_TEST_PORT")],
    "test_uicc.py": [("MCIM_HIL_UICC_TEST_READER", "MCIM_HIL_UICC_TEST_PORT"),
                     ("MCIM_HIL_UICC_TEST_EMPTY_READER", None)],
    "test_modem.py": [("MCIM_HIL_MODEM_TEST_READER", "MCIM_HIL_MODEM_TEST_PORT")],
    "test_modem_emulator.py": [("MCIM_HIL_MODEM_TEST_READER", "MCIM_HIL_MODEM_TEST_PORT"),
                               ("MCIM_HIL_MODEM_TEST_EMPTY_READER", None)],
    "test_modem_quirks.py": [("MCIM_HIL_MODEM_TEST_READER", "MCIM_HIL_MODEM_TEST_PORT")],
    "test_vuicc_pysim_read.py": [("MCIM_HIL_MODEM_TEST_READER", "MCIM_HIL_MODEM_TEST_PORT")],
}
_CLAIMS: list[SlotClaim] = []
# Test sessions on one machine (CI beside a developer's run, xdist workers) queue for the 16
# slots rather than fail; an engineer's own setting wins.
os.environ.setdefault("MCIM_HIL_SLOT_WAIT_S", "600")


def pytest_collectstart(collector: pytest.Collector) -> None:
    path = getattr(collector, "path", None)
    for reader_var, port_var in _SLOTS.get(path.name if path else "", []):
        if reader_var in os.environ:  # an engineer chose the slot, or an earlier module claimed it
            continue
        claim = claim_free_slot()
        _CLAIMS.append(claim)
        os.environ[reader_var] = claim.slot.reader
        if port_var:
            os.environ[port_var] = str(claim.slot.port)
