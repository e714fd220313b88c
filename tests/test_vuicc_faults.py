"""The virtual card's fault control lines: a bad line is refused with its reason (the card
process answers 'nak' and goes on serving), never an exception that ends the card."""

from __future__ import annotations

import pytest

from mcim_hil.emulators.vuicc_faults import ANSWER, FAIL, SILENT, FaultCommandError, FaultPlan, control_line

SELECT = bytes.fromhex("00a40004023f00")
UPDATE = bytes.fromhex("00d6000001ff")


@pytest.mark.parametrize("line, reason", [
    (b'{"op": "fail", "ins": 214, "sw": 1e400}', "sw must be a whole number"),      # JSON 1e400 is inf
    (b'{"op": "fail", "ins": 214, "sw": "6f00"}', "sw must be a whole number"),
    (b'{"op": "fail", "ins": 214, "sw": 65536}', "sw must be a whole number"),      # not two bytes
    (b'{"op": "fail", "ins": 214, "sw": 36864.5}', "sw must be a whole number"),
    (b'{"op": "silent", "ins": 300}', "ins must be a whole number from 0 to 255"),
    (b'{"op": "silent", "ins": true}', "ins must be a whole number"),
    (b'{"op": "fail", "times": 0}', "times must be a whole number from 1"),
    (b'{"op": "fail", "skip": -1}', "skip must be a whole number from 0"),
    (b'[1, 2]', "not a JSON object with an op"),
    (b'{"op": "explode"}', "unknown op 'explode'"),
])
def test_a_bad_control_line_is_refused_with_its_reason_and_arms_nothing(line: bytes, reason: str) -> None:
    plan = FaultPlan()
    with pytest.raises(FaultCommandError, match=reason):
        plan.apply(line)
    assert plan.on_command(UPDATE) == (ANSWER, 0)


def test_a_good_line_fails_the_chosen_command_after_the_skipped_ones_then_lets_it_through() -> None:
    plan = FaultPlan()
    assert plan.apply(control_line(FAIL, ins=0xD6, sw=0x6581, skip=1, times=1)) == FAIL
    assert plan.on_command(SELECT) == (ANSWER, 0)          # another INS
    assert plan.on_command(UPDATE) == (ANSWER, 0)          # skipped
    assert plan.on_command(UPDATE) == (FAIL, 0x6581)
    assert plan.on_command(UPDATE) == (ANSWER, 0)          # used up
    plan.apply(control_line(SILENT, ins=0xA4))
    assert plan.on_command(SELECT)[0] == SILENT
