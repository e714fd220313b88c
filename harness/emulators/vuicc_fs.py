"""The virtual UICC's file system: the file tree, its JSON state file, the factory layout.

A subset of TS 102 221 / TS 31.102 / TS 31.103 laid out as a sysmoISIM-SJA2 (facts/sysmo.md):

    MF 3F00
      EF.ICCID 2FE2, EF.DIR 2F00 (USIM, ISIM), EF.ARR 2F06, EF.PL 2F05
      DF.TELECOM 7F10, DF.GSM 7F20 (EF.IMSI and the SIM files): see vuicc_sja2.py
      DF.SYSTEM A515: EF.CHV1 6F01, EF.ADM1 6F0A, EF.SIM_AUTH_KEY 6F20, EF.MILENAGE_CFG 6F21
      ADF.USIM (AID a0000000871002ffffffff8907090000):
        EF.IMSI 6F07, EF.AD 6FAD, EF.UST 6F38, EF.KEYS 6F08, EF.KEYSPS 6F09, EF.ACC 6F78,
        EF.FPLMN 6F7B, EF.LOCI 6F7E, EF.PSLOCI 6F73, EF.EPSLOCI 6FE3,
        EF.USIM_AUTH_KEY AF20, EF.USIM_SQN AF30, and the files of vuicc_sja2.py
      ADF.ISIM (AID a0000000871004ffffffff8907090000): vuicc_sja2.py

The state file is the card: it holds K, OPc and the PINs in clear, so it is written
0600 and atomically (tmp + rename) on every change. Nothing here logs file contents.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mcim_hil.aka.auc import UsimSqnState
from mcim_hil.aka.milenage import DEFAULT_C, DEFAULT_R

STATE_FORMAT = "mcim-hil-vuicc/1"

# sysmoISIM-SJA2 ATR (facts/sysmo.md); offers T=0 only.
SJA2_ATR = bytes.fromhex("3b9f96801f878031e073fe211b674a4c753034054ba9")
USIM_AID = bytes.fromhex("a0000000871002ffffffff8907090000")  # TS 31.102 / ETSI TS 101 220 annex E

FID_MF = 0x3F00
FID_CURRENT_ADF = 0x7FFF  # TS 102 221 8.4.1: '7FFF' names the current application
FID_ARR = 0x2F06

# Key references (TS 102 221 table 9.3) and where the card keeps their values.
PIN1 = 0x01
ADM1 = 0x0A
PIN_FILES = {PIN1: ("A515", "6F01"), ADM1: ("A515", "6F0A")}  # our layout in DF.SYSTEM
PIN_MAX_TRIES = {PIN1: 3, ADM1: 3}

# Access conditions, in increasing strength. The FCP carries them as a reference to an
# EF.ARR record (tag 8B, TS 102 221 11.1.1.4.7.3); ARR_RULES maps (read, update) to it.
ALWAYS, PIN1_AC, ADM1_AC, NEVER = "always", "pin1", "adm1", "never"
ACCESS_LEVELS = (ALWAYS, PIN1_AC, ADM1_AC, NEVER)
ARR_RULES: dict[tuple[str, str], int] = {
    (ALWAYS, NEVER): 1,
    (ALWAYS, ADM1_AC): 2,
    (PIN1_AC, ADM1_AC): 3,
    (ADM1_AC, ADM1_AC): 4,
    (PIN1_AC, PIN1_AC): 5,
    (NEVER, ADM1_AC): 6,
    (ALWAYS, PIN1_AC): 7,
}

# sysmoISIM-SJA2 EF.USIM_AUTH_KEY cfg byte (facts/sysmo.md)
AUTH_CFG_MILENAGE = 0x04
AUTH_CFG_OPC = 0x10  # last 16 bytes are OPc (else OP)
AUTH_CFG_RES4 = 0x40  # 4-byte RES only in 3G
AUTH_ALGO_MASK = 0x0F

# EF.USIM_SQN flag byte 1 (b8 skip next check, b7 delta check, b6 age check, b5 SQN check,
# b4..b1 IND length): 0x55 = delta and SQN checks on, no age limit, 5-bit IND.
SQN_FLAG_SKIP_NEXT = 0x80
SQN_FLAG_DELTA = 0x40
SQN_FLAG_AGE = 0x20
SQN_FLAG_CHECK = 0x10
SQN_FLAGS_DEFAULT = SQN_FLAG_DELTA | SQN_FLAG_CHECK | 5
SQN_DELTA_DEFAULT = 1 << 33  # in SQN units: 2^28 SEQ with 5-bit IND (TS 33.102 C.2.1)
SQN_ENTRIES = 32

UST_GSM_ACCESS = 27  # TS 31.102 4.2.8 service 27: GSM access (Kc in AUTHENTICATE response)

PIN_LEN = 8  # TS 102 221 9.5.1: PIN block of 8 bytes, 'FF' padded


class CardStateError(Exception):
    """The card's state file cannot be read, parsed or written."""


# --- data codecs (our own, TS 102 221 / TS 31.102) --------------------------------


def encode_iccid(iccid: str) -> bytes:
    """EF.ICCID: BCD, nibble-swapped, 'F' padded to 10 bytes (TS 102 221 13.2)."""
    if not iccid.isdigit() or not 18 <= len(iccid) <= 20:
        raise ValueError(f"ICCID must be 18..20 digits, got {len(iccid)} characters")
    digits = iccid + "F" * (20 - len(iccid))
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, 20, 2))


def decode_iccid(data: bytes) -> str:
    out = ""
    for b in data:
        out += f"{b & 0x0F:x}{b >> 4:x}"
    return out.rstrip("f")


def encode_imsi(imsi: str) -> bytes:
    """EF.IMSI (TS 31.102 4.2.2): length, then digit 1 with the parity nibble, then BCD."""
    if not imsi.isdigit() or not 6 <= len(imsi) <= 15:
        raise ValueError(f"IMSI must be 6..15 digits, got {len(imsi)} characters")
    parity = 9 if len(imsi) % 2 else 1  # b4 = 1 for an odd number of digits, b3..b1 = '001'
    nibbles = [parity] + [int(d) for d in imsi]
    if len(nibbles) % 2:
        nibbles.append(0xF)
    body = bytes((nibbles[i + 1] << 4) | nibbles[i] for i in range(0, len(nibbles), 2))
    return (bytes([len(body)]) + body).ljust(9, b"\xff")


def decode_imsi(data: bytes) -> str:
    n = data[0]
    if n == 0xFF or n == 0 or n > 8:
        return ""
    nibbles = []
    for b in data[1:1 + n]:
        nibbles += [b & 0x0F, b >> 4]
    digits = nibbles[1:]
    return "".join(str(d) for d in digits if d <= 9)


def pad_pin(pin: bytes) -> bytes:
    """A PIN block: the digits as ASCII, 'FF' padded to 8 bytes (TS 102 221 9.5.1)."""
    if not 4 <= len(pin) <= PIN_LEN:
        raise ValueError(f"a PIN must be 4..8 bytes, got {len(pin)}")
    return bytes(pin).ljust(PIN_LEN, b"\xff")


def ust_bytes(services: set[int], length: int = 8) -> bytes:
    """EF.UST service table: service n is bit (n-1) % 8 of byte (n-1) // 8 (TS 31.102 4.2.8)."""
    table = bytearray(length)
    for n in services:
        table[(n - 1) // 8] |= 1 << ((n - 1) % 8)
    return bytes(table)


def ust_has(table: bytes, service: int) -> bool:
    i = (service - 1) // 8
    return i < len(table) and bool(table[i] & (1 << ((service - 1) % 8)))


def dir_record(aid: bytes, label: str, length: int) -> bytes:
    """EF.DIR application template: 61 L 4F AID 50 label (TS 102 221 13.1)."""
    body = bytes([0x4F, len(aid)]) + aid + bytes([0x50, len(label)]) + label.encode()
    return (bytes([0x61, len(body)]) + body).ljust(length, b"\xff")


def arr_record(read: str, update: str, length: int) -> bytes:
    """An EF.ARR expanded-format rule: read (AM b1) and update (AM b2) conditions."""
    def condition(level: str) -> bytes:
        if level == ALWAYS:
            return b"\x90\x00"
        if level == NEVER:
            return b"\x97\x00"
        key = PIN1 if level == PIN1_AC else ADM1
        return bytes([0xA4, 0x06, 0x83, 0x01, key, 0x95, 0x01, 0x08])  # user authentication
    rule = b"\x80\x01\x01" + condition(read) + b"\x80\x01\x02" + condition(update)
    return rule.ljust(length, b"\xff")


def sqn_file(flags: int = SQN_FLAGS_DEFAULT, delta_max: int = SQN_DELTA_DEFAULT,
             age_limit: int = SQN_DELTA_DEFAULT, entries: list[int] | None = None) -> bytes:
    """EF.USIM_SQN: flag1, flag2, delta_max(6), age_limit(6), 32 x 6-byte SQN entries."""
    entries = entries if entries is not None else [0] * SQN_ENTRIES
    body = bytes([flags, 0x00]) + delta_max.to_bytes(6, "big") + age_limit.to_bytes(6, "big")
    return body + b"".join(e.to_bytes(6, "big") for e in entries)


def sqn_state_from_file(data: bytes) -> UsimSqnState:
    """The Annex C state kept in EF.USIM_SQN (entries are full SQN = SEQ || IND)."""
    flags = data[0]
    ind_bits = flags & 0x0F
    delta_max = int.from_bytes(data[2:8], "big")
    age_limit = int.from_bytes(data[8:14], "big")
    raw = data[14:]
    entries = [int.from_bytes(raw[i:i + 6], "big") for i in range(0, len(raw) - len(raw) % 6, 6)]
    return UsimSqnState(
        ind_bits=ind_bits, entries=entries[: 1 << ind_bits],
        check_sqn=bool(flags & SQN_FLAG_CHECK), check_delta=bool(flags & SQN_FLAG_DELTA),
        delta=delta_max >> ind_bits, check_age=bool(flags & SQN_FLAG_AGE),
        age_limit=age_limit >> ind_bits, skip_next_check=bool(flags & SQN_FLAG_SKIP_NEXT))


def sqn_file_update(data: bytes, state: UsimSqnState) -> bytes:
    """EF.USIM_SQN content after ``state`` changed (entries and the skip flag)."""
    flags = data[0] & ~SQN_FLAG_SKIP_NEXT
    if state.skip_next_check:
        flags |= SQN_FLAG_SKIP_NEXT
    out = bytearray(data)
    out[0] = flags
    for i, sqn in enumerate(state.entries[: 1 << state.ind_bits]):
        out[14 + 6 * i: 20 + 6 * i] = sqn.to_bytes(6, "big")
    return bytes(out)


def milenage_cfg(r: tuple[int, ...] = DEFAULT_R, c: tuple[bytes, ...] = DEFAULT_C) -> bytes:
    """EF.MILENAGE_CFG: r1..r5 in bits (one byte each), then c1..c5 (facts/sysmo.md)."""
    return bytes(r) + b"".join(c)


def milenage_params(data: bytes) -> tuple[tuple[int, ...], tuple[bytes, ...]]:
    r = tuple(data[:5])
    c = tuple(data[5 + 16 * i: 21 + 16 * i] for i in range(5))
    return r, c


# --- the file tree -------------------------------------------------------------------


@dataclass(eq=False)
class CardFile:
    fid: int
    name: str
    parent: DedicatedFile | None = field(default=None, repr=False)

    @property
    def is_df(self) -> bool:
        return isinstance(self, DedicatedFile)

    def path(self) -> str:
        """'3F00/7FFF/6F07' style path, for messages (never content)."""
        parts = []
        node: CardFile | None = self
        while node is not None:
            parts.append(f"{node.fid:04X}")
            node = node.parent
        return "/".join(reversed(parts))


@dataclass(eq=False)
class DedicatedFile(CardFile):
    """MF, DF or ADF (an ADF has an AID)."""

    aid: bytes | None = None
    children: list[CardFile] = field(default_factory=list, repr=False)

    def add(self, child: CardFile) -> CardFile:
        child.parent = self
        self.children.append(child)
        return child

    def child(self, fid: int) -> CardFile | None:
        for c in self.children:
            if c.fid == fid:
                return c
        return None

    def child_by_sfi(self, sfi: int) -> ElementaryFile | None:
        for c in self.children:
            if isinstance(c, ElementaryFile) and c.sfi == sfi:
                return c
        return None


@dataclass(eq=False)
class ElementaryFile(CardFile):
    """A transparent EF (``data``) or a linear fixed EF (``records`` of ``record_len``)."""

    structure: str = "transparent"  # or "linear_fixed"
    sfi: int | None = None
    read: str = ALWAYS
    update: str = ADM1_AC
    data: bytearray = field(default_factory=bytearray, repr=False)
    records: list[bytearray] = field(default_factory=list, repr=False)
    record_len: int = 0

    @property
    def size(self) -> int:
        return len(self.data) if self.structure == "transparent" else self.record_len * len(self.records)


def _walk(df: DedicatedFile) -> Iterator[CardFile]:
    for c in df.children:
        yield c
        if isinstance(c, DedicatedFile):
            yield from _walk(c)


@dataclass
class PinState:
    tries: int
    max_tries: int
    enabled: bool = True


@dataclass(eq=False)
class CardState:
    """Everything the card keeps across power cycles: ATR, file tree, PIN counters."""

    atr: bytes
    mf: DedicatedFile
    pins: dict[int, PinState]

    def __repr__(self) -> str:
        return f"CardState(atr={self.atr.hex()}, files={sum(1 for _ in _walk(self.mf)) + 1})"

    def adfs(self) -> list[DedicatedFile]:
        return [f for f in _walk(self.mf) if isinstance(f, DedicatedFile) and f.aid]

    def find(self, *fids: str) -> CardFile:
        """A file by its FIDs below the MF (an ADF by its FID as stored), for the card's own use."""
        node: CardFile = self.mf
        for fid in fids:
            nxt = node.child(int(fid, 16)) if isinstance(node, DedicatedFile) else None
            if nxt is None:
                raise CardStateError(f"card state has no file {node.path()}/{fid.upper()}")
            node = nxt
        return node

    def find_ef(self, *fids: str) -> ElementaryFile:
        node = self.find(*fids)
        if not isinstance(node, ElementaryFile):
            raise CardStateError(f"card state: {node.path()} is not an EF")
        return node

    def pin_value(self, ref: int) -> bytes:
        return bytes(self.find_ef(*PIN_FILES[ref]).data)

    # --- JSON ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "atr": self.atr.hex(),
            "pins": {f"{ref:02x}": {"tries": p.tries, "max": p.max_tries, "enabled": p.enabled}
                     for ref, p in sorted(self.pins.items())},
            "mf": _file_to_json(self.mf),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CardState:
        if data.get("format") != STATE_FORMAT:
            raise CardStateError(f"unknown card state format {data.get('format')!r}")
        mf = _file_from_json(data["mf"])
        if not isinstance(mf, DedicatedFile):
            raise CardStateError("card state: the MF is not a DF")
        pins = {int(ref, 16): PinState(int(p["tries"]), int(p["max"]), bool(p["enabled"]))
                for ref, p in data["pins"].items()}
        return cls(atr=bytes.fromhex(data["atr"]), mf=mf, pins=pins)

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_json(), indent=1).encode())

    @classmethod
    def load(cls, path: Path) -> CardState:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise CardStateError(f"card state {path}: cannot read ({exc.strerror})") from exc
        try:
            return cls.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            # the exception text could quote file content (keys): name only its type
            raise CardStateError(f"card state {path}: malformed ({type(exc).__name__})") from None


def _file_to_json(f: CardFile) -> dict[str, Any]:
    out: dict[str, Any] = {"fid": f"{f.fid:04x}", "name": f.name}
    if isinstance(f, DedicatedFile):
        out["kind"] = "adf" if f.aid else ("mf" if f.parent is None else "df")
        if f.aid:
            out["aid"] = f.aid.hex()
        out["children"] = [_file_to_json(c) for c in f.children]
    elif isinstance(f, ElementaryFile):
        out.update(kind="ef", structure=f.structure, sfi=f.sfi, read=f.read, update=f.update)
        if f.structure == "transparent":
            out["data"] = f.data.hex()
        else:
            out["record_len"] = f.record_len
            out["records"] = [r.hex() for r in f.records]
    return out


def _file_from_json(d: dict[str, Any]) -> CardFile:
    fid = int(d["fid"], 16)
    if d["kind"] in ("mf", "df", "adf"):
        df = DedicatedFile(fid, d["name"], aid=bytes.fromhex(d["aid"]) if d.get("aid") else None)
        for c in d.get("children", []):
            df.add(_file_from_json(c))
        return df
    if d["kind"] != "ef":
        raise CardStateError(f"card state: file {d['fid']} has unknown kind {d['kind']!r}")
    for ac in (d["read"], d["update"]):
        if ac not in ACCESS_LEVELS:
            raise CardStateError(f"card state: file {d['fid']} has unknown access {ac!r}")
    ef = ElementaryFile(fid, d["name"], structure=d["structure"], sfi=d.get("sfi"),
                        read=d["read"], update=d["update"])
    if ef.structure == "transparent":
        ef.data = bytearray.fromhex(d["data"])
    elif ef.structure == "linear_fixed":
        ef.record_len = int(d["record_len"])
        ef.records = [bytearray.fromhex(r) for r in d["records"]]
        if any(len(r) != ef.record_len for r in ef.records):
            raise CardStateError(f"card state: file {d['fid']} has a record of the wrong length")
    else:
        raise CardStateError(f"card state: file {d['fid']} has unknown structure {d['structure']!r}")
    return ef


def write_atomic(path: Path, content: bytes) -> None:
    """Write ``content`` so that a reader sees the old or the new file, never half (tmp + rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # the card holds K, OPc and PINs in clear
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --- the factory card ----------------------------------------------------------------


def _ef(fid: str, name: str, data: bytes, *, sfi: int | None = None, read: str = ALWAYS,
        update: str = ADM1_AC) -> ElementaryFile:
    return ElementaryFile(int(fid, 16), name, sfi=sfi, read=read, update=update, data=bytearray(data))


def _linear(fid: str, name: str, records: list[bytes], record_len: int, *, sfi: int | None = None,
            read: str = ALWAYS, update: str = ADM1_AC) -> ElementaryFile:
    return ElementaryFile(int(fid, 16), name, structure="linear_fixed", sfi=sfi, read=read,
                          update=update, records=[bytearray(r) for r in records], record_len=record_len)


def factory_state(*, iccid: str, imsi: str, k: bytes, opc: bytes, adm1: bytes, pin1: bytes,
                  mnc_len: int, atr: bytes, sqn_flags: int = SQN_FLAGS_DEFAULT) -> CardState:
    """A freshly personalised sysmoISIM-SJA2-like card (Milenage with OPc, PIN1 disabled)."""
    if len(k) != 16 or len(opc) != 16:
        raise ValueError("K and OPc must be 16 bytes each")
    if len(adm1) != PIN_LEN:
        raise ValueError(f"ADM1 must be {PIN_LEN} bytes (8 ASCII digits), got {len(adm1)}")
    if mnc_len not in (2, 3):
        raise ValueError(f"MNC length must be 2 or 3, got {mnc_len}")
    auth_key = bytes([AUTH_CFG_MILENAGE | AUTH_CFG_OPC]) + k + opc
    imsi_data = encode_imsi(imsi)
    # EF.ACC (TS 31.102 4.2.15): access class = last IMSI digit
    acc = (1 << int(imsi[-1])).to_bytes(2, "big")
    arr_len = 24

    from .vuicc_sja2 import ISIM_AID, UST_LENGTH, UST_SERVICES, gsm_files, isim_adf, telecom_df, usim_files
    msisdn = "+" + imsi[:3] + "0" + imsi[-9:]     # made up for the card, in the IMSI's country
    spn = "mcim-hil"

    mf = DedicatedFile(FID_MF, "MF")
    mf.add(_ef("2FE2", "EF.ICCID", encode_iccid(iccid), sfi=0x02, read=ALWAYS, update=NEVER))
    mf.add(_linear("2F00", "EF.DIR", [dir_record(USIM_AID, "USIM", 32), dir_record(ISIM_AID, "ISIM", 32),
                                      b"\xff" * 32], 32, sfi=0x1E))
    mf.add(_ef("2F05", "EF.PL", b"en" + b"\xff" * 8, sfi=0x05, update=PIN1_AC))   # TS 102 221 13.3
    rules = sorted(ARR_RULES.items(), key=lambda kv: kv[1])
    mf.add(_linear("2F06", "EF.ARR", [arr_record(r, u, arr_len) for (r, u), _n in rules], arr_len,
                   sfi=0x06))

    gsm = mf.add(DedicatedFile(0x7F20, "DF.GSM"))
    assert isinstance(gsm, DedicatedFile)
    gsm.add(_ef("6F07", "EF.IMSI", imsi_data, read=PIN1_AC))
    gsm_files(gsm, imsi=imsi, mnc_len=mnc_len, acc=acc, spn=spn)
    mf.add(telecom_df(msisdn=msisdn))

    system = mf.add(DedicatedFile(0xA515, "DF.SYSTEM"))
    assert isinstance(system, DedicatedFile)
    system.add(_ef("6F01", "EF.CHV1", pad_pin(pin1), read=NEVER, update=ADM1_AC))
    system.add(_ef("6F0A", "EF.ADM1", adm1, read=NEVER, update=ADM1_AC))
    system.add(_ef("6F20", "EF.SIM_AUTH_KEY", auth_key, read=ADM1_AC))
    system.add(_ef("6F21", "EF.MILENAGE_CFG", milenage_cfg(), read=ADM1_AC))

    usim = mf.add(DedicatedFile(FID_CURRENT_ADF, "ADF.USIM", aid=USIM_AID))
    assert isinstance(usim, DedicatedFile)
    usim.add(_ef("6F07", "EF.IMSI", imsi_data, sfi=0x07, read=PIN1_AC))
    usim.add(_ef("6FAD", "EF.AD", bytes([0x00, 0x00, 0x00, mnc_len]), sfi=0x03))
    usim.add(_ef("6F38", "EF.UST", ust_bytes(UST_SERVICES | {UST_GSM_ACCESS}, UST_LENGTH), sfi=0x04,
                 read=PIN1_AC))
    usim.add(_ef("6F08", "EF.KEYS", b"\x07" + bytes(32), sfi=0x08, read=PIN1_AC, update=PIN1_AC))
    usim.add(_ef("6F09", "EF.KEYSPS", b"\x07" + bytes(32), sfi=0x09, read=PIN1_AC, update=PIN1_AC))
    usim.add(_ef("6F78", "EF.ACC", acc, sfi=0x06, read=PIN1_AC))
    usim.add(_ef("6F7B", "EF.FPLMN", b"\xff" * 12, sfi=0x0D, read=PIN1_AC, update=PIN1_AC))
    usim.add(_ef("6F7E", "EF.LOCI", b"\xff" * 4 + b"\xff\xff\xff\x00\x00\xff\x01", sfi=0x0B,
                 read=PIN1_AC, update=PIN1_AC))
    usim.add(_ef("6F73", "EF.PSLOCI", b"\xff" * 7 + b"\xff\xff\xff\x00\x00\xff\x01", sfi=0x0C,
                 read=PIN1_AC, update=PIN1_AC))
    usim.add(_ef("6FE3", "EF.EPSLOCI", b"\xff" * 12 + b"\xff\xff\xff\x00\x00\x01", sfi=0x1E,
                 read=PIN1_AC, update=PIN1_AC))
    usim.add(_ef("AF20", "EF.USIM_AUTH_KEY", auth_key, read=ADM1_AC))
    usim.add(_ef("AF30", "EF.USIM_SQN", sqn_file(flags=sqn_flags), read=ADM1_AC))
    usim_files(usim, imsi=imsi, mnc_len=mnc_len, msisdn=msisdn, spn=spn)
    mf.add(isim_adf(imsi=imsi, mnc_len=mnc_len, auth_key=auth_key))

    pins = {PIN1: PinState(PIN_MAX_TRIES[PIN1], PIN_MAX_TRIES[PIN1], enabled=False),
            ADM1: PinState(PIN_MAX_TRIES[ADM1], PIN_MAX_TRIES[ADM1], enabled=True)}
    return CardState(atr=bytes(atr), mf=mf, pins=pins)
