"""The virtual UICC's command APDUs: status words, instructions, and the parser that splits a
command APDU (or a T=0 TPDU) into header, data and Le (ISO 7816-3 12.1, TS 102 221 10)."""

from __future__ import annotations

from dataclasses import dataclass

# --- status words (TS 102 221 10.2.1, TS 31.102 7.3) ----------------------------------
SW_OK = 0x9000
SW_EOF = 0x6282
SW_MEMORY_PROBLEM = 0x6581
SW_WRONG_LENGTH = 0x6700
SW_CHANNEL_NOT_SUPPORTED = 0x6881
SW_WRONG_STRUCTURE = 0x6981
SW_SECURITY = 0x6982
SW_BLOCKED = 0x6983
SW_CONDITIONS = 0x6985
SW_NO_EF = 0x6986
SW_WRONG_DATA = 0x6A80
SW_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_BAD_P1P2 = 0x6A86
SW_REF_NOT_FOUND = 0x6A88
SW_WRONG_P1P2 = 0x6B00
SW_BAD_INS = 0x6D00
SW_BAD_CLA = 0x6E00
SW_TECHNICAL = 0x6F00
SW_AUTH_MAC = 0x9862  # TS 31.102 7.3: authentication error, incorrect MAC

# --- instructions (TS 102 221 10.1.2, TS 31.102 7.1) ---------------------------------
INS_SELECT = 0xA4
INS_STATUS = 0xF2
INS_READ_BINARY = 0xB0
INS_UPDATE_BINARY = 0xD6
INS_READ_RECORD = 0xB2
INS_UPDATE_RECORD = 0xDC
INS_VERIFY = 0x20
INS_CHANGE_PIN = 0x24
INS_DISABLE_PIN = 0x26
INS_ENABLE_PIN = 0x28
INS_AUTHENTICATE = 0x88
INS_GET_RESPONSE = 0xC0
INS_TERMINAL_PROFILE = 0x10
INS_MANAGE_CHANNEL = 0x70

INS_CLA_80 = {INS_STATUS, INS_TERMINAL_PROFILE}  # TS 102 221 10.1.1: CLA '8X'
INS_CLA_00 = {INS_SELECT, INS_READ_BINARY, INS_UPDATE_BINARY, INS_READ_RECORD,
              INS_UPDATE_RECORD, INS_VERIFY, INS_CHANGE_PIN, INS_DISABLE_PIN,
              INS_ENABLE_PIN, INS_AUTHENTICATE, INS_MANAGE_CHANNEL}
INS_OUTGOING = {INS_READ_BINARY, INS_READ_RECORD, INS_STATUS, INS_GET_RESPONSE}  # case 2

AUTH_CONTEXT_GSM = 0x80  # TS 31.102 7.1.2: P2 b8=1, b3..b1 000 GSM
AUTH_CONTEXT_3G = 0x81  # 001 3G
TAG_AUTH_OK = 0xDB
TAG_SYNC_FAILURE = 0xDC
USIM_AID_PREFIX = bytes.fromhex("a0000000871002")  # RID + USIM application code


class _Status(Exception):
    """Ends a command with a status word and no data."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass(frozen=True, repr=False)
class Command:
    """A command APDU as the card sees it (short length fields only)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # 1..256, None when absent

    def __repr__(self) -> str:  # data may carry a PIN or a key: never shown
        return f"Command({self.cla:02X} {self.ins:02X} {self.p1:02X} {self.p2:02X}, lc={len(self.data)})"


def parse_command(raw: bytes) -> Command:
    """Split a command APDU (or a T=0 TPDU) into header, data and Le (ISO 7816-3 12.1)."""
    if len(raw) < 4:
        raise _Status(SW_WRONG_LENGTH)
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    if len(raw) == 4:
        return Command(cla, ins, p1, p2, b"", None)
    p3 = raw[4]
    if len(raw) == 5:
        if ins in INS_OUTGOING:
            return Command(cla, ins, p1, p2, b"", p3 or 256)
        if p3:  # Lc announced but no data
            raise _Status(SW_WRONG_LENGTH)
        return Command(cla, ins, p1, p2, b"", None)
    if p3 == 0:  # extended lengths are not supported
        raise _Status(SW_WRONG_LENGTH)
    if len(raw) == 5 + p3:
        return Command(cla, ins, p1, p2, bytes(raw[5:]), None)
    if len(raw) == 6 + p3:
        return Command(cla, ins, p1, p2, bytes(raw[5:-1]), raw[-1] or 256)
    raise _Status(SW_WRONG_LENGTH)


def atr_protocols(atr: bytes) -> set[int]:
    """The protocols T=n an ATR offers (ISO 7816-3 8.2); T=0 when none is indicated."""
    protocols: set[int] = set()
    if len(atr) < 2:
        return {0}
    i, y = 2, atr[1] >> 4  # i: the first interface byte after T0
    while y & 0x8:  # TDi present
        i += bin(y & 0x7).count("1")  # skip TAi, TBi, TCi
        if i >= len(atr):
            break
        td = atr[i]
        i += 1
        protocols.add(td & 0x0F)
        y = td >> 4
    protocols.discard(15)  # T=15 is global parameters, not a protocol
    return protocols or {0}


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag, len(value)]) + value
