"""The run record: steps with verdicts, messages and device commands in order, secrets never written."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mcim_hil.drivers.hook import CommandEvent, CommandHook
from mcim_hil.network.bus import Bus
from mcim_hil.network.ccif import Ccif
from mcim_hil.network.m2mes import M2mes
from mcim_hil.network.messages import CredentialResponse
from mcim_hil.network.ro.icf import Icf
from mcim_hil.network.store import Store
from mcim_hil.network.vno import Vno
from mcim_hil.record import REDACTED, Record, StepSkipped
from network_support import SoftUsim

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")


def event(command: str, request: bytes, response: bytes, *, secret: bool = False) -> CommandEvent:
    return CommandEvent(device="uicc", port="mcim-hil vPCD A 00 00", command=command, request=request,
                        response=response, status="9000", started=time.time(), duration_s=0.001,
                        secret=secret)


def test_steps_carry_verdicts_durations_and_errors() -> None:
    record = Record()
    t0 = time.perf_counter()
    with record.step(1, "attach", ["M2ME", "VNO"]):
        pass
    with pytest.raises(RuntimeError):
        with record.step(2, "ICF", ["VNO", "ICF"]):
            raise RuntimeError("ICF unreachable")
    with record.step(3, "co-located", ["RO"]):
        raise StepSkipped("RO co-located with the VNO")
    with record.step(4, "marked", ["RO"]) as step:
        step.skip("nothing to do")
    record.skip_step(5, "not run", ["DRF"], "earlier step failed")
    elapsed = time.perf_counter() - t0
    steps = json.loads(record.to_json())["steps"]
    assert [(s["number"], s["verdict"]) for s in steps] == [
        (1, "passed"), (2, "failed"), (3, "skipped"), (4, "skipped"), (5, "skipped")]
    assert steps[1]["error"] == "RuntimeError: ICF unreachable"
    assert steps[2]["error"] == "RO co-located with the VNO"
    # each run step's duration is measured in seconds inside the test's own window; a skipped one took none
    assert all(0 <= s["duration_s"] <= elapsed for s in steps[:4]) and steps[4]["duration_s"] == 0.0
    assert steps[0]["entities"] == ["M2ME", "VNO"]


def test_device_commands_land_in_the_open_step_and_secret_ones_keep_no_bytes() -> None:
    record = Record()
    hook = CommandHook()
    hook.subscribe(record.device)
    hook.emit(event("STATUS", bytes.fromhex("80f2000000"), b"\x90\x00"))
    with record.step(19, "provision MCIM", ["M2ME"]):
        hook.emit(event("SELECT", bytes.fromhex("00a40004023f00"), b"\x90\x00"))
        hook.emit(event("VERIFY", bytes.fromhex("0020000a083132333435363738"), b"\x90\x00", secret=True))
    data = json.loads(record.to_json())
    assert [e["command"] for e in data["outside"]] == ["STATUS"]
    events = data["steps"][0]["events"]
    assert [e["command"] for e in events] == ["SELECT", "VERIFY"]
    assert events[0]["request"] == "00a40004023f00" and events[0]["step"] == 19
    assert events[1]["request"] == REDACTED and events[1]["response"] == REDACTED
    assert events[0]["seq"] < events[1]["seq"]


def test_registered_secrets_are_scrubbed_everywhere_in_both_hex_cases(tmp_path: Path) -> None:
    record = Record(meta={"note": f"key {K.hex().upper()} in a note"})
    record.secret_values(K, "12345678")
    with record.step(1, "leaky", []):
        # a driver that forgot to flag its event: the second line of defence catches it
        record.device(event("UPDATE BINARY", bytes.fromhex("00d6000010") + K, b"\x90\x00"))
        record.device(event("VERIFY", b"0020000a08" + b"12345678", b"\x90\x00"))
    path = record.write(tmp_path / "run")
    text = path.read_text()
    assert path.name == "run.json"
    for leak in (K.hex(), K.hex().upper(), "12345678", b"12345678".hex()):
        assert leak not in text
    data = json.loads(text)  # still valid JSON
    assert data["steps"][0]["events"][0]["request"] == "00d6000010" + REDACTED
    assert data["meta"]["note"] == f"key {REDACTED} in a note"


def test_secret_message_fields_are_redacted_and_their_values_scrubbed_elsewhere() -> None:
    record = Record()
    msg = CredentialResponse(sender="ccif", recipient="icf", pcid="001020000000001", found=True, k=K, opc=OPC)
    assert K.hex() not in repr(msg) and REDACTED in repr(msg)
    record.message(msg, "reply", time.time(), 0.001)
    # the same key showing up unflagged elsewhere is scrubbed too (registered from the message)
    record.device(event("UPDATE BINARY", b"\x00\xd6\x00\x00\x20" + K + OPC, b"\x90\x00"))
    text = record.to_json()
    assert K.hex() not in text and OPC.hex() not in text
    fields = record.messages()[0]["fields"]
    assert fields["k"] == REDACTED and fields["opc"] == REDACTED and fields["pcid"] == "001020000000001"


def test_a_whole_attach_writes_no_key_material(tmp_path: Path) -> None:
    record = Record()
    bus = Bus(record)
    store = Store(tmp_path / "network.sqlite")
    Ccif(bus, store, address="ccif", pcid_plmn="00102", icf_addresses=["icf"], m2mes_addresses=["m2mes"])
    m2mes = M2mes(bus, store, address="m2mes", ccif_address="ccif")
    Icf(bus, store, address="icf", ccif_address="ccif", drf_address="drf")
    vno = Vno(bus, store, name="VNO", address="vno", plmn="00101", routes={"00102": "icf"})
    made = m2mes.personalise("platform-1", ec.generate_private_key(ec.SECP256R1()).public_key())
    usim = SoftUsim(made.k, made.opc)
    with record.step(1, "attach", ["M2ME", "VNO", "ICF", "CCIF"]):
        assert vno.attach(made.pcid, usim.authenticate).accepted
    text = record.write(tmp_path).read_text()
    for secret in (made.k, made.opc):
        assert secret.hex() not in text and secret.hex().upper() not in text
    av = json.loads(text)["steps"][0]["events"]
    response = next(e for e in av if e["kind"] == "AuthDataResponse")["fields"]["avs"][0]
    assert response["ck"] == REDACTED and response["ik"] == REDACTED and response["xres"] == REDACTED
    assert len(bytes.fromhex(response["rand"])) == 16  # RAND and AUTN go over the air: kept
    # every message names its sender and recipient
    messages = [e for e in av if e["type"] == "message"]
    assert all(m["sender"] and m["recipient"] for m in messages)
    assert ("ccif", "icf") in {(m["sender"], m["recipient"]) for m in messages}
    # nor does the network's database of the run
    store.close()
    database = (tmp_path / "network.sqlite").read_bytes()
    assert made.k not in database and made.opc not in database
