"""UMTS AKA around Milenage: the AuC (network side) and the USIM check (card side).

TS 33.102 6.3 (AV generation, USIM verification, resynchronisation) and Annex C
(SQN = SEQ || IND, the USIM's SEQ_MS array). The AuC serves the network; ``usim_check``
and ``UsimSqnState`` serve the virtual UICC, so both ends run the same clauses and
each can be checked against the other.

Secrets (K, OPc, CK, IK, XRES) never appear in a repr, a message or ``to_dict``.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any

from mcim_hil.aka.milenage import DEFAULT_C, DEFAULT_R, Milenage, c2_sres, c3_kc

__all__ = [
    "AMF_RESYNC",
    "AkaError",
    "AkaVerdict",
    "AuC",
    "AuthenticationVector",
    "HeSqnState",
    "ResyncError",
    "UsimAuthOutcome",
    "UsimSqnState",
    "build_autn",
    "build_auts",
    "open_auts",
    "usim_check",
]

SQN_BITS = 48  # TS 33.102 6.3.2: SQN is 48 bits
SQN_MASK = (1 << SQN_BITS) - 1
AMF_RESYNC = b"\x00\x00"  # TS 33.102 6.3.3: dummy AMF for MAC-S in AUTS
DEFAULT_IND_BITS = 5  # TS 33.102 C.3.2 suggests a 5-bit IND
DEFAULT_DELTA = 1 << 28  # TS 33.102 C.2.1 wrap-around limit suggested for SEQ
AUTN_LEN = 16  # SQN^AK(6) || AMF(2) || MAC(8)
AUTS_LEN = 14  # SQN_MS^AK*(6) || MAC-S(8)


class AkaError(Exception):
    """An AKA message could not be built or checked."""


class ResyncError(AkaError):
    """The AuC refused an AUTS (MAC-S mismatch, TS 33.102 6.3.5)."""


def _sqn_bytes(sqn: int) -> bytes:
    if not 0 <= sqn <= SQN_MASK:
        raise AkaError(f"SQN {sqn:#x} does not fit 48 bits")
    return sqn.to_bytes(6, "big")


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _check_rand(rand: bytes) -> bytes:
    if len(rand) != 16:
        raise AkaError(f"RAND must be 16 bytes, got {len(rand)}")
    return bytes(rand)


@dataclass(frozen=True, repr=False)
class AuthenticationVector:
    """A UMTS quintet (TS 33.102 6.3.2). ``sqn`` is the SQN it carries, for the record."""

    rand: bytes
    xres: bytes
    ck: bytes
    ik: bytes
    autn: bytes
    sqn: int = 0

    def __repr__(self) -> str:
        # XRES, CK and IK are session secrets; RAND and AUTN go over the air anyway.
        return (f"AuthenticationVector(rand={self.rand.hex()}, autn={self.autn.hex()}, "
                f"sqn={self.sqn:#x}, xres/ck/ik=<hidden>)")

    @property
    def sres(self) -> bytes:
        """GSM SRES from XRES (c2, TS 33.102 6.8.1.2)."""
        return c2_sres(self.xres)

    @property
    def kc(self) -> bytes:
        """GSM Kc from CK and IK (c3, TS 33.102 6.8.1.2)."""
        return c3_kc(self.ck, self.ik)


def build_autn(milenage: Milenage, rand: bytes, sqn: int, amf: bytes) -> bytes:
    """AUTN = (SQN xor AK) || AMF || MAC-A (TS 33.102 6.3.2)."""
    rand = _check_rand(rand)
    if len(amf) != 2:
        raise AkaError(f"AMF must be 2 bytes, got {len(amf)}")
    sqn_b = _sqn_bytes(sqn)
    _res, _ck, _ik, ak = milenage.f2345(rand)
    return _xor(sqn_b, ak) + bytes(amf) + milenage.f1(rand, sqn_b, amf)


def build_auts(milenage: Milenage, rand: bytes, sqn_ms: int) -> bytes:
    """AUTS = (SQN_MS xor AK*) || MAC-S, MAC-S over AMF 0000 (TS 33.102 6.3.3)."""
    rand = _check_rand(rand)
    sqn_b = _sqn_bytes(sqn_ms)
    return _xor(sqn_b, milenage.f5star(rand)) + milenage.f1star(rand, sqn_b, AMF_RESYNC)


def open_auts(milenage: Milenage, rand: bytes, auts: bytes) -> int:
    """SQN_MS from an AUTS after checking its MAC-S; ResyncError if it does not match."""
    rand = _check_rand(rand)
    if len(auts) != AUTS_LEN:
        raise ResyncError(f"AUTS must be {AUTS_LEN} bytes, got {len(auts)}")
    sqn_b = _xor(auts[:6], milenage.f5star(rand))
    if milenage.f1star(rand, sqn_b, AMF_RESYNC) != auts[6:]:
        raise ResyncError(f"AUTS for RAND {rand.hex()}: MAC-S mismatch (wrong key or tampered AUTS)")
    return int.from_bytes(sqn_b, "big")


# --- network side -----------------------------------------------------------------


@dataclass
class HeSqnState:
    """The AuC's counter for one subscriber: SEQ_HE and the next IND (TS 33.102 C.1.1, C.3.2).

    Each vector takes SEQ_HE + 1 and the next IND in turn, so consecutive vectors land
    in different slots of the USIM's array and may be used out of order.
    """

    seq: int = 0
    ind: int = 0
    ind_bits: int = DEFAULT_IND_BITS

    def __post_init__(self) -> None:
        if not 0 <= self.ind_bits <= 16:
            raise AkaError(f"IND length {self.ind_bits} bits is out of 0..16")
        if not 0 <= self.ind < (1 << self.ind_bits):
            raise AkaError(f"IND {self.ind} does not fit {self.ind_bits} bits")
        if not 0 <= self.seq < (1 << (SQN_BITS - self.ind_bits)):
            raise AkaError(f"SEQ {self.seq} does not fit {SQN_BITS - self.ind_bits} bits")

    def compose(self, seq: int, ind: int) -> int:
        return (seq << self.ind_bits) | ind

    def split(self, sqn: int) -> tuple[int, int]:
        """(SEQ, IND) of an SQN."""
        return sqn >> self.ind_bits, sqn & ((1 << self.ind_bits) - 1)

    def next_sqn(self) -> int:
        """Take the next SQN: SEQ_HE + 1 with the current IND, then move IND on."""
        seq = self.seq + 1
        sqn = self.compose(seq, self.ind)
        if sqn > SQN_MASK:
            raise AkaError("SEQ_HE wrapped around 48 bits")
        self.seq = seq
        self.ind = (self.ind + 1) % (1 << self.ind_bits)
        return sqn

    def to_dict(self) -> dict[str, int]:
        return {"seq": self.seq, "ind": self.ind, "ind_bits": self.ind_bits}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeSqnState:
        return cls(seq=int(data["seq"]), ind=int(data["ind"]),
                   ind_bits=int(data.get("ind_bits", DEFAULT_IND_BITS)))


class AuC:
    """Authentication centre for one subscriber (TS 33.102 6.3.2, 6.3.5, Annex C).

    ``seq_start`` is SEQ_HE before the first vector (the first vector carries
    SEQ = seq_start + 1). ``delta`` is the USIM's wrap-around limit Δ in SEQ units,
    used to decide on resync whether SEQ_HE may stay as it is.
    """

    def __init__(self, k: bytes, opc: bytes, *, amf: bytes = b"\x80\x00",
                 seq_start: int = 0, ind_bits: int = DEFAULT_IND_BITS,
                 sqn_state: HeSqnState | None = None,
                 r: tuple[int, ...] = DEFAULT_R, c: tuple[bytes, ...] = DEFAULT_C,
                 delta: int = DEFAULT_DELTA) -> None:
        if len(amf) != 2:
            raise AkaError(f"AMF must be 2 bytes, got {len(amf)}")
        self._milenage = Milenage(k, opc, r, c)
        self.amf = bytes(amf)
        self.delta = delta
        self.sqn_state = sqn_state if sqn_state is not None else HeSqnState(
            seq=seq_start, ind=0, ind_bits=ind_bits)

    def __repr__(self) -> str:
        return f"AuC(k=<hidden>, opc=<hidden>, amf={self.amf.hex()}, sqn_state={self.sqn_state})"

    @property
    def milenage(self) -> Milenage:
        return self._milenage

    def generate_av(self, rand: bytes | None = None) -> AuthenticationVector:
        """A fresh quintet; takes the next SQN (TS 33.102 6.3.2)."""
        rand = _check_rand(rand) if rand is not None else os.urandom(16)
        sqn = self.sqn_state.next_sqn()
        res, ck, ik, _ak = self._milenage.f2345(rand)
        autn = build_autn(self._milenage, rand, sqn, self.amf)
        return AuthenticationVector(rand=rand, xres=res, ck=ck, ik=ik, autn=autn, sqn=sqn)

    def resync(self, rand: bytes, auts: bytes) -> None:
        """Handle a synchronisation failure (TS 33.102 6.3.5, C.3.4).

        Checks MAC-S (ResyncError on mismatch), then if the next SEQ_HE would not be
        accepted by the USIM (not above SEQ_MS, or beyond Δ) sets SEQ_HE := SEQ_MS.
        """
        sqn_ms = open_auts(self._milenage, rand, auts)
        seq_ms, _ind_ms = self.sqn_state.split(sqn_ms)
        next_seq = self.sqn_state.seq + 1
        if not (seq_ms < next_seq and next_seq - seq_ms <= self.delta):
            self.sqn_state.seq = seq_ms

    def to_dict(self) -> dict[str, Any]:
        """The AuC's non-secret state (AMF, SQN state, Milenage r/c) for storage; K and OPc are not in it."""
        return {
            "amf": self.amf.hex(),
            "delta": self.delta,
            "sqn": self.sqn_state.to_dict(),
            "r": list(self._milenage.r),
            "c": [x.hex() for x in self._milenage.c],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, k: bytes, opc: bytes) -> AuC:
        """Rebuild an AuC from ``to_dict`` output and the subscriber's K and OPc."""
        return cls(k, opc, amf=bytes.fromhex(data["amf"]),
                   sqn_state=HeSqnState.from_dict(data["sqn"]),
                   r=tuple(int(x) for x in data.get("r", DEFAULT_R)),
                   c=tuple(bytes.fromhex(x) for x in data["c"]) if "c" in data else DEFAULT_C,
                   delta=int(data.get("delta", DEFAULT_DELTA)))


# --- card side ----------------------------------------------------------------------


@dataclass
class UsimSqnState:
    """The USIM's freshness state (TS 33.102 C.2): the last accepted SQN for each IND.

    ``entries[i]`` is the full SQN (SEQ || IND) last accepted with IND i, 0 if none.
    ``delta`` (wrap protection, C.2.1) and ``age_limit`` (C.2.2 option L) are in SEQ
    units. ``skip_next_check`` accepts the next SQN unchecked once (as a freshly
    programmed sysmocom card does when so flagged), then clears itself.
    """

    ind_bits: int = DEFAULT_IND_BITS
    entries: list[int] = field(default_factory=list)
    check_sqn: bool = True
    check_delta: bool = True
    delta: int = DEFAULT_DELTA
    check_age: bool = False
    age_limit: int = DEFAULT_DELTA
    skip_next_check: bool = False

    def __post_init__(self) -> None:
        size = 1 << self.ind_bits
        if not self.entries:
            self.entries = [0] * size
        elif len(self.entries) < size:
            raise AkaError(f"SQN array has {len(self.entries)} entries, IND of "
                           f"{self.ind_bits} bits needs {size}")

    def split(self, sqn: int) -> tuple[int, int]:
        return sqn >> self.ind_bits, sqn & ((1 << self.ind_bits) - 1)

    def highest_sqn(self) -> int:
        """SQN_MS: the highest SQN accepted so far (TS 33.102 C.2.2), sent in AUTS."""
        size = 1 << self.ind_bits
        return max(self.entries[:size], key=lambda sqn: self.split(sqn)[0])

    def is_fresh(self, sqn: int) -> bool:
        """Annex C.2.2 verdict on a received SQN, without changing the state."""
        if self.skip_next_check or not self.check_sqn:
            return True
        seq, ind = self.split(sqn)
        seq_ms_highest = self.split(self.highest_sqn())[0]
        if self.check_delta and seq - seq_ms_highest > self.delta:
            return False  # C.2.1 wrap-around protection
        if self.check_age and seq_ms_highest - seq >= self.age_limit:
            return False  # C.2.2 optional age limit L
        return seq > self.split(self.entries[ind])[0]

    def accept(self, sqn: int) -> None:
        """Record an accepted SQN: SEQ_MS(IND) := SEQ."""
        _seq, ind = self.split(sqn)
        self.entries[ind] = sqn
        self.skip_next_check = False


class AkaVerdict(enum.Enum):
    SUCCESS = "success"
    MAC_FAILURE = "mac_failure"  # TS 31.102 7.3: SW 9862
    SYNC_FAILURE = "sync_failure"  # TS 31.102 7.1.2: 'DC' AUTS


@dataclass(frozen=True, repr=False)
class UsimAuthOutcome:
    """What the USIM answers to an AUTHENTICATE: RES/CK/IK on success, AUTS on sync failure."""

    verdict: AkaVerdict
    res: bytes = b""
    ck: bytes = b""
    ik: bytes = b""
    auts: bytes = b""
    sqn: int | None = None  # the SQN recovered from AUTN when the MAC matched

    def __repr__(self) -> str:
        return f"UsimAuthOutcome({self.verdict.value}, sqn={self.sqn})"


def usim_check(milenage: Milenage, rand: bytes, autn: bytes,
               sqn_state: UsimSqnState) -> UsimAuthOutcome:
    """Verify AUTN as the USIM does (TS 33.102 6.3.3): MAC first, then SQN freshness.

    On success ``sqn_state`` takes the new SQN; on any failure it is left unchanged.
    """
    rand = _check_rand(rand)
    if len(autn) != AUTN_LEN:
        raise AkaError(f"AUTN must be {AUTN_LEN} bytes, got {len(autn)}")
    res, ck, ik, ak = milenage.f2345(rand)
    sqn_b = _xor(autn[:6], ak)
    amf = autn[6:8]
    if milenage.f1(rand, sqn_b, amf) != autn[8:]:
        return UsimAuthOutcome(AkaVerdict.MAC_FAILURE)
    sqn = int.from_bytes(sqn_b, "big")
    if not sqn_state.is_fresh(sqn):
        auts = build_auts(milenage, rand, sqn_state.highest_sqn())
        return UsimAuthOutcome(AkaVerdict.SYNC_FAILURE, auts=auts, sqn=sqn)
    sqn_state.accept(sqn)
    return UsimAuthOutcome(AkaVerdict.SUCCESS, res=res, ck=ck, ik=ik, sqn=sqn)
