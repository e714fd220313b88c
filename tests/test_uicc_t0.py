"""The UICC driver's T=0 procedure-byte logic (61xx, 6Cxx; TS 102 221 7.3.1.1.4) and the
AT+CSIM framing, through ScriptedTransport (expected APDUs, canned answers): these paths
cannot be forced on demand through pcscd. Everything else is in test_uicc.py, on the real stack.
"""

from __future__ import annotations

import pytest

from mcim_hil.drivers.errors import CardError, ModemError
from mcim_hil.drivers.hook import CommandEvent, CommandHook
from mcim_hil.drivers.uicc import Uicc, WrongPin
from mcim_hil.drivers.uicc_transport import CsimTransport, ScriptedTransport, ScriptMismatch

H = bytes.fromhex


FCP_6F07 = "621c82024121" "83026f07" "a503c00100" "8a0105" "8b036f0604" "80020009" "880138"


def test_t0_get_response_follows_61xx() -> None:
    stub = ScriptedTransport([
        ("00a40004026f07", "611e"),         # T=0 case 4: no Le, the card says 0x1E bytes wait
        ("00c000001e", FCP_6F07 + "9000"),  # GET RESPONSE, same CLA, Le = xx
    ])
    fcp = Uicc(stub).select("6F07")
    assert (fcp.fid, fcp.size, fcp.structure) == ("6F07", 9, "transparent")
    stub.assert_done()


def test_t0_resend_with_le_from_6cxx_and_chained_61xx() -> None:
    stub = ScriptedTransport([
        ("00b0000000", "6c09"),                     # Le 00 -> card asks for P3 = 09
        ("00b0000009", "080910101032547698" "9000"),
        ("80f2000000", "6c04"),                     # STATUS: 6C then 61 chained
        ("80f2000004", "6104"),
        ("80c0000004", "11223344" "6102"),          # GET RESPONSE keeps the command's CLA
        ("80c0000002", "5566" "9000"),
    ])
    uicc = Uicc(stub)
    assert uicc.read_binary() == H("080910101032547698")  # no FCP known: Le 00, then the card's 6C
    assert uicc.send_apdu(H("80f2000000")) == H("112233445566")
    stub.assert_done()


def test_scripted_transport_fails_on_unexpected_apdu() -> None:
    stub = ScriptedTransport([("00a40004023f00", "9000")])
    with pytest.raises(ScriptMismatch, match="expected 00a40004023f00"):
        Uicc(stub).select("2FE2")


def test_one_event_per_command_with_original_request_and_final_response() -> None:
    events: list[CommandEvent] = []
    hook = CommandHook()
    hook.subscribe(events.append)
    stub = ScriptedTransport([("00a40004026f07", "611e"), ("00c000001e", FCP_6F07 + "9000"),
                              ("002000010831323334ffffffff", "63c2")])
    uicc = Uicc(stub, hook)
    uicc.select("6F07")
    with pytest.raises(WrongPin) as exc:
        uicc.send_apdu(H("002000010831323334ffffffff"), name="VERIFY PIN1")
    assert exc.value.tries_left == 2 and exc.value.sw == 0x63C2
    assert [(e.device, e.port, e.command, e.status, e.secret) for e in events] == [
        ("uicc", "scripted card", "SELECT 6F07", "9000", False),
        ("uicc", "scripted card", "VERIFY PIN1", "63C2", True),   # VERIFY is always secret
    ]
    assert events[0].request == H("00a40004026f07")
    assert events[0].response == H(FCP_6F07 + "9000")


def test_t1_case4_carries_le() -> None:
    stub = ScriptedTransport([("00a40004026f0700", FCP_6F07 + "9000")], protocol="T=1")
    assert Uicc(stub).select("6F07").fid == "6F07"


def test_csim_transport_passes_61xx_to_the_driver() -> None:
    modem = ScriptedTransport([("00a40004026f07", "611e"), ("00c000001e", FCP_6F07 + "9000"),
                               ("00b0000009", "080910101032547698" "9000")], name="/dev/ttyUSB2")
    transport = CsimTransport(modem)
    uicc = Uicc(transport)
    assert transport.name == "AT+CSIM via /dev/ttyUSB2" and uicc.atr == b"" and transport.protocol is None
    uicc.select("6F07")
    assert uicc.read_binary() == H("080910101032547698")
    modem.assert_done()


def test_csim_transport_short_response_and_modem_error() -> None:
    modem = ScriptedTransport([("00a40004023f00", "90")], name="/dev/ttyUSB2")
    with pytest.raises(CardError, match="AT\\+CSIM via /dev/ttyUSB2: SELECT 3F00: .*no status word"):
        Uicc(CsimTransport(modem)).select("3F00")

    class RefusingModem:  # scripted: one canned failure, whatever the line
        port = "/dev/ttyUSB2"

        def csim(self, apdu: bytes, *, secret: bool = False) -> bytes:
            line = f'AT+CSIM={2 * len(apdu)},"{apdu.hex()}"'  # a careless modem quoting the line
            raise ModemError(self.port, line, "+CME ERROR: 13", "+CME ERROR: 13")

    uicc = Uicc(CsimTransport(RefusingModem()))
    with pytest.raises(CardError) as exc:
        uicc.verify_pin(b"1234", min_tries=1)
    assert str(exc.value) == ("AT+CSIM via /dev/ttyUSB2: VERIFY PIN1 (tries left): transport failed: "
                              "the modem failed the command (ModemError, +CME ERROR: 13)")
    cause = exc.value.__cause__
    assert cause is not None and cause.__cause__ is None and cause.__suppress_context__  # no AT line chained
    with pytest.raises(CardError) as plain:
        uicc.select("3F00")  # not secret: the modem's error stays chained
    assert str(plain.value).endswith("SELECT 3F00: transport failed: the modem failed the command (+CME ERROR: 13)")
    assert isinstance(plain.value.__cause__.__cause__, ModemError)


def test_csim_transport_tells_the_modem_what_is_secret() -> None:
    key_file = "14" + "11" * 32
    modem = ScriptedTransport([
        ("00d6000021" + key_file, "9000"),          # UPDATE BINARY of key material
        ("00b0000021", "6121"),                     # a read whose answer is key material...
        ("00c0000021", key_file + "9000"),          # ...comes back with GET RESPONSE
        ("00b0000004", "01020304" "9000"),
    ], name="/dev/ttyUSB2")
    uicc = Uicc(CsimTransport(modem))
    uicc.update_binary(H(key_file), secret=True)
    assert uicc.read_binary(33, secret=True) == H(key_file)
    uicc.read_binary(4)
    assert modem.sent_secret == [True, True, True, False]
    modem.assert_done()
