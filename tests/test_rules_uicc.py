"""The ADM and PIN guards of the UICC driver, each boundary pinned by its reason.

The guard's arithmetic (floor, tries left against the floor, blocked) through ScriptedTransport:
the script lists every APDU allowed to go out, so a guard that let a VERIFY with data through
fails on the spot. The same guard on the real stack (pcscd + vpcd) is in test_uicc.py.
"""

from __future__ import annotations

import pytest

from mcim_hil.drivers.errors import SafetyRefused
from mcim_hil.drivers.uicc import ADM1, PIN1, Uicc
from mcim_hil.drivers.uicc_files import EF_ICCID, EF_SIM_AUTH_KEY
from mcim_hil.drivers.uicc_transport import ScriptedTransport

ADM_KEY = b"53253116"
ADM_TRIES = ("0020000a00", "63c{}")  # VERIFY ADM1, no data: the tries left (TS 102 221 11.1.9)
ADM_VERIFY = ("0020000a08" + ADM_KEY.hex(), "9000")
PIN_TRIES = ("0020000100", "63c{}")
PIN_VERIFY = ("002000010831323334ffffffff", "9000")  # "1234" padded with FF (TS 102 221 9.5.1)


def tries(apdu: tuple[str, str], left: int) -> tuple[str, str]:
    return apdu[0], apdu[1].format(left)


def card(*script: tuple[str, str]) -> tuple[Uicc, ScriptedTransport]:
    stub = ScriptedTransport(list(script), name="scripted SJA2")
    return Uicc(stub), stub


@pytest.mark.parametrize("floor", [1, 0, -1])
def test_adm_guard_floor_cannot_be_lowered_below_two(floor: int) -> None:
    uicc, stub = card()  # nothing may go out, not even the tries query
    with pytest.raises(ValueError, match=r"^the ADM guard needs min_tries >= 2$"):
        uicc.verify_adm(ADM_KEY, min_tries=floor)
    assert stub.sent == []


def test_adm_verify_goes_out_when_exactly_the_floor_is_left() -> None:
    uicc, stub = card(tries(ADM_TRIES, 2), ADM_VERIFY)
    uicc.verify_adm(ADM_KEY)
    stub.assert_done()
    assert stub.sent_secret[-1]  # the key travels flagged secret


@pytest.mark.parametrize(("left", "why"), [(1, "a wrong key would block it for good"), (0, "it is blocked")])
def test_adm_guard_refuses_below_the_floor_and_sends_no_key(left: int, why: str) -> None:
    answer = "6983" if left == 0 else f"63c{left}"  # 6983: authentication method blocked
    uicc, stub = card((ADM_TRIES[0], answer))
    with pytest.raises(SafetyRefused) as refused:
        uicc.verify_adm(ADM_KEY)
    assert str(refused.value) == (f"scripted SJA2: VERIFY ADM1: refused: {left} tries left, "
                                  f"the harness needs at least 2 ({why})")
    assert stub.sent == [bytes.fromhex(ADM_TRIES[0])]


def test_adm_guard_with_a_higher_floor_says_too_few_tries() -> None:
    uicc, stub = card(tries(ADM_TRIES, 2))
    with pytest.raises(SafetyRefused, match=r"2 tries left, the harness needs at least 3 \(too few tries to risk\)"):
        uicc.verify_adm(ADM_KEY, min_tries=3)
    assert len(stub.sent) == 1


def test_adm_already_verified_sends_no_key() -> None:
    uicc, stub = card(("0020000a00", "9000"))
    uicc.verify_adm(ADM_KEY)
    stub.assert_done()


def test_adm_key_must_be_eight_bytes_and_nothing_is_sent() -> None:
    uicc, stub = card()
    with pytest.raises(ValueError, match="an ADM key is 8 bytes, got 4"):
        uicc.verify_adm(b"1234")
    assert stub.sent == []


@pytest.mark.parametrize("floor", [0, -1])
def test_pin_guard_floor_is_at_least_one(floor: int) -> None:
    uicc, stub = card()
    with pytest.raises(ValueError, match=r"^min_tries must be at least 1$"):
        uicc.verify_pin(b"1234", min_tries=floor)
    assert stub.sent == []


def test_pin_guard_keeps_the_last_try_by_default() -> None:
    uicc, stub = card(tries(PIN_TRIES, 1))
    with pytest.raises(SafetyRefused, match="refused: 1 tries left, the harness needs at least 2"):
        uicc.verify_pin(b"1234")
    assert len(stub.sent) == 1


def test_pin_last_try_spent_only_when_asked() -> None:
    uicc, stub = card(tries(PIN_TRIES, 1), PIN_VERIFY)
    uicc.verify_pin(b"1234", ref=PIN1, min_tries=1)
    stub.assert_done()
    assert stub.sent_secret[-1]


def test_guard_names_the_key_reference() -> None:
    uicc, _ = card(tries(ADM_TRIES, 1))
    with pytest.raises(SafetyRefused, match="VERIFY ADM1"):
        uicc.verify_adm(ADM_KEY, ref=ADM1)


# -- factory data: the ICCID is never rewritten (TS 102 221 13.2) ---------------------------------

def test_iccid_update_is_refused_and_nothing_is_sent() -> None:
    uicc, stub = card()  # not even the SELECT may go out
    with pytest.raises(SafetyRefused) as refused:
        uicc.update_ef_raw(EF_ICCID, bytes(10))
    assert str(refused.value) == "scripted SJA2: UPDATE BINARY MF/EF.ICCID: factory data is never rewritten"
    assert stub.sent == []


def test_a_writable_file_is_selected_then_updated_with_its_secret_flag() -> None:
    """The other side of the factory rule: a file that is not factory data is written, where it
    lives (SELECT by path from the MF, TS 102 221 11.1.1), and a key file's data goes out flagged."""
    key = bytes(range(33))
    fcp = "620c" "82024121" "83026f20" "80020021"  # transparent EF 6F20, 33 bytes
    uicc, stub = card(("00a4080404a5156f20", fcp + "9000"), ("00d6000021" + key.hex(), "9000"))
    uicc.update_ef_raw(EF_SIM_AUTH_KEY, key)
    stub.assert_done()
    assert stub.sent_secret == [False, True]
