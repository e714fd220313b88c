"""Property-based fuzzing of every parser (issue 9 section 3): whatever bytes come in, the parser
accepts them or rejects them with the project's own error type and a message; never another
exception, never a logged traceback. hypothesis runs a bounded, derandomized number of examples
(MCIM_HIL_FUZZ_EXAMPLES, default 150 per target), so the suite stays deterministic;
benchmarks/fuzz.py runs the same targets over >= 10^6 inputs. Each crash a fuzzer found is
pinned below as a regression test.
"""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_targets
from fuzz_targets import Crash, Target

TARGETS = {t.name: t for t in fuzz_targets.targets()}
EXAMPLES = int(os.environ.get("MCIM_HIL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _edit(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for pos, delete, insert in edits:
        at = pos % (len(data) + 1)
        data[at:at + delete] = insert
    return bytes(data)


def inputs(target: Target) -> st.SearchStrategy[bytes]:
    """Valid seeds with a few edits (most of the parser is reached), or any bytes at all."""
    edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 16),
                               st.one_of(st.binary(max_size=8), st.sampled_from([b"\xc2\xb2", b"\x81", b"\r\n", b'"']))),
                     min_size=1, max_size=4)
    return st.one_of(st.builds(_edit, st.sampled_from(target.seeds), edits),
                     st.binary(max_size=target.max_size))


def check(target: Target, data: bytes) -> None:
    target.check(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_input_is_accepted_or_rejected_with_the_projects_own_error(name: str) -> None:
    target = TARGETS[name]

    @FUZZ
    @given(inputs(target))
    def fuzz(data: bytes) -> None:
        check(target, data)

    fuzz()


def test_the_seeds_reach_past_the_first_check() -> None:
    # a fuzzer whose seeds are all refused never gets past the first check of its parser;
    # the modem driver's seeds include error answers (+CME ERROR, denied) on purpose
    for target in TARGETS.values():
        outcomes = [target.check(seed) for seed in target.seeds]
        assert outcomes.count("accepted") >= len(outcomes) * 3 // 4, (target.name, outcomes)


def test_a_crash_is_reported_as_one() -> None:
    def boom(data: bytes) -> None:
        raise KeyError(data)

    with pytest.raises(Crash, match="t: KeyError"):
        Target("t", boom, (ValueError,)).check(b"x")
    with pytest.raises(Crash, match="without a message"):
        Target("t", lambda d: (_ for _ in ()).throw(ValueError("")), (ValueError,)).check(b"x")


# -- crashes the fuzzers found, fixed ------------------------------------------------------------

@pytest.mark.parametrize("data", [b"\x34\x81", b"\x62\x82\x01", b"\x67\x81"], ids=["81", "82-short", "tag-67-81"])
def test_a_tlv_whose_length_field_is_cut_short_is_a_codec_error(data: bytes) -> None:
    from mcim_hil.drivers.uicc_files import CodecError, decode_fcp, iter_tlv
    with pytest.raises(CodecError, match="truncated length field"):
        list(iter_tlv(data))
    with pytest.raises(CodecError):
        decode_fcp(data)


@pytest.mark.parametrize("encoding", ["uvf-8", "utf--18", "utf-16"])
def test_an_m2msimmobj_declaring_an_unreadable_encoding_is_refused(encoding: str) -> None:
    from mcim_hil.network.m2msimmobj import M2MSIMMobjError
    doc = fuzz_targets._m2msimmobj_seed().replace(b"encoding='utf-8'", f"encoding='{encoding}'".encode(), 1)
    assert doc != fuzz_targets._m2msimmobj_seed()
    with pytest.raises(M2MSIMMobjError, match="encoding|not well-formed"):
        fuzz_targets.run_m2msimmobj(doc)


# -- the modem emulator's own parameters (issue 9: int('²') used to raise) ---------------------

def test_the_modem_emulator_answers_a_superscript_parameter_with_cme_error_50(caplog) -> None:
    emu, written = fuzz_targets.new_emulated_modem()
    with caplog.at_level(logging.ERROR):
        emu._execute(b"AT+CMEE=1")
        emu._execute("AT+CGSN=\u00b2".encode("latin-1"))
        emu._execute("AT+CRSM=176,28423,\u00b9,0,9".encode("latin-1"))
    assert b"".join(written).split(b"\r\n").count(b"+CME ERROR: 50") == 2
    assert not caplog.records                  # no traceback logged
