"""Encode/decode vectors for every card file declared in drivers/uicc_files.py, the FCP
parser and the AUTHENTICATE response parser. Expected bytes are written out by hand from
the spec clauses (or public vectors quoted in facts/3gpp.md), not computed by the code."""

from __future__ import annotations

import pytest

from mcim_hil.drivers import uicc_files as f
from mcim_hil.drivers.uicc import AuthSuccess, AuthSyncFailure, adm_key, parse_authenticate_response, pin_block

H = bytes.fromhex


# --------------------------------------------------------------------------- EF.IMSI (TS 31.102 4.2.2)

@pytest.mark.parametrize("imsi, file_hex", [
    ("001010123456789", "080910101032547698"),   # facts/3gpp.md (pySim vector)
    ("228062800000208", "082982608200002080"),   # facts/3gpp.md (pySim vector)
    ("26201123456789", "0821261021436587f9"),    # 14 digits: parity nibble 1, 'F' pad
    ("001010000000001", "080910100000000010"),
])
def test_imsi_vectors(imsi: str, file_hex: str) -> None:
    assert f.encode_imsi(imsi) == H(file_hex)
    assert f.decode_imsi(H(file_hex)) == imsi


def test_imsi_short_with_ff_padding() -> None:
    assert f.decode_imsi(H("0429261011ffffffff")) == "2620111"
    assert f.encode_imsi("2620111") == H("0429261011ffffffff")


@pytest.mark.parametrize("bad", ["", "12345", "1234567890123456", "00101012345678a"])
def test_imsi_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ValueError):
        f.encode_imsi(bad)


def test_imsi_decode_rejects_empty_file_and_wrong_parity() -> None:
    with pytest.raises(ValueError, match="empty"):
        f.decode_imsi(H("ffffffffffffffffff"))
    with pytest.raises(ValueError, match="parity"):
        f.decode_imsi(H("080110101032547698"))  # parity nibble 1 (even) with 15 digits


# --------------------------------------------------------------------------- EF.ICCID (TS 102 221 13.2)

@pytest.mark.parametrize("iccid, file_hex", [
    ("8949440000001155314", "989444000000115513f4"),   # 19 digits, 'F' pad
    ("89014103211118510720", "98101430121181157002"),  # 20 digits
])
def test_iccid_vectors(iccid: str, file_hex: str) -> None:
    assert f.decode_iccid(H(file_hex)) == iccid
    assert f.encode_iccid(iccid) == H(file_hex)


def test_iccid_is_declared_factory_data() -> None:
    assert f.EF_ICCID.factory and f.EF_ICCID.fid == "2FE2" and f.EF_ICCID.parent == "MF"


# --------------------------------------------------------------------------- EF.AD (TS 31.102 4.2.18)

@pytest.mark.parametrize("file_hex, ad", [
    ("00000002", f.AdminData(0x00, H("0000"), 2)),
    ("80000003", f.AdminData(0x80, H("0000"), 3)),
    ("0100010200", f.AdminData(0x01, H("0001"), 2, H("00"))),
])
def test_ad_vectors(file_hex: str, ad: f.AdminData) -> None:
    assert f.decode_ad(H(file_hex)) == ad
    assert f.encode_ad(ad) == H(file_hex)


def test_ad_three_bytes_has_no_mnc_length_and_bad_mnc_refused() -> None:
    assert f.decode_ad(H("000000")).mnc_len is None
    with pytest.raises(ValueError):
        f.encode_ad(f.AdminData(mnc_len=4))


# --------------------------------------------------------------------------- EF.DIR (TS 102 221 13.1)

PYSIM_DIR_RECORD = ("61294f10a0000000871002ffffffff890709000050055553696d31730ea00c80011781025f608203454150"
                    "ffffffffffffffffffff")


def test_dir_record_decodes_public_vector() -> None:
    rec = f.decode_dir_record(H(PYSIM_DIR_RECORD))
    assert rec == f.DirRecord(H("a0000000871002ffffffff8907090000"), "USim1")
    assert rec.is_usim


def test_dir_record_encode_and_empty() -> None:
    rec = f.DirRecord(H("a0000000871004ffffffff8907090000"), "ISim1")
    assert f.encode_dir_record(rec) == H("61194f10a0000000871004ffffffff890709000050054953696d31")
    assert not rec.is_usim  # app code 1004 is ISIM
    assert f.decode_dir_record(H("ff" * 32)) is None


# --------------------------------------------------------------------------- SJA2 key files

K = H("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = H("cd63cb71954a9f4e48a5994e37a02baf")


def test_usim_auth_key_vector() -> None:
    raw = H("14465b5ce8b199b49faa5f0a2ee238a6bccd63cb71954a9f4e48a5994e37a02baf")
    key = f.decode_auth_key(raw)
    assert key.config == f.MILENAGE_OPC and key.config.to_byte() == 0x14
    assert key.k == K and key.op_opc == OPC
    assert f.encode_auth_key(key) == raw
    assert f.EF_USIM_AUTH_KEY.secret and f.EF_SIM_AUTH_KEY.secret


@pytest.mark.parametrize("byte, cfg", [
    (0x14, f.AuthConfig(4, opc=True)),
    (0x04, f.AuthConfig(4, opc=False)),
    (0x6f, f.AuthConfig(15, opc=False, sres_function2=True, res_4_bytes=True)),
    (0x35, f.AuthConfig(5, opc=True, sres_function2=True)),
])
def test_auth_config_bits(byte: int, cfg: f.AuthConfig) -> None:
    assert f.AuthConfig.from_byte(byte) == cfg
    assert cfg.to_byte() == byte


def test_auth_key_repr_hides_keys() -> None:
    key = f.AuthKey(f.MILENAGE_OPC, K, OPC)
    assert K.hex() not in repr(key) and OPC.hex() not in repr(key)
    assert "465b5ce8" not in repr(key).lower()


def test_milenage_cfg_default_vector() -> None:
    raw = H("4000204060"
            "00000000000000000000000000000000" "00000000000000000000000000000001"
            "00000000000000000000000000000002" "00000000000000000000000000000004"
            "00000000000000000000000000000008")
    assert f.encode_milenage_cfg(f.MilenageConfig()) == raw
    assert f.decode_milenage_cfg(raw) == f.MilenageConfig()


def test_milenage_cfg_rejects_bad_constants() -> None:
    with pytest.raises(ValueError):
        f.MilenageConfig(r=(64, 0, 32, 64))
    with pytest.raises(ValueError):
        f.MilenageConfig(c=(b"\x00" * 15,) * 5)


def test_usim_sqn_vector_and_reset() -> None:
    raw = H("0003" "000010000000" "000000000fff" "000000000021" "000000000000" "000000000043")
    sqn = f.decode_usim_sqn(raw)
    assert sqn == f.UsimSqn(0x00, 0x03, 1 << 28, 0xFFF, (0x21, 0, 0x43))
    assert f.encode_usim_sqn(sqn) == raw
    assert f.encode_usim_sqn(sqn.reset()) == H("0003" "000010000000" "000000000fff") + bytes(18)
    with pytest.raises(ValueError):
        f.decode_usim_sqn(raw[:-1])


# --------------------------------------------------------------------------- FCP (TS 102 221 11.1.1)

def test_fcp_transparent_ef() -> None:
    fcp = f.decode_fcp(H("621c" "82024121" "83026f07" "a503c00100" "8a0105" "8b036f0604" "80020009" "880138"))
    assert (fcp.kind, fcp.structure, fcp.shareable) == ("EF", "transparent", True)
    assert (fcp.fid, fcp.size, fcp.sfi, fcp.lcsi) == ("6F07", 9, 7, "activated")
    assert fcp.record_length is None


def test_fcp_linear_fixed_ef() -> None:
    fcp = f.decode_fcp(H("6212" "82054221006e05" "83022f00" "8a0105" "80020226"))
    assert (fcp.structure, fcp.record_length, fcp.record_count, fcp.size) == ("linear_fixed", 110, 5, 550)


def test_fcp_adf_with_pin_status() -> None:
    fcp = f.decode_fcp(H("6228" "82027821" "83027fff" "8410a0000000871002ffffffff8907090000" "8a0105"
                         "c609" "900140" "830101" "83010a"))
    assert fcp.is_df and fcp.structure is None
    assert fcp.df_name == H("a0000000871002ffffffff8907090000")
    assert fcp.pin_refs == (0x01, 0x0A)


def test_fcp_deactivated_and_not_fcp() -> None:
    assert f.decode_fcp(H("6207" "82024121" "8a0104")).lcsi == "deactivated"
    with pytest.raises(ValueError):
        f.decode_fcp(H("6f07"))


def test_tlv_long_length() -> None:
    value = bytes(range(200))
    assert list(f.iter_tlv(f.encode_tlv(0x80, value))) == [(0x80, value)]
    assert f.encode_tlv(0x80, value)[:3] == H("8081c8")


# --------------------------------------------------------------------------- AUTHENTICATE (TS 31.102 7.1.2.1)

def test_authenticate_success_with_kc_ts35208_set1() -> None:
    data = H("db08a54211d5e3ba50bf" "10b40ba9a3c58b2a05bbf0d987b21bf8cb" "10f769bcd751044604127672711c6d3441"
             "08eae4be823af9a08b")
    assert len(data) == 0x35
    result = parse_authenticate_response(data)
    assert result == AuthSuccess(H("a54211d5e3ba50bf"), H("b40ba9a3c58b2a05bbf0d987b21bf8cb"),
                                 H("f769bcd751044604127672711c6d3441"), H("eae4be823af9a08b"))
    assert "b40ba9a3" not in repr(result)  # CK stays out of repr


def test_authenticate_success_without_kc_and_sync_failure() -> None:
    ok = parse_authenticate_response(H("db0401020304" "10" + "11" * 16 + "10" + "22" * 16))
    assert isinstance(ok, AuthSuccess) and ok.res == H("01020304") and ok.kc is None
    sync = parse_authenticate_response(H("dc0e" + "ab" * 14))
    assert sync == AuthSyncFailure(H("ab" * 14))
    with pytest.raises(ValueError):
        parse_authenticate_response(H("dc0d" + "ab" * 13))


# --------------------------------------------------------------------------- PIN / ADM coding

def test_pin_block_and_adm_key() -> None:
    assert pin_block(b"1234") == H("31323334ffffffff")
    assert adm_key("12345678") == b"12345678"
    assert adm_key("0011223344556677") == H("0011223344556677")
    with pytest.raises(ValueError):
        pin_block(b"123")
    with pytest.raises(ValueError) as exc:
        adm_key("1234567")
    assert "1234567" not in str(exc.value)  # a mistyped key is still a key


def test_every_file_declared_once() -> None:
    where = [ef.where for ef in f.ALL_FILES]
    assert len(where) == len(set(where))
