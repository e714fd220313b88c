"""Milenage pinned by every field of every TS 35.208 test set in the shared facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcim_hil.aka.milenage import DEFAULT_C, DEFAULT_R, Milenage, c2_sres, c3_kc, opc_from_op

FACTS = Path(__file__).resolve().parents[1].parent / "shared" / "facts" / "milenage_ts35208.json"
if not FACTS.exists():  # team checkout vs. a lone clone
    FACTS = Path("/work/shared/facts/milenage_ts35208.json")

SETS = json.loads(FACTS.read_text())["sets"]


def h(x: str) -> bytes:
    return bytes.fromhex(x)


@pytest.mark.parametrize("ts", SETS, ids=lambda s: f"set{s['test_set']}")
def test_ts35208_set(ts: dict[str, str]) -> None:
    k, rand, sqn, amf = h(ts["K"]), h(ts["RAND"]), h(ts["SQN"]), h(ts["AMF"])
    assert opc_from_op(k, h(ts["OP"])).hex() == ts["OPc"]
    m = Milenage(k, h(ts["OPc"]))
    assert m.f1(rand, sqn, amf).hex() == ts["f1_MAC_A"]
    assert m.f1star(rand, sqn, amf).hex() == ts["f1star_MAC_S"]
    res, ck, ik, ak = m.f2345(rand)
    assert res.hex() == ts["f2_RES"]
    assert ck.hex() == ts["f3_CK"]
    assert ik.hex() == ts["f4_IK"]
    assert ak.hex() == ts["f5_AK"]
    assert m.f5star(rand).hex() == ts["f5star_AK_resync"]


def test_all_sets_loaded() -> None:
    # The facts file promises sets 1, 3, 4, 5, 6; a silently shorter file must fail here.
    assert [s["test_set"] for s in SETS] == [1, 3, 4, 5, 6]


def test_gsm_conversion_set1() -> None:
    # TS 35.208 set 1 / TS 55.205: SRES 46f8416a, Kc eae4be823af9a08b (TS 33.102 6.8.1.2 c2, c3).
    ts = SETS[0]
    res, ck, ik, _ak = Milenage(h(ts["K"]), h(ts["OPc"])).f2345(h(ts["RAND"]))
    assert c2_sres(res).hex() == "46f8416a"
    assert c3_kc(ck, ik).hex() == "eae4be823af9a08b"


def test_c2_short_res_is_zero_padded() -> None:
    assert c2_sres(bytes.fromhex("01020304")) == bytes.fromhex("01020304")
    assert c2_sres(bytes.fromhex("0102030400000001")) == bytes.fromhex("01020305")


def test_operator_constants_change_outputs() -> None:
    ts = SETS[0]
    k, opc, rand = h(ts["K"]), h(ts["OPc"]), h(ts["RAND"])
    assert Milenage(k, opc, DEFAULT_R, DEFAULT_C).f2345(rand) == Milenage(k, opc).f2345(rand)
    other_c = (DEFAULT_C[0], DEFAULT_C[1], bytes(15) + b"\x03", DEFAULT_C[3], DEFAULT_C[4])
    res, ck, ik, ak = Milenage(k, opc, c=other_c).f2345(rand)
    assert (res.hex(), ak.hex(), ik.hex()) == (ts["f2_RES"], ts["f5_AK"], ts["f4_IK"])
    assert ck.hex() != ts["f3_CK"]


def test_repr_and_errors_hide_keys() -> None:
    ts = SETS[0]
    m = Milenage(h(ts["K"]), h(ts["OPc"]))
    text = repr(m) + str(m) + repr(Milenage)
    assert ts["K"] not in text and ts["OPc"] not in text and "hidden" in repr(m)
    with pytest.raises(ValueError) as err:
        Milenage(h(ts["K"])[:15], h(ts["OPc"]))
    assert "K must be 16 bytes" in str(err.value)
    assert h(ts["K"])[:15].hex() not in str(err.value)
