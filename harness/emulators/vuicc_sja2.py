"""What a sysmoISIM-SJA2 holds besides its keys: the files pySim-read and pySim-shell's
`export` look at, with contents like a freshly programmed card's.

    MF:          EF.DIR lists ADF.USIM and ADF.ISIM
    DF.TELECOM:  EF.ADN, EF.SMS, EF.MSISDN, EF.SMSP, EF.SMSS
    DF.GSM:      EF.LP, EF.Kc, EF.PLMNsel, EF.HPPLMN, EF.SST, EF.GID1/2, EF.SPN, EF.ACC, EF.FPLMN,
                 EF.LOCI, EF.AD, EF.PHASE, EF.ECC, EF.PLMNwAcT, EF.OPLMNwAcT, EF.HPLMNAcT, EF.KcGPRS,
                 EF.LOCIGPRS (EF.IMSI is laid out by vuicc_fs)
    ADF.USIM:    EF.LI, EF.EST, EF.GID1/2, EF.SPN, EF.PLMNwAcT, EF.HPPLMN, EF.MSISDN, EF.SMS,
                 EF.SMSS, EF.SMSP, EF.START-HFN, EF.THRESHOLD, EF.OPLMNwAcT, EF.HPLMNwAcT,
                 EF.ECC, EF.EHPLMN
    ADF.ISIM:    EF.IST, EF.IMPI, EF.DOMAIN, EF.IMPU, EF.AD, EF.PCSCF, EF.UICCIARI,
                 EF.ISIM_AUTH_KEY (its own copy, as the SJA2 keeps one per application)

Access conditions are ARR references (vuicc_fs.ARR_RULES); user data reads and updates
under PIN1, operator data reads freely and updates under ADM1, as on the real card.
"""

from __future__ import annotations

from .vuicc_fs import ADM1_AC, PIN1_AC, DedicatedFile, ElementaryFile, _ef, _linear, ust_bytes

ISIM_AID = bytes.fromhex("a0000000871004ffffffff8907090000")   # TS 31.103: RID + ISIM app code 1004
FID_ADF_ISIM = 0x7FF1   # the ADF's own FID; it is selected by AID (or '7FFF' once active)

# TS 31.102 4.2.8: the services whose files this card has (service 27: GSM access, Kc in the
# AUTHENTICATE response; 33: packet switched domain; 85: EPS mobility management information)
UST_SERVICES = {10, 11, 12, 17, 18, 19, 20, 21, 27, 33, 34, 42, 43, 71, 85}
UST_LENGTH = 12
# TS 31.103 4.2.7: service 1 P-CSCF address (EF.PCSCF); the others need files this card has not
IST_SERVICES = {1}
# TS 51.011 10.3.7: SIM services (each two bits: allocated, activated): 1 CHV1 disable, 2 ADN,
# 4 SMS, 7 PLMN selector, 9 MSISDN, 12 SMSP, 17 SPN, 21 GID1, 22 GID2, 38 GPRS,
# 43 user PLMN selector with AcT, 44 operator's, 51 HPLMN selector with AcT.
# (pySim-read's legacy dec_st reads this table one bit per service, so it lists other numbers.)
SST_SERVICES = {1, 2, 4, 7, 9, 12, 17, 21, 22, 38, 43, 44, 51}
SST_LENGTH = 13

ACT_ALL = bytes.fromhex("c080")   # TS 31.102 4.2.5 access technology: UTRAN, E-UTRAN; GSM
EMERGENCY_NUMBERS = ("112", "911")
SMSC = "001010000000"     # a test-network SMSC number (TS 23.003 test PLMN 001-01)


def sst_bytes(services: set[int], length: int = SST_LENGTH) -> bytes:
    """EF.SST: service n allocated (bit 2k) and activated (bit 2k+1) of byte (n-1)//4 (TS 51.011 10.3.7)."""
    table = bytearray(length)
    for n in services:
        table[(n - 1) // 4] |= 0b11 << (2 * ((n - 1) % 4))
    return bytes(table)


def bcd(digits: str) -> bytes:
    """Digits BCD nibble-swapped, 'F' padded (TS 24.008 10.5.4.7 / TS 31.102 4.2.24)."""
    padded = digits + "F" * (len(digits) % 2)
    return bytes(int(padded[i + 1] + padded[i], 16) for i in range(0, len(padded), 2))


def plmn_bytes(mcc: str, mnc: str) -> bytes:
    """PLMN as TS 24.008 10.5.1.3 codes it: MCC2 MCC1, MNC3 MCC3, MNC2 MNC1."""
    mnc3 = mnc[2] if len(mnc) == 3 else "F"
    return bytes([int(mcc[1] + mcc[0], 16), int(mnc3 + mcc[2], 16), int(mnc[1] + mnc[0], 16)])


def dialling_number(number: str, alpha: str, alpha_len: int) -> bytes:
    """An ADN-style record (TS 31.102 4.2.26 / TS 51.011 10.5.1): alpha, BCD length, TON/NPI,
    10 bytes of digits, CCP and EXT identifiers."""
    digits = number.lstrip("+")
    ton_npi = 0x91 if number.startswith("+") else 0x81
    body = bcd(digits)
    return (alpha.encode().ljust(alpha_len, b"\xff") + bytes([len(body) + 1, ton_npi])
            + body.ljust(10, b"\xff") + b"\xff\xff")


def smsp_record(smsc: str, alpha: str = "SMSC", alpha_len: int = 16) -> bytes:
    """EF.SMSP record (TS 31.102 4.2.27): parameter indicators e1 (only the SC address given),
    TP-DA unset, TP-SC address, PID 00, DCS 00, validity period a9 (3 days)."""
    digits = bcd(smsc)
    sc = (bytes([len(digits) + 1, 0x91]) + digits).ljust(12, b"\xff")
    return alpha.encode().ljust(alpha_len, b"\xff") + b"\xe1" + b"\xff" * 12 + sc + b"\x00\x00\xa9"


def ecc_record(number: str, alpha: str = "", alpha_len: int = 16) -> bytes:
    """EF.ECC record in ADF.USIM (TS 31.102 4.2.21): 3 BCD bytes, alpha, service category."""
    return bcd(number).ljust(3, b"\xff") + alpha.encode().ljust(alpha_len, b"\xff") + b"\x00"


def tlv80(text: str) -> bytes:
    """The '80' TLV of EF.IMPI, EF.DOMAIN, EF.IMPU (TS 31.103 4.2.2-4.2.4)."""
    data = text.encode()
    return bytes([0x80, len(data)]) + data


def _records(fid: str, name: str, records: list[bytes], length: int, count: int, **kw) -> ElementaryFile:
    padded = [r.ljust(length, b"\xff") for r in records] + [b"\xff" * length] * (count - len(records))
    return _linear(fid, name, padded, length, **kw)


def telecom_df(*, msisdn: str) -> DedicatedFile:
    telecom = DedicatedFile(0x7F10, "DF.TELECOM")
    telecom.add(_records("6F3A", "EF.ADN", [], 34, 10, read=PIN1_AC, update=PIN1_AC))
    telecom.add(_records("6F3C", "EF.SMS", [b"\x00"], 176, 10, read=PIN1_AC, update=PIN1_AC))
    telecom.add(_records("6F40", "EF.MSISDN", [dialling_number(msisdn, "", 20)], 34, 2,
                         read=PIN1_AC, update=PIN1_AC))
    telecom.add(_records("6F42", "EF.SMSP", [smsp_record(SMSC)], 44, 2, read=PIN1_AC, update=PIN1_AC))
    telecom.add(_ef("6F43", "EF.SMSS", b"\xff\xff", read=PIN1_AC, update=PIN1_AC))
    return telecom


def _operator_files(imsi: str, mnc_len: int, spn: str) -> dict[str, bytes]:
    mcc, mnc = imsi[:3], imsi[3:3 + mnc_len]
    home = plmn_bytes(mcc, mnc)
    return {
        "spn": b"\x01" + spn.encode().ljust(16, b"\xff"),   # TS 31.102 4.2.12: show the SPN, not the PLMN
        "gid": b"\xff" * 8,
        "plmnwact": (home + ACT_ALL).ljust(40, b"\xff"),      # 8 entries
        "oplmnwact": (home + ACT_ALL).ljust(40, b"\xff"),
        "hplmnwact": home + ACT_ALL,
        "home": home,
    }


def gsm_files(gsm: DedicatedFile, *, imsi: str, mnc_len: int, acc: bytes, spn: str) -> None:
    """DF.GSM's files besides EF.IMSI (TS 51.011 10.3)."""
    op = _operator_files(imsi, mnc_len, spn)
    gsm.add(_ef("6F05", "EF.LP", b"\x01\xff\xff\xff", update=PIN1_AC))          # English (CB DCS 1)
    gsm.add(_ef("6F20", "EF.Kc", b"\xff" * 8 + b"\x07", read=PIN1_AC, update=PIN1_AC))
    gsm.add(_ef("6F30", "EF.PLMNsel", op["home"].ljust(24, b"\xff"), read=PIN1_AC, update=PIN1_AC))
    gsm.add(_ef("6F31", "EF.HPPLMN", b"\x0a", read=PIN1_AC))                   # 10 x 6 minutes
    gsm.add(_ef("6F38", "EF.SST", sst_bytes(SST_SERVICES), read=PIN1_AC))
    gsm.add(_ef("6F3E", "EF.GID1", op["gid"], read=PIN1_AC))
    gsm.add(_ef("6F3F", "EF.GID2", op["gid"], read=PIN1_AC))
    gsm.add(_ef("6F46", "EF.SPN", op["spn"]))
    gsm.add(_ef("6F78", "EF.ACC", acc, read=PIN1_AC))
    gsm.add(_ef("6F7B", "EF.FPLMN", b"\xff" * 12, read=PIN1_AC, update=PIN1_AC))
    gsm.add(_ef("6F7E", "EF.LOCI", b"\xff" * 4 + b"\xff\xff\xff\x00\x00\xff\x01", read=PIN1_AC, update=PIN1_AC))
    gsm.add(_ef("6FAD", "EF.AD", bytes([0x00, 0x00, 0x00, mnc_len])))
    gsm.add(_ef("6FAE", "EF.Phase", b"\x03"))                                  # phase 2 and PROFILE DOWNLOAD
    gsm.add(_ef("6FB7", "EF.ECC", b"".join(bcd(n).ljust(3, b"\xff") for n in EMERGENCY_NUMBERS)))
    gsm.add(_ef("6F60", "EF.PLMNwAcT", op["plmnwact"], read=PIN1_AC, update=PIN1_AC))
    gsm.add(_ef("6F61", "EF.OPLMNwAcT", op["oplmnwact"], read=PIN1_AC))
    gsm.add(_ef("6F62", "EF.HPLMNwAcT", op["hplmnwact"], read=PIN1_AC))
    gsm.add(_ef("6F52", "EF.KcGPRS", b"\xff" * 8 + b"\x07", read=PIN1_AC, update=PIN1_AC))
    gsm.add(_ef("6F53", "EF.LOCIGPRS", b"\xff" * 7 + b"\xff\xff\xff\x00\x00\xff\x01", read=PIN1_AC,
                update=PIN1_AC))


def usim_files(usim: DedicatedFile, *, imsi: str, mnc_len: int, msisdn: str, spn: str) -> None:
    """ADF.USIM's files besides those vuicc_fs lays out (TS 31.102 4.2)."""
    op = _operator_files(imsi, mnc_len, spn)
    usim.add(_ef("6F05", "EF.LI", b"en" + b"\xff" * 8, sfi=0x02, update=PIN1_AC))
    usim.add(_ef("6F56", "EF.EST", b"\x00", sfi=0x05, read=PIN1_AC, update=PIN1_AC))
    usim.add(_ef("6F3E", "EF.GID1", op["gid"], read=PIN1_AC))
    usim.add(_ef("6F3F", "EF.GID2", op["gid"], read=PIN1_AC))
    usim.add(_ef("6F46", "EF.SPN", op["spn"]))
    usim.add(_ef("6F60", "EF.PLMNwAcT", op["plmnwact"], sfi=0x0A, read=PIN1_AC, update=PIN1_AC))
    usim.add(_ef("6F31", "EF.HPPLMN", b"\x0a", sfi=0x12, read=PIN1_AC))
    usim.add(_records("6F40", "EF.MSISDN", [dialling_number(msisdn, "", 20)], 34, 2,
                      read=PIN1_AC, update=PIN1_AC))
    usim.add(_records("6F3C", "EF.SMS", [b"\x00"], 176, 10, read=PIN1_AC, update=PIN1_AC))
    usim.add(_ef("6F43", "EF.SMSS", b"\xff\xff", read=PIN1_AC, update=PIN1_AC))
    usim.add(_records("6F42", "EF.SMSP", [smsp_record(SMSC)], 44, 2, read=PIN1_AC, update=PIN1_AC))
    usim.add(_ef("6F5B", "EF.START-HFN", bytes.fromhex("f00000f00000"), sfi=0x0F,
                 read=PIN1_AC, update=PIN1_AC))                               # TS 31.102 4.2.51
    usim.add(_ef("6F5C", "EF.THRESHOLD", b"\xff\xff\xff", sfi=0x10, read=PIN1_AC))  # 4.2.52
    usim.add(_ef("6F61", "EF.OPLMNwAcT", op["oplmnwact"], sfi=0x11, read=PIN1_AC))
    usim.add(_ef("6F62", "EF.HPLMNwAcT", op["hplmnwact"], sfi=0x13, read=PIN1_AC))
    usim.add(_records("6FB7", "EF.ECC", [ecc_record(n) for n in EMERGENCY_NUMBERS], 20, 2, sfi=0x01))
    usim.add(_ef("6FD9", "EF.EHPLMN", op["home"].ljust(12, b"\xff"), sfi=0x1D, read=PIN1_AC))


def isim_adf(*, imsi: str, mnc_len: int, auth_key: bytes) -> DedicatedFile:
    """ADF.ISIM (TS 31.103 4.2) with the IMS identities a 3GPP network derives from the IMSI
    (TS 23.003 13.3-13.4b) and the SJA2's own EF.ISIM_AUTH_KEY."""
    mcc, mnc = imsi[:3], imsi[3:3 + mnc_len].rjust(3, "0")
    domain = f"ims.mnc{mnc}.mcc{mcc}.3gppnetwork.org"
    isim = DedicatedFile(FID_ADF_ISIM, "ADF.ISIM", aid=ISIM_AID)
    isim.add(_ef("6F07", "EF.IST", ust_bytes(IST_SERVICES, 2), sfi=0x07, read=PIN1_AC))
    isim.add(_ef("6F02", "EF.IMPI", tlv80(f"{imsi}@{domain}").ljust(64, b"\xff"), sfi=0x02, read=PIN1_AC))
    isim.add(_ef("6F03", "EF.DOMAIN", tlv80(domain).ljust(64, b"\xff"), sfi=0x05, read=PIN1_AC))
    isim.add(_records("6F04", "EF.IMPU", [tlv80(f"sip:{imsi}@{domain}")], 64, 3, sfi=0x04, read=PIN1_AC))
    isim.add(_ef("6FAD", "EF.AD", bytes([0x00, 0x00, 0x00, mnc_len]), sfi=0x03))
    isim.add(_records("6F09", "EF.PCSCF", [], 64, 2, read=PIN1_AC))
    isim.add(_records("6FE7", "EF.UICCIARI", [], 64, 2, read=PIN1_AC))
    isim.add(_ef("AF20", "EF.ISIM_AUTH_KEY", auth_key, read=ADM1_AC))
    return isim


__all__ = ["ISIM_AID", "FID_ADF_ISIM", "UST_SERVICES", "UST_LENGTH", "telecom_df", "gsm_files", "usim_files",
           "isim_adf", "sst_bytes", "plmn_bytes", "bcd"]
