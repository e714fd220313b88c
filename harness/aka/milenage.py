"""MILENAGE, the 3GPP example algorithm set f1, f1*, f2, f3, f4, f5, f5* (TS 35.206).

Shared by the network (the AuC) and the virtual UICC, and pinned by the TS 35.208
conformance sets. Also the GSM conversion functions c2 and c3 (TS 33.102 6.8.1.2).

K and OPc are secrets: they are kept in private slots and never shown by repr.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "DEFAULT_C",
    "DEFAULT_R",
    "Milenage",
    "c2_sres",
    "c3_kc",
    "opc_from_op",
]

# TS 35.206 4.1: rotation amounts r1..r5 in bits and constants c1..c5 (128-bit).
DEFAULT_R: tuple[int, ...] = (64, 0, 32, 64, 96)
DEFAULT_C: tuple[bytes, ...] = (
    bytes(16),
    bytes(15) + b"\x01",
    bytes(15) + b"\x02",
    bytes(15) + b"\x04",
    bytes(15) + b"\x08",
)

_BLOCK = 16


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _rot(block: bytes, bits: int) -> bytes:
    """Cyclic left rotation of a 128-bit block by ``bits`` (TS 35.206 4.1 rot)."""
    bits %= 128
    if bits == 0:
        return block
    value = int.from_bytes(block, "big")
    value = ((value << bits) | (value >> (128 - bits))) & ((1 << 128) - 1)
    return value.to_bytes(_BLOCK, "big")


def _check_len(name: str, value: bytes, length: int) -> None:
    # Lengths only: the value of a secret never appears in the message.
    if not isinstance(value, (bytes, bytearray)) or len(value) != length:
        got = len(value) if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise ValueError(f"Milenage: {name} must be {length} bytes, got {got}")


class _Aes128:
    """E_K, the 128-bit block cipher of TS 35.206 (AES-128, one block, ECB)."""

    __slots__ = ("_encryptor",)

    def __init__(self, key: bytes) -> None:
        self._encryptor = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()

    def __call__(self, block: bytes) -> bytes:
        return self._encryptor.update(block)

    def __repr__(self) -> str:
        return "_Aes128(<key hidden>)"


def opc_from_op(k: bytes, op: bytes) -> bytes:
    """OPc = OP xor E_K(OP) (TS 35.206 4.1)."""
    _check_len("K", k, 16)
    _check_len("OP", op, 16)
    return _xor(op, _Aes128(k)(bytes(op)))


class Milenage:
    """The MILENAGE functions for one subscriber key K and operator variant OPc.

    ``r`` are the rotations r1..r5 in bits, ``c`` the constants c1..c5 (TS 35.206 4.1);
    an operator may choose others (sysmocom cards keep them in EF.MILENAGE_CFG).
    """

    __slots__ = ("_aes", "_opc", "_r", "_c")

    def __init__(self, k: bytes, opc: bytes, r: tuple[int, ...] = DEFAULT_R,
                 c: tuple[bytes, ...] = DEFAULT_C) -> None:
        _check_len("K", k, 16)
        _check_len("OPc", opc, 16)
        if len(r) != 5 or any(not 0 <= x < 128 for x in r):
            raise ValueError("Milenage: r must be five rotations in 0..127 bits")
        if len(c) != 5:
            raise ValueError("Milenage: c must be five 16-byte constants")
        for i, ci in enumerate(c, start=1):
            _check_len(f"c{i}", ci, 16)
        self._aes = _Aes128(k)
        self._opc = bytes(opc)
        self._r = tuple(r)
        self._c = tuple(bytes(x) for x in c)

    def __repr__(self) -> str:
        return f"Milenage(k=<hidden>, opc=<hidden>, r={self._r})"

    @property
    def r(self) -> tuple[int, ...]:
        return self._r

    @property
    def c(self) -> tuple[bytes, ...]:
        return self._c

    def _temp(self, rand: bytes) -> bytes:
        # TEMP = E_K(RAND xor OPc) (TS 35.206 4.1)
        _check_len("RAND", rand, 16)
        return self._aes(_xor(rand, self._opc))

    def _out1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        _check_len("SQN", sqn, 6)
        _check_len("AMF", amf, 2)
        temp = self._temp(rand)
        in1 = bytes(sqn) + bytes(amf) + bytes(sqn) + bytes(amf)
        x = _xor(_xor(temp, _rot(_xor(in1, self._opc), self._r[0])), self._c[0])
        return _xor(self._aes(x), self._opc)

    def _out(self, temp: bytes, i: int) -> bytes:
        # OUTi = E_K(rot(TEMP xor OPc, ri) xor ci) xor OPc, i = 2..5 (index 1..4 here)
        x = _xor(_rot(_xor(temp, self._opc), self._r[i]), self._c[i])
        return _xor(self._aes(x), self._opc)

    def f1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-A, the network authentication code (64 bits)."""
        return self._out1(rand, sqn, amf)[:8]

    def f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-S, the resynchronisation authentication code (64 bits)."""
        return self._out1(rand, sqn, amf)[8:]

    def f2345(self, rand: bytes) -> tuple[bytes, bytes, bytes, bytes]:
        """(RES, CK, IK, AK): f2 64 bits, f3 and f4 128 bits, f5 48 bits."""
        temp = self._temp(rand)
        out2 = self._out(temp, 1)
        ck = self._out(temp, 2)
        ik = self._out(temp, 3)
        return out2[8:16], ck, ik, out2[:6]

    def f5star(self, rand: bytes) -> bytes:
        """AK*, the anonymity key for resynchronisation (48 bits)."""
        return self._out(self._temp(rand), 4)[:6]


def c2_sres(res: bytes) -> bytes:
    """SRES from RES (TS 33.102 6.8.1.2 c2): RES padded to 128 bits, its four 32-bit words XORed."""
    if not 4 <= len(res) <= 16:
        raise ValueError(f"c2: RES must be 4..16 bytes, got {len(res)}")
    padded = bytes(res) + bytes(16 - len(res))
    out = bytes(4)
    for i in range(0, 16, 4):
        out = _xor(out, padded[i:i + 4])
    return out


def c3_kc(ck: bytes, ik: bytes) -> bytes:
    """Kc from CK and IK (TS 33.102 6.8.1.2 c3): CK1 xor CK2 xor IK1 xor IK2."""
    _check_len("CK", ck, 16)
    _check_len("IK", ik, 16)
    return _xor(_xor(ck[:8], ck[8:]), _xor(ik[:8], ik[8:]))
