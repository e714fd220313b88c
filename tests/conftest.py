"""Test-session set-up shared by every test module.

Test modules that run their own virtual card use fixed vpcd slots, named by environment
variables. Here those slots are claimed (the same lock files the emulated bench uses) for the
whole test session, so an emulated bench started by another test never lands on them.
"""

from __future__ import annotations

import os

from mcim_hil.emulators.pcscd import SlotClaim, claim_free_slot

_CLAIMS: list[SlotClaim] = []


def _claim(reader_var: str, port_var: str | None = None) -> None:
    if reader_var in os.environ:  # an engineer chose the slot
        return
    claim = claim_free_slot()
    _CLAIMS.append(claim)
    os.environ[reader_var] = claim.slot.reader
    if port_var:
        os.environ[port_var] = str(claim.slot.port)


# tests/test_vuicc.py, tests/test_uicc.py, tests/test_modem*.py
_claim("VUICC_TEST_READER", "VUICC_TEST_PORT")
_claim("MCIM_HIL_UICC_TEST_READER", "MCIM_HIL_UICC_TEST_PORT")
_claim("MCIM_HIL_UICC_TEST_EMPTY_READER")
_claim("MCIM_HIL_MODEM_TEST_READER", "MCIM_HIL_MODEM_TEST_PORT")
_claim("MCIM_HIL_MODEM_TEST_EMPTY_READER")
