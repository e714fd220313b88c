"""The AuC against the USIM-side check: SQN = SEQ || IND, Annex C freshness, resync."""

from __future__ import annotations

import json

import pytest

from mcim_hil.aka.auc import (
    AkaVerdict,
    AuC,
    HeSqnState,
    ResyncError,
    UsimSqnState,
    build_auts,
    open_auts,
    usim_check,
)
from mcim_hil.aka.milenage import Milenage, c2_sres, c3_kc

# TS 35.208 set 1
K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
RAND1 = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")


def sqn_of(av_autn: bytes, rand: bytes) -> int:
    ak = Milenage(K, OPC).f2345(rand)[3]
    return int.from_bytes(bytes(a ^ b for a, b in zip(av_autn[:6], ak)), "big")


def test_av_matches_ts35208_set1() -> None:
    sqn = 0xFF9BB4D0B607
    state = HeSqnState(seq=(sqn >> 5) - 1, ind=sqn & 31)
    av = AuC(K, OPC, amf=bytes.fromhex("b9b9"), sqn_state=state).generate_av(RAND1)
    # AUTN = SQN^AK || AMF || MAC-A, as printed in facts/3gpp.md for set 1
    assert av.autn.hex() == "55f328b43577b9b94a9ffac354dfafb3"
    assert av.xres.hex() == "a54211d5e3ba50bf"
    assert av.ck.hex() == "b40ba9a3c58b2a05bbf0d987b21bf8cb"
    assert av.ik.hex() == "f769bcd751044604127672711c6d3441"
    assert av.sqn == sqn
    assert (av.sres, av.kc) == (c2_sres(av.xres), c3_kc(av.ck, av.ik))


def test_seq_increments_and_ind_cycles() -> None:
    auc = AuC(K, OPC, seq_start=10, ind_bits=5)
    seen = []
    for _ in range(34):
        av = auc.generate_av()
        assert sqn_of(av.autn, av.rand) == av.sqn
        seen.append((av.sqn >> 5, av.sqn & 31))
    assert seen[0] == (11, 0)
    assert [s for s, _ in seen] == list(range(11, 45))
    assert [i for _, i in seen] == [n % 32 for n in range(34)]
    assert auc.sqn_state.to_dict() == {"seq": 44, "ind": 2, "ind_bits": 5}


def test_rand_is_random_when_not_given() -> None:
    auc = AuC(K, OPC)
    assert auc.generate_av().rand != auc.generate_av().rand


def test_usim_accepts_fresh_and_rejects_replay_then_resync() -> None:
    auc = AuC(K, OPC)
    card = UsimSqnState()
    m = Milenage(K, OPC)
    av = auc.generate_av()
    ok = usim_check(m, av.rand, av.autn, card)
    assert ok.verdict is AkaVerdict.SUCCESS
    assert (ok.res, ok.ck, ok.ik) == (av.xres, av.ck, av.ik)
    replay = usim_check(m, av.rand, av.autn, card)
    assert replay.verdict is AkaVerdict.SYNC_FAILURE and len(replay.auts) == 14
    assert open_auts(m, av.rand, replay.auts) == av.sqn  # SQN_MS is the highest accepted
    auc.resync(av.rand, replay.auts)  # HE already ahead: nothing to move
    assert auc.sqn_state.seq == 1
    av2 = auc.generate_av()
    assert usim_check(m, av2.rand, av2.autn, card).verdict is AkaVerdict.SUCCESS


def test_resync_moves_he_up_to_card() -> None:
    m = Milenage(K, OPC)
    card = UsimSqnState()
    # The card was used with another AuC up to SEQ 1000 in IND 0 (the slot our first AV
    # uses; Annex C judges each IND slot on its own, so other slots would accept SEQ 1).
    card.accept(1000 << 5)
    auc = AuC(K, OPC)
    av = auc.generate_av()
    out = usim_check(m, av.rand, av.autn, card)
    assert out.verdict is AkaVerdict.SYNC_FAILURE
    auc.resync(av.rand, out.auts)
    assert auc.sqn_state.seq == 1000
    av2 = auc.generate_av()
    assert av2.sqn >> 5 == 1001
    assert usim_check(m, av2.rand, av2.autn, card).verdict is AkaVerdict.SUCCESS


def test_resync_refuses_tampered_auts() -> None:
    m = Milenage(K, OPC)
    auc = AuC(K, OPC, seq_start=5)
    auts = bytearray(build_auts(m, RAND1, (900 << 5) | 1))
    auts[-1] ^= 0x01
    with pytest.raises(ResyncError, match="MAC-S mismatch"):
        auc.resync(RAND1, bytes(auts))
    assert auc.sqn_state.seq == 5
    other = Milenage(bytes(16), OPC)  # an AUTS from a card with another K
    with pytest.raises(ResyncError):
        auc.resync(RAND1, build_auts(other, RAND1, 900 << 5))
    assert auc.sqn_state.seq == 5


def test_mac_failure_leaves_card_state() -> None:
    m = Milenage(K, OPC)
    card = UsimSqnState()
    av = AuC(K, OPC).generate_av()
    bad = bytearray(av.autn)
    bad[10] ^= 0x80
    out = usim_check(m, av.rand, bytes(bad), card)
    assert out.verdict is AkaVerdict.MAC_FAILURE and out.res == b"" and out.auts == b""
    assert card.entries == [0] * 32


def test_annex_c_example_sequences() -> None:
    # TS 33.102 Annex C with a 5-bit IND: 32, 64, 33 accepted; 32, 96, 64 rejected at 64.
    card = UsimSqnState()
    for sqn in (32, 64, 33):
        assert card.is_fresh(sqn)
        card.accept(sqn)
    card = UsimSqnState()
    for sqn in (32, 96):
        assert card.is_fresh(sqn)
        card.accept(sqn)
    assert not card.is_fresh(64)


def test_wrap_protection_and_age_limit() -> None:
    card = UsimSqnState(delta=100)
    card.accept(10 << 5)
    assert card.is_fresh((110 << 5) | 1)
    assert not card.is_fresh((111 << 5) | 1)
    aged = UsimSqnState(check_age=True, age_limit=5)
    aged.accept(20 << 5)
    assert aged.is_fresh((16 << 5) | 3)
    assert not aged.is_fresh((15 << 5) | 3)


def test_skip_next_check_once() -> None:
    card = UsimSqnState(skip_next_check=True)
    card.accept(50 << 5)
    card.skip_next_check = True
    assert card.is_fresh(1 << 5)
    card.accept(1 << 5)
    assert not card.is_fresh(1 << 5)


def test_state_serialisable_without_secrets() -> None:
    auc = AuC(K, OPC, amf=b"\x80\x00", seq_start=41)
    auc.generate_av()
    data = json.loads(json.dumps(auc.to_dict()))
    text = json.dumps(data) + repr(auc) + repr(auc.generate_av(RAND1))
    for secret in (K.hex(), OPC.hex(), "a54211d5e3ba50bf", "b40ba9a3c58b2a05bbf0d987b21bf8cb"):
        assert secret not in text
    again = AuC.from_dict(data, k=K, opc=OPC)
    assert again.sqn_state == HeSqnState(seq=42, ind=1, ind_bits=5)
    assert again.generate_av(RAND1).sqn == (43 << 5) | 1
