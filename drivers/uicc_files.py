"""UICC/USIM file codecs and the one declaration of every card file the harness touches.

Each file is declared once (name, FID, parent DF, structure, size, encode/decode); the
driver (uicc.py) and the sysmoISIM-SJA2 profile (sja2.py) look files up here. Test vectors
for every codec live in tests/test_uicc_codecs.py.

Specs: TS 102 221 (FCP, EF.ICCID, EF.DIR), TS 31.102 (EF.IMSI, EF.AD), sysmocom's SJA2
proprietary files (facts/sysmo.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class CodecError(ValueError):
    """File content (or a value to write) that does not fit its coding; the message says where."""


# --------------------------------------------------------------------------- BER-TLV

def iter_tlv(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (tag, value) of simple BER-TLV objects (1- or 2-byte tags, short/81/82 lengths).

    Stops at padding ('FF' or '00' where a tag would start), as records are padded.
    """
    i = 0
    while i < len(data):
        tag = data[i]
        if tag in (0x00, 0xFF):
            return
        i += 1
        if tag & 0x1F == 0x1F:  # ISO 7816-4 5.2.2.1: tag continues in the next byte
            if i >= len(data):
                raise CodecError("truncated BER-TLV tag")
            tag = (tag << 8) | data[i]
            i += 1
        if i >= len(data):
            raise CodecError(f"BER-TLV tag {tag:02X} has no length")
        length = data[i]
        i += 1
        if length in (0x81, 0x82):   # ISO 7816-4 5.2.2.2: 1 or 2 length bytes follow
            extra = length - 0x80
            if i + extra > len(data):
                raise CodecError(f"BER-TLV tag {tag:02X}: truncated length field")
            length = int.from_bytes(data[i:i + extra], "big")
            i += extra
        elif length > 0x82:
            raise CodecError(f"BER-TLV tag {tag:02X}: unsupported length byte {length:02X}")
        if i + length > len(data):
            raise CodecError(f"BER-TLV tag {tag:02X}: length {length} runs past the data")
        yield tag, data[i:i + length]
        i += length


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV object with a one-byte tag."""
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + length + value


# --------------------------------------------------------------------------- BCD

def _swap_bcd_decode(data: bytes) -> str:
    """Nibble-swapped BCD, low nibble first; stops at the first 'F' pad nibble."""
    digits = []
    for byte in data:
        for nibble in (byte & 0x0F, byte >> 4):
            if nibble == 0x0F:
                return "".join(digits)
            if nibble > 9:
                raise CodecError(f"BCD nibble {nibble:X} is not a digit")
            digits.append(str(nibble))
    return "".join(digits)


def _swap_bcd_encode(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes(int(digits[i + 1], 16) << 4 | int(digits[i], 16) for i in range(0, len(digits), 2))


# --------------------------------------------------------------------------- FCP (TS 102 221 11.1.1)

# TS 102 221 11.1.1.4.3 Table 11.5: file descriptor byte, b6..b4 file type, b3..b1 EF structure
_EF_STRUCTURES = {0x01: "transparent", 0x02: "linear_fixed", 0x06: "cyclic"}
_FDB_DF = 0x38        # b6..b4 = 111: DF or ADF
_FDB_BER_TLV = 0x39   # b6..b1 = 111001: BER-TLV EF
_FDB_SHAREABLE = 0x40  # b7


def _lcsi_name(value: int) -> str:
    # TS 102 221 11.1.1.4.9 Table 11.8 (life cycle status integer)
    if value == 0x00:
        return "no information"
    if value == 0x01:
        return "creation"
    if value == 0x03:
        return "initialisation"
    if value & 0xFD == 0x05:
        return "activated"
    if value & 0xFD == 0x04:
        return "deactivated"
    if value & 0xFC == 0x0C:
        return "terminated"
    return f"proprietary {value:02X}"


@dataclass(frozen=True)
class Fcp:
    """A parsed FCP template ('62'), as SELECT (P2 '04') and STATUS return it."""

    kind: str                      # "EF" | "DF" (an ADF is a DF with a df_name)
    structure: str | None          # "transparent" | "linear_fixed" | "cyclic" | "ber_tlv" | None (DF)
    shareable: bool
    fid: str | None                # "6F07"
    df_name: bytes | None          # AID for an ADF
    size: int | None               # EF: file size '80'; DF: total size '81' if given
    record_length: int | None
    record_count: int | None
    sfi: int | None
    lcsi: str | None
    pin_refs: tuple[int, ...] = ()  # key references listed in the PIN status template 'C6'
    raw: bytes = field(default=b"", repr=False)

    @property
    def is_df(self) -> bool:
        return self.kind == "DF"


def decode_fcp(data: bytes) -> Fcp:
    """Parse an FCP template; raise ValueError on anything else."""
    items = list(iter_tlv(data))
    if len(items) != 1 or items[0][0] != 0x62:
        raise CodecError("not an FCP template (tag '62')")
    kind, structure, shareable = "EF", None, False
    fid = df_name = None
    size = record_length = record_count = sfi = None
    lcsi = None
    pin_refs: list[int] = []
    for tag, value in iter_tlv(items[0][1]):
        if tag == 0x82 and value:  # file descriptor
            fdb = value[0]
            shareable = bool(fdb & _FDB_SHAREABLE)
            if fdb & 0x3F == _FDB_BER_TLV:
                structure = "ber_tlv"
            elif fdb & 0x38 == _FDB_DF:
                kind = "DF"
            else:
                structure = _EF_STRUCTURES.get(fdb & 0x07, f"unknown {fdb:02X}")
            if len(value) >= 5:
                record_length = int.from_bytes(value[2:4], "big")
                record_count = value[4]
        elif tag == 0x83:
            fid = value.hex().upper()
        elif tag == 0x84:
            df_name = value
        elif tag == 0x80 and value:
            size = int.from_bytes(value, "big")
        elif tag == 0x81 and value and size is None:
            size = int.from_bytes(value, "big")
        elif tag == 0x88:
            sfi = value[0] >> 3 if value else None  # b8..b4; empty = no SFI
        elif tag == 0x8A and value:
            lcsi = _lcsi_name(value[0])
        elif tag == 0xC6:
            pin_refs.extend(v[0] for t, v in iter_tlv(value) if t == 0x83 and v)
    return Fcp(kind, structure, shareable, fid, df_name, size, record_length, record_count,
               sfi, lcsi, tuple(pin_refs), data)


# --------------------------------------------------------------------------- EF.ICCID (TS 102 221 13.2)

def decode_iccid(data: bytes) -> str:
    return _swap_bcd_decode(data)


def encode_iccid(iccid: str) -> bytes:
    """For test vectors only: the harness never writes EF.ICCID (factory data)."""
    if not iccid.isdigit() or not 18 <= len(iccid) <= 20:
        raise CodecError(f"ICCID must be 18-20 digits, got {len(iccid)} characters")
    return _swap_bcd_encode(iccid).ljust(10, b"\xff")


# --------------------------------------------------------------------------- EF.IMSI (TS 31.102 4.2.2)

IMSI_FILE_SIZE = 9  # TS 31.102 4.2.2


def encode_imsi(imsi: str) -> bytes:
    """Length byte, then parity nibble '9' (odd digit count) or '1' (even) and the digits."""
    if not imsi.isdigit() or not 6 <= len(imsi) <= 15:
        raise CodecError(f"IMSI must be 6-15 digits, got {imsi!r}")
    parity = "9" if len(imsi) % 2 else "1"  # b4 = 1 for odd, b3..b1 = 001 (IMSI)
    body = _swap_bcd_encode(parity + imsi)
    return (bytes([len(body)]) + body).ljust(IMSI_FILE_SIZE, b"\xff")


def decode_imsi(data: bytes) -> str:
    if not data or data[0] == 0xFF or data[0] == 0:
        raise CodecError("EF.IMSI is empty")
    length = data[0]
    if length > len(data) - 1:
        raise CodecError(f"EF.IMSI length byte {length} longer than the file")
    digits = _swap_bcd_decode(data[1:1 + length])
    if not digits:
        raise CodecError("EF.IMSI holds no digits")
    imsi = digits[1:]  # first nibble is the parity/type indicator
    odd = digits[0] == "9"
    if odd != (len(imsi) % 2 == 1):
        raise CodecError("EF.IMSI parity nibble does not match its digit count")
    return imsi


# --------------------------------------------------------------------------- EF.AD (TS 31.102 4.2.18)

@dataclass(frozen=True)
class AdminData:
    ue_mode: int = 0x00             # byte 1: '00' normal operation, '80' type approval...
    additional_info: bytes = b"\x00\x00"  # bytes 2-3
    mnc_len: int | None = None      # byte 4 b4..b1: 2 or 3 digits
    rfu: bytes = b""                # bytes after byte 4, kept as read


def decode_ad(data: bytes) -> AdminData:
    if len(data) < 3:
        raise CodecError(f"EF.AD must have at least 3 bytes, got {len(data)}")
    mnc_len = data[3] & 0x0F if len(data) >= 4 else None
    return AdminData(data[0], bytes(data[1:3]), mnc_len, bytes(data[4:]))


def encode_ad(ad: AdminData) -> bytes:
    if len(ad.additional_info) != 2:
        raise CodecError("EF.AD additional information is 2 bytes")
    out = bytes([ad.ue_mode]) + ad.additional_info
    if ad.mnc_len is not None:
        if ad.mnc_len not in (2, 3):
            raise CodecError(f"MNC length must be 2 or 3, got {ad.mnc_len}")
        out += bytes([ad.mnc_len]) + ad.rfu
    return out


# --------------------------------------------------------------------------- EF.DIR (TS 102 221 13.1)

USIM_RID = bytes.fromhex("A000000087")  # 3GPP RID, TS 101 220
USIM_APP_CODE = bytes.fromhex("1002")   # TS 101 220 Annex E: 3GPP USIM


@dataclass(frozen=True)
class DirRecord:
    aid: bytes
    label: str | None = None

    @property
    def is_usim(self) -> bool:
        return self.aid[:5] == USIM_RID and self.aid[5:7] == USIM_APP_CODE


def decode_dir_record(data: bytes) -> DirRecord | None:
    """One EF.DIR record: '61' application template with '4F' AID and '50' label; None if empty."""
    items = list(iter_tlv(data))
    if not items:
        return None
    tag, template = items[0]
    if tag != 0x61:
        raise CodecError(f"EF.DIR record starts with tag {tag:02X}, not '61'")
    aid = label = None
    for t, v in iter_tlv(template):
        if t == 0x4F:
            aid = v
        elif t == 0x50:
            label = v.decode("utf-8", errors="replace")
    if aid is None:
        raise CodecError("EF.DIR record has no AID ('4F')")
    return DirRecord(aid, label)


def encode_dir_record(record: DirRecord) -> bytes:
    """The application template, unpadded (the card pads records with 'FF')."""
    inner = encode_tlv(0x4F, record.aid)
    if record.label is not None:
        inner += encode_tlv(0x50, record.label.encode("utf-8"))
    return encode_tlv(0x61, inner)


# --------------------------------------------------------------------------- SJA2 EF.USIM_AUTH_KEY / EF.SIM_AUTH_KEY

# sysmoISIM-SJA2 cfg byte (facts/sysmo.md): low nibble algorithm, bit 4 OPc, bit 5 SRES fn 2, bit 6 4-byte RES
ALGO_MILENAGE = 4
ALGO_SHA1_AKA = 5
ALGO_TUAK = 6
ALGO_XOR = 15
_ALGO_NAMES = {ALGO_MILENAGE: "Milenage", ALGO_SHA1_AKA: "SHA1-AKA", ALGO_TUAK: "TUAK", ALGO_XOR: "XOR"}


@dataclass(frozen=True)
class AuthConfig:
    algorithm: int = ALGO_MILENAGE
    opc: bool = True                 # bit 4: last 16 bytes are OPc (else OP)
    sres_function2: bool = False     # bit 5
    res_4_bytes: bool = False        # bit 6: 4-byte RES only in 3G

    @property
    def algorithm_name(self) -> str:
        return _ALGO_NAMES.get(self.algorithm, f"algorithm {self.algorithm}")

    def to_byte(self) -> int:
        return (self.algorithm & 0x0F) | self.opc << 4 | self.sres_function2 << 5 | self.res_4_bytes << 6

    @classmethod
    def from_byte(cls, value: int) -> AuthConfig:
        return cls(value & 0x0F, bool(value & 0x10), bool(value & 0x20), bool(value & 0x40))


MILENAGE_OPC = AuthConfig(ALGO_MILENAGE, opc=True)  # cfg 0x14


@dataclass(frozen=True)
class AuthKey:
    """cfg | K | OP-or-OPc. Key bytes never appear in repr."""

    config: AuthConfig
    k: bytes = field(repr=False)
    op_opc: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.k) != 16 or len(self.op_opc) != 16:
            raise CodecError("K and OP/OPc must be 16 bytes each")


AUTH_KEY_FILE_SIZE = 33  # 1 + 16 + 16


def decode_auth_key(data: bytes) -> AuthKey:
    if len(data) < AUTH_KEY_FILE_SIZE:
        raise CodecError(f"auth key file must hold {AUTH_KEY_FILE_SIZE} bytes, got {len(data)}")
    return AuthKey(AuthConfig.from_byte(data[0]), bytes(data[1:17]), bytes(data[17:33]))


def encode_auth_key(key: AuthKey) -> bytes:
    return bytes([key.config.to_byte()]) + key.k + key.op_opc


# --------------------------------------------------------------------------- SJA2 EF.MILENAGE_CFG

MILENAGE_R_DEFAULT = (64, 0, 32, 64, 96)  # TS 35.206 4.1
MILENAGE_C_DEFAULT = tuple(bytes(15) + bytes([b]) for b in (0x00, 0x01, 0x02, 0x04, 0x08))  # TS 35.206 4.1


@dataclass(frozen=True)
class MilenageConfig:
    r: tuple[int, ...] = MILENAGE_R_DEFAULT
    c: tuple[bytes, ...] = MILENAGE_C_DEFAULT

    def __post_init__(self) -> None:
        if len(self.r) != 5 or any(not 0 <= r < 128 for r in self.r):
            raise CodecError("Milenage r1..r5 are 5 rotations in 0..127 bits")
        if len(self.c) != 5 or any(len(c) != 16 for c in self.c):
            raise CodecError("Milenage c1..c5 are 5 constants of 16 bytes")


MILENAGE_CFG_FILE_SIZE = 85  # 5 + 5 * 16


def decode_milenage_cfg(data: bytes) -> MilenageConfig:
    if len(data) < MILENAGE_CFG_FILE_SIZE:
        raise CodecError(f"EF.MILENAGE_CFG must hold {MILENAGE_CFG_FILE_SIZE} bytes, got {len(data)}")
    return MilenageConfig(tuple(data[0:5]), tuple(bytes(data[5 + 16 * i:21 + 16 * i]) for i in range(5)))


def encode_milenage_cfg(cfg: MilenageConfig) -> bytes:
    return bytes(cfg.r) + b"".join(cfg.c)


# --------------------------------------------------------------------------- SJA2 EF.USIM_SQN

@dataclass(frozen=True)
class UsimSqn:
    flag1: int
    flag2: int
    delta_max: int
    age_limit: int
    freshness: tuple[int, ...]  # SEQ_MS entries, one per IND (TS 33.102 Annex C)

    def reset(self) -> UsimSqn:
        """The same parameters with every freshness entry at 0 (a new subscription)."""
        return UsimSqn(self.flag1, self.flag2, self.delta_max, self.age_limit, (0,) * len(self.freshness))


def decode_usim_sqn(data: bytes) -> UsimSqn:
    if len(data) < 14 or (len(data) - 14) % 6:
        raise CodecError(f"EF.USIM_SQN must be 14 + 6n bytes, got {len(data)}")
    fresh = tuple(int.from_bytes(data[i:i + 6], "big") for i in range(14, len(data), 6))
    return UsimSqn(data[0], data[1], int.from_bytes(data[2:8], "big"), int.from_bytes(data[8:14], "big"), fresh)


def encode_usim_sqn(sqn: UsimSqn) -> bytes:
    return (bytes([sqn.flag1, sqn.flag2]) + sqn.delta_max.to_bytes(6, "big") + sqn.age_limit.to_bytes(6, "big")
            + b"".join(f.to_bytes(6, "big") for f in sqn.freshness))


# --------------------------------------------------------------------------- declarations

# Where each parent lives: a path from the MF, or "ADF.USIM" selected by AID from EF.DIR.
DF_PATHS = {
    "MF": "3F00",
    "DF.GSM": "3F00/7F20",     # TS 51.011
    "DF.SYSTEM": "3F00/A515",  # sysmoISIM-SJA2 proprietary
}
ADF_USIM = "ADF.USIM"


@dataclass(frozen=True)
class EfDecl(Generic[T]):
    """One card file: where it is, its shape, and how its content is coded."""

    name: str
    fid: str
    parent: str                       # key of DF_PATHS or ADF_USIM
    structure: str                    # "transparent" | "linear_fixed"
    size: int | None                  # transparent: bytes; linear fixed: record length; None: as the card says
    decode: Callable[[bytes], T] = field(repr=False)
    encode: Callable[[T], bytes] = field(repr=False)
    secret: bool = False              # holds key material: commands on it are flagged secret
    factory: bool = False             # factory data: the harness never writes it
    spec: str = ""

    @property
    def where(self) -> str:
        return f"{self.parent}/{self.name}"


EF_ICCID: EfDecl[str] = EfDecl("EF.ICCID", "2FE2", "MF", "transparent", 10, decode_iccid, encode_iccid,
                               factory=True, spec="TS 102 221 13.2")
EF_DIR: EfDecl[Any] = EfDecl("EF.DIR", "2F00", "MF", "linear_fixed", None, decode_dir_record,
                             encode_dir_record, spec="TS 102 221 13.1")
EF_IMSI: EfDecl[str] = EfDecl("EF.IMSI", "6F07", ADF_USIM, "transparent", IMSI_FILE_SIZE, decode_imsi,
                              encode_imsi, spec="TS 31.102 4.2.2")
EF_AD: EfDecl[AdminData] = EfDecl("EF.AD", "6FAD", ADF_USIM, "transparent", None, decode_ad, encode_ad,
                                  spec="TS 31.102 4.2.18")
EF_IMSI_GSM: EfDecl[str] = EfDecl("EF.IMSI", "6F07", "DF.GSM", "transparent", IMSI_FILE_SIZE, decode_imsi,
                                  encode_imsi, spec="TS 51.011 10.3.2")
EF_USIM_AUTH_KEY: EfDecl[AuthKey] = EfDecl("EF.USIM_AUTH_KEY", "AF20", ADF_USIM, "transparent",
                                           AUTH_KEY_FILE_SIZE, decode_auth_key, encode_auth_key,
                                           secret=True, spec="sysmoISIM-SJA2")
EF_USIM_SQN: EfDecl[UsimSqn] = EfDecl("EF.USIM_SQN", "AF30", ADF_USIM, "transparent", None, decode_usim_sqn,
                                      encode_usim_sqn, spec="sysmoISIM-SJA2")
EF_SIM_AUTH_KEY: EfDecl[AuthKey] = EfDecl("EF.SIM_AUTH_KEY", "6F20", "DF.SYSTEM", "transparent",
                                          AUTH_KEY_FILE_SIZE, decode_auth_key, encode_auth_key,
                                          secret=True, spec="sysmoISIM-SJA2")
EF_MILENAGE_CFG: EfDecl[MilenageConfig] = EfDecl("EF.MILENAGE_CFG", "6F21", "DF.SYSTEM", "transparent",
                                                 MILENAGE_CFG_FILE_SIZE, decode_milenage_cfg,
                                                 encode_milenage_cfg, spec="sysmoISIM-SJA2")

ALL_FILES: tuple[EfDecl[Any], ...] = (EF_ICCID, EF_DIR, EF_IMSI, EF_AD, EF_IMSI_GSM, EF_USIM_AUTH_KEY,
                                      EF_USIM_SQN, EF_SIM_AUTH_KEY, EF_MILENAGE_CFG)
