"""The record's second line of redaction (at writing time), each form of a secret pinned.

test_record.py covers the hex forms in values; here: a secret used as a dict key, the raw ASCII
form of a bytes secret, a text secret's UTF-8 hex, nesting, the shortest secret scrubbed and
the one too short to scrub, and a secret containing another going whole.
"""

from __future__ import annotations

import json

import pytest

from mcim_hil.drivers.hook import CommandEvent
from mcim_hil.network.messages import AuthenticationResponse
from mcim_hil.record import REDACTED, Record

ADM = b"53253116"  # printable ASCII bytes: shows up in a trace as itself, not only as hex
K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")


def written(record: Record) -> tuple[str, dict]:
    text = record.to_json()
    return text, json.loads(text)  # scrubbing never breaks the JSON


def test_a_secret_used_as_a_dict_key_is_scrubbed() -> None:
    record = Record(meta={"keys": {K.hex(): "loaded", "adm " + ADM.decode(): "ok"}})
    record.secret_values(K, ADM)
    text, data = written(record)
    assert K.hex() not in text and ADM.decode() not in text
    assert data["meta"]["keys"] == {REDACTED: "loaded", f"adm {REDACTED}": "ok"}


def test_a_non_string_dict_key_is_written_as_text_and_scrubbed() -> None:
    record = Record(meta={"by_pin": {12345678: "pin as a number key"}})
    record.secret_values("12345678")
    text, data = written(record)
    assert "12345678" not in text and data["meta"]["by_pin"] == {REDACTED: "pin as a number key"}


def test_the_raw_ascii_form_of_a_bytes_secret_is_scrubbed() -> None:
    record = Record(meta={"note": f"ADM1 is {ADM.decode()}", "hex": ADM.hex(), "HEX": ADM.hex().upper()})
    record.secret_values(ADM)
    text, data = written(record)
    for form in (ADM.decode(), ADM.hex(), ADM.hex().upper()):
        assert form not in text
    assert data["meta"] == {"note": f"ADM1 is {REDACTED}", "hex": REDACTED, "HEX": REDACTED}


def test_a_bytes_secret_that_is_not_text_is_scrubbed_as_hex_only() -> None:
    record = Record(meta={"note": K.hex().upper()})
    record.secret_values(K)
    assert written(record)[1]["meta"]["note"] == REDACTED
    assert record.scrub(K.decode("latin-1")) == K.decode("latin-1")  # no raw form registered for it


def test_a_text_secret_is_scrubbed_as_its_utf8_hex() -> None:
    record = Record(meta={"apdu": "0020000108" + b"1234".hex() + "ffffffff", "APDU": b"1234".hex().upper()})
    record.secret_values("1234")
    assert written(record)[1]["meta"] == {"apdu": "0020000108" + REDACTED + "ffffffff", "APDU": REDACTED}


def test_secrets_in_nested_lists_and_tuples_are_scrubbed_and_numbers_stay_numbers() -> None:
    record = Record(meta={"rows": [("k", K.hex(), 3), {"deep": [ADM.decode()]}], "count": 2, "ok": True})
    record.secret_values(K, ADM)
    data = written(record)[1]
    assert data["meta"] == {"rows": [["k", REDACTED, 3], {"deep": [REDACTED]}], "count": 2, "ok": True}


def test_the_shortest_secret_is_scrubbed_and_shorter_text_is_not_registered() -> None:
    record = Record(meta={"pin": "PIN 1234", "short": "ab"})
    record.secret_values("1234", "ab", b"")
    assert written(record)[1]["meta"] == {"pin": f"PIN {REDACTED}", "short": "ab"}


def test_a_secret_containing_another_goes_whole() -> None:
    record = Record(meta={"note": "1234567812345678"})
    record.secret_values("12345678", "1234567812345678")  # the longer one must win
    assert written(record)[1]["meta"]["note"] == REDACTED


def test_secrets_registered_after_a_write_are_scrubbed_in_the_next() -> None:
    record = Record(meta={"note": ADM.decode()})
    assert ADM.decode() in record.to_json()  # nothing registered yet
    record.secret_values(ADM)
    assert ADM.decode() not in record.to_json()


def test_a_secret_of_another_type_is_refused() -> None:
    with pytest.raises(TypeError, match="a secret value must be bytes or str, not int"):
        Record().secret_values(1234)  # type: ignore[arg-type]


def test_values_that_are_not_text_keep_their_json_type_or_become_scrubbed_hex() -> None:
    record = Record(meta={"none": None, "flag": False, "count": 3, "ratio": 0.5, "blob": K, "adm": ADM})
    record.secret_values(K)
    assert written(record)[1]["meta"] == {"none": None, "flag": False, "count": 3, "ratio": 0.5,
                                          "blob": REDACTED, "adm": ADM.hex()}


def _event(device: str, request: bytes, response: bytes, *, secret: bool) -> CommandEvent:
    return CommandEvent(device=device, port="port", command="CMD", request=request, response=response,
                        status="9000", started=0.0, duration_s=0.001, secret=secret)


def outline(request: bytes, response: bytes = b"\x90\x00", device: str = "uicc") -> dict:
    record = Record()
    record.device(_event(device, request, response, secret=True))
    (entry,) = written(record)[1]["outside"]
    assert entry["request"] == REDACTED and entry["response"] == REDACTED
    return {k: v for k, v in entry.items() if k in ("request_header", "request_length", "response_length", "sw")}


def test_a_secret_uicc_command_keeps_its_short_header_lengths_and_sw_only() -> None:
    assert outline(bytes.fromhex("0020000a08") + ADM, bytes.fromhex("63c2")) == {
        "request_header": "0020000a08", "request_length": 13, "response_length": 0, "sw": "63C2"}


def test_a_secret_uicc_command_with_extended_lc_keeps_seven_header_bytes() -> None:
    # ISO/IEC 7816-4 5.1: '00' then a 2-byte Lc; one data byte follows, and stays hidden
    assert outline(bytes.fromhex("00d6000000000142"), bytes.fromhex("11229000"))["request_header"] == "00d60000000001"
    assert outline(bytes.fromhex("00d6000000000142"), bytes.fromhex("11229000"))["response_length"] == 2


def test_a_seven_byte_command_is_no_extended_lc_and_keeps_five_header_bytes() -> None:
    assert outline(bytes.fromhex("00b0000000010a"))["request_header"] == "00b0000000"  # case 2E: Le, no data


def test_a_short_or_missing_status_word_is_not_invented() -> None:
    assert outline(bytes.fromhex("0020000a08") + ADM, b"\x90")["sw"] is None
    assert outline(bytes.fromhex("0020000a08") + ADM, b"")["response_length"] == 0
    assert outline(bytes.fromhex("0020000a08") + ADM, b"\x90\x00")["sw"] == "9000"


def test_a_secret_event_of_another_device_keeps_no_outline() -> None:
    assert outline(b'AT+CPIN="1234"\r', b"OK", device="modem") == {}


def test_a_uicc_command_that_is_not_secret_keeps_its_bytes_and_no_outline() -> None:
    record = Record()
    record.device(_event("uicc", bytes.fromhex("00a40004023f00"), b"\x90\x00", secret=False))
    (entry,) = written(record)[1]["outside"]
    assert entry["request"] == "00a40004023f00" and "request_header" not in entry


# -- session keys: the card's AUTHENTICATE answer and the RES on the network (TS 31.102 7.1.2.1) --

RAND = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")
RES, CK, IK = bytes.fromhex("a54211d5e3ba50bf"), bytes.fromhex("b40ba9a3c58b2a05bbf0d987b21bf8cb"), \
    bytes.fromhex("f769bcd751044604127672711c6d3441")
AUTHENTICATE = bytes.fromhex("008800812210") + RAND + bytes.fromhex("10") + bytes(16)  # 3G context, RAND, AUTN
ANSWER = b"\xdb\x08" + RES + b"\x10" + CK + b"\x10" + IK + b"\x90\x00"


def _authenticate(record: Record, request: bytes = AUTHENTICATE, answer: bytes = ANSWER) -> dict:
    record.device(_event("uicc", request, answer, secret=False))  # the driver does not flag it
    return written(record)[1]["outside"][-1]


def test_an_authenticate_answer_is_hidden_and_its_keys_are_scrubbed_elsewhere() -> None:
    record = Record(meta={"seen elsewhere": f"ck={CK.hex()} ik={IK.hex().upper()} res={RES.hex()}"})
    entry = _authenticate(record)
    assert entry["request"] == AUTHENTICATE.hex()          # RAND and AUTN may show
    assert entry["response"] == REDACTED and entry["secret"] is True and "session_keys" not in entry
    assert (entry["request_header"], entry["response_length"], entry["sw"]) == ("0088008122", 44, "9000")
    text, data = written(record)
    assert data["meta"]["seen elsewhere"] == f"ck={REDACTED} ik={REDACTED} res={REDACTED}"
    assert not any(key.hex() in text.lower() for key in (RES, CK, IK))


def test_an_authenticate_answer_shows_whole_when_the_keys_are_revealed() -> None:
    record = Record(meta={"seen elsewhere": CK.hex()}, reveal_session_keys=True)
    entry = _authenticate(record)
    assert entry["response"] == ANSWER.hex() and entry["secret"] is False
    assert entry["session_keys"] == "revealed" and "request_header" not in entry
    assert written(record)[1]["meta"] == {"seen elsewhere": CK.hex(), "session_keys": "revealed"}


def test_a_truncated_authenticate_still_hides_its_answer() -> None:
    # two bytes are enough to name the instruction: the answer is the card's, whatever came before
    assert _authenticate(Record(), bytes.fromhex("0088"))["response"] == REDACTED


@pytest.mark.parametrize("request_bytes", [b"", b"\x00"])
def test_a_command_too_short_to_name_its_instruction_is_recorded_as_it_is(request_bytes: bytes) -> None:
    entry = _authenticate(Record(), request_bytes, b"\x6d\x00")
    assert (entry["request"], entry["response"], entry["secret"]) == (request_bytes.hex(), "6d00", False)


@pytest.mark.parametrize("reveal", [False, True])
def test_an_answer_that_only_looks_like_authenticate_keeps_its_bytes_and_no_mark(reveal: bool) -> None:
    # READ BINARY whose data starts 'DB' like a 3G answer: no session key there, nothing registered,
    # and no "revealed" mark on a command that carried none
    entry = _authenticate(Record(reveal_session_keys=reveal), bytes.fromhex("00b0000012"), ANSWER)
    assert entry["response"] == ANSWER.hex() and entry["secret"] is False
    assert "request_header" not in entry and "session_keys" not in entry


def test_another_devices_bytes_are_never_taken_for_an_authenticate() -> None:
    record = Record()
    record.device(_event("modem", b"\x00\x88raw", ANSWER, secret=False))  # INS position holds 0x88 by chance
    (entry,) = written(record)[1]["outside"]
    assert entry["response"] == ANSWER.hex() and entry["secret"] is False


def test_a_res_on_the_network_is_redacted_and_scrubbed_elsewhere() -> None:
    record = Record(meta={"card said": RES.hex()})
    record.message(AuthenticationResponse(sender="m2me", recipient="vno", imsi="001010000000001", res=RES),
                   "request", 0.0, 0.001)
    text, data = written(record)
    (msg,) = data["outside"]
    assert msg["fields"] == {"imsi": "001010000000001", "res": REDACTED}
    assert data["meta"]["card said"] == REDACTED and RES.hex() not in text


def test_a_res_on_the_network_shows_when_the_keys_are_revealed() -> None:
    record = Record(meta={"card said": RES.hex()}, reveal_session_keys=True)
    record.message(AuthenticationResponse(sender="m2me", recipient="vno", imsi="001010000000001", res=RES),
                   "request", 0.0, 0.001)
    data = written(record)[1]
    assert data["outside"][0]["fields"]["res"] == RES.hex() and data["meta"]["card said"] == RES.hex()
