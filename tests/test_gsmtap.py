"""The module's own SIM traffic as a SIMtrace2 sniffer shows it: GSMTAP SIM frames over UDP,
merged into run.json (marked sniffed) and apdu.pcap, redacted as the harness's own commands.

Frames come over real UDP on loopback: from a socket playing a SIMtrace2, and, end to end, from
the emulated modem whose SIM is the virtual card behind pcscd. tshark reads the pcap.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from mcim_hil.aka.milenage import Milenage
from mcim_hil.drivers.hook import CommandEvent
from mcim_hil.lab import LabError
from mcim_hil.lab.gsmtap import GsmtapListener, sniff_into, split_frame
from mcim_hil.record import REDACTED, Record
from mcim_hil.report.pcap import REDACTED_FILLER, write_pcap
from report_support import ArtifactRun, leaks, run_and_write

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (scripts/setup.sh installs it)")

RAND = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")    # TS 35.208 test set 1
AUTN = bytes.fromhex("aa689c648370" "b9b9" "c9d8c3e6b7c52b2e")
AUTH_TPDU = bytes.fromhex("0088008122") + b"\x10" + RAND + b"\x10" + AUTN
ANSWER = bytes.fromhex("db08a54211d5e3ba50bf10") + bytes(range(16)) + b"\x10" + bytes(range(16, 32))


def gsmtap(payload: bytes, gsmtap_type: int = 4, sub_type: int = 0) -> bytes:
    """A frame as osmocom's SIMtrace2 sends it (gsmtap.h, version 2, 16-byte header)."""
    return struct.pack(">BBBBHbbIBBBB", 2, 4, gsmtap_type, 0, 0, 0, 0, 0, sub_type, 0, 0, 0) + payload


def sniffed(record: Record) -> list[dict]:
    data = record.to_dict()
    events = [e for s in data["steps"] for e in s["events"]] + data["outside"]
    return [e for e in events if e["type"] == "sniffed"]


def send_as_tracer(address: tuple[str, int], frames: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tracer:
        for frame in frames:
            tracer.sendto(frame, address)


# -- the listener ----------------------------------------------------------------------------------

def test_frames_from_a_tracer_land_in_the_step_running_marked_sniffed() -> None:
    record = Record()
    listener = sniff_into(record, ("127.0.0.1", 0))
    try:
        with record.step(5, "AKA", ["VNO", "M2ME"]):
            send_as_tracer(listener.address, [
                gsmtap(bytes.fromhex("00a40004026f07") + bytes.fromhex("6119")),          # SELECT EF.IMSI
                gsmtap(bytes.fromhex("00b0000009") + bytes.fromhex("080910200000000010") + b"\x90\x00"),
                b"not gsmtap at all",
                gsmtap(bytes.fromhex("3b9f96801fc78031a073be21136743200718000001a5"), sub_type=1),  # an ATR
            ])
            deadline = time.monotonic() + 10
            while listener.frames < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        listener.stop()
    events = record.to_dict()["steps"][0]["events"]
    assert [(e["type"], e["command"], e["request"], e["response"], e["status"]) for e in events] == [
        ("sniffed", "SELECT", "00a40004026f07", "6119", "6119"),
        ("sniffed", "READ BINARY", "00b0000009", "0809102000000000109000", "9000"),
    ]
    assert listener.ignored == 2
    assert all(e["source"].startswith("127.0.0.1:") and e["secret"] is False for e in events)


def test_a_busy_address_is_one_clear_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(LabError) as exc:
            GsmtapListener(("127.0.0.1", port), lambda x: None).start()
    assert str(exc.value).startswith(f"gsmtap: cannot listen on 127.0.0.1:{port}: in use")
    assert "\n" not in str(exc.value)


def test_a_case_4_command_is_split_after_its_data_a_case_2_after_its_header() -> None:
    assert split_frame(gsmtap(AUTH_TPDU + bytes.fromhex("6135"))) == (AUTH_TPDU, bytes.fromhex("6135"))
    assert split_frame(gsmtap(bytes.fromhex("00c0000035") + ANSWER + b"\x90\x00")) == \
        (bytes.fromhex("00c0000035"), ANSWER + b"\x90\x00")
    assert split_frame(gsmtap(b"\x00\xa4", gsmtap_type=4)) is None       # too short for a command
    assert split_frame(gsmtap(AUTH_TPDU + b"\x90\x00", gsmtap_type=1)) is None   # GSMTAP_TYPE_UM


# -- redaction -------------------------------------------------------------------------------------

def test_sniffed_authenticate_keeps_rand_autn_and_withholds_the_answer_and_its_get_response() -> None:
    record = Record()
    record.sniffed(time.time(), "127.0.0.1:5000", "AUTHENTICATE", AUTH_TPDU, bytes.fromhex("6135"))
    record.sniffed(time.time(), "127.0.0.1:5000", "GET RESPONSE", bytes.fromhex("00c0000035"), ANSWER + b"\x90\x00")
    record.sniffed(time.time(), "127.0.0.1:5000", "GET RESPONSE", bytes.fromhex("00c000001d"), b"\x62\x00\x90\x00")
    auth, answer, later = sniffed(record)
    assert auth["request"] == AUTH_TPDU.hex() and auth["response"] == REDACTED and auth["sw"] == "6135"
    assert answer["request"] == "00c0000035" and answer["response"] == REDACTED
    assert (answer["response_length"], answer["sw"]) == (len(ANSWER), "9000")
    assert later["response"] == "62009000"    # the next GET RESPONSE answers another command: shown
    assert ANSWER[11:27].hex() not in record.to_json()   # CK


def test_sniffed_pin_commands_and_key_files_keep_only_their_outline() -> None:
    record = Record()
    adm = b"\x31\x32\x33\x34\x35\x36\x37\x38"
    source = "127.0.0.1:5001"
    record.sniffed(time.time(), source, "VERIFY", bytes.fromhex("002000000a08") + adm, b"\x90\x00")
    record.sniffed(time.time(), source, "SELECT", bytes.fromhex("00a4000402af20"), b"\x61\x19")   # EF.USIM_AUTH_KEY
    key_file = bytes([0x00, 0xD6, 0x00, 0x00, 0x21]) + bytes(range(0x40, 0x61))
    record.sniffed(time.time(), source, "UPDATE BINARY", key_file, b"\x90\x00")
    record.sniffed(time.time(), source, "SELECT", bytes.fromhex("00a40004026f07"), b"\x61\x19")   # EF.IMSI
    record.sniffed(time.time(), source, "READ BINARY", bytes.fromhex("00b0000009"),
                   bytes.fromhex("080910200000000010") + b"\x90\x00")
    verify, _, update, _, read = sniffed(record)
    assert (verify["request"], verify["request_header"], verify["sw"]) == (REDACTED, "002000000a", "9000")
    assert (update["request"], update["request_length"]) == (REDACTED, len(key_file))
    assert read["response"] == "0809102000000000109000" and read["secret"] is False
    text = record.to_json()
    assert adm.hex() not in text and key_file[5:].hex() not in text


def test_a_registered_secret_in_a_sniffed_frame_is_withheld() -> None:
    record = Record()
    secret = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
    record.secret_values(secret)
    record.sniffed(time.time(), "127.0.0.1:5002", "ENVELOPE", bytes.fromhex("80c2000010") + secret, b"\x90\x00")
    (event,) = sniffed(record)
    assert event["request"] == REDACTED and secret.hex() not in record.to_json()


def test_the_harness_s_own_authenticate_keeps_rand_autn_and_withholds_the_session_keys(tmp_path: Path) -> None:
    # Relayed AKA: the UICC driver does not flag AUTHENTICATE secret, yet CK and IK are session keys.
    record = Record()
    record.device(CommandEvent("uicc", "mcim-hil vPCD A 00 00", "AUTHENTICATE", AUTH_TPDU + b"\x00",
                               ANSWER + b"\x90\x00", "9000", time.time(), 0.001))
    (event,) = record.to_dict()["outside"]
    assert event["request"] == (AUTH_TPDU + b"\x00").hex() and event["response"] == REDACTED
    pcap = write_pcap(record, tmp_path / "apdu.pcap").read_bytes()
    assert ANSWER[11:27] not in pcap and RAND in pcap
    assert REDACTED_FILLER in pcap


# -- end to end: the emulated module's own AKA, seen as a tracer sees it -----------------------------

@pytest.fixture(scope="module")
def module_run(tmp_path_factory: pytest.TempPathFactory) -> ArtifactRun:
    run = run_and_write(tmp_path_factory.mktemp("module"), air="module")
    assert run.outcome.passed, [r for r in run.outcome.rows if r.verdict != "passed"]
    return run


def test_run_json_holds_the_module_s_authenticate_marked_sniffed_in_step_5(module_run: ArtifactRun) -> None:
    data = json.loads((module_run.out_dir / "run.json").read_text())
    step5 = next(s for s in data["steps"] if s["number"] == 5)
    auths = [e for e in step5["events"] if e["type"] == "sniffed" and e["command"] == "AUTHENTICATE"]
    assert len(auths) == 1 and auths[0]["response"] == REDACTED
    sent = next(e for e in step5["events"] if e.get("kind") == "AuthenticationRequest")["fields"]
    assert auths[0]["request"] == "0088008122" + "10" + sent["rand"] + "10" + sent["autn"]
    assert data["meta"]["sniffer"]["tracer"] == "emulated modem" and data["meta"]["sniffer"]["frames"] > 0
    # the harness itself sent no AUTHENTICATE in this air mode: the module did
    assert not [e for s in data["steps"] for e in s["events"]
                if e["type"] == "device" and e["command"] == "AUTHENTICATE"]


@needs_tshark
def test_tshark_shows_the_module_s_authenticate_from_the_tracer_with_its_answer_withheld(
        module_run: ArtifactRun) -> None:
    pcap = module_run.out_dir / "apdu.pcap"
    done = subprocess.run([TSHARK, "-r", str(pcap), "-Y", "udp.srcport != 4729 && gsm_sim", "-T", "fields",
                           "-e", "gsm_sim.apdu.ins", "-e", "gsm_sim.apdu.sw", "-e", "udp.payload"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    instructions = [r[0] for r in rows]
    assert instructions.count("0x88") == 2            # the PCID attach and the MCIM attach
    i = instructions.index("0x88")
    assert rows[i + 1][0] == "0xc0" and rows[i + 1][1] == "0x9000"   # GET RESPONSE fetching the answer
    answer = bytes.fromhex(rows[i + 1][2].replace(":", ""))[16 + 5:-2]
    assert answer == (REDACTED_FILLER * 8)[:len(answer)] and len(answer) > 16


def test_no_session_key_of_the_module_s_aka_in_any_artifact(module_run: ArtifactRun) -> None:
    data = json.loads((module_run.out_dir / "run.json").read_text())
    events = [e for s in data["steps"] for e in s["events"]]
    rands = [bytes.fromhex(e["fields"]["rand"]) for e in events if e.get("kind") == "AuthenticationRequest"]
    keys = [("PCID K", "PCID OPc"), ("MCIM K", "MCIM OPc")]
    session_keys = {}
    for n, (rand, (k, opc)) in enumerate(zip(rands, keys)):
        _res, ck, ik, _ak = Milenage(module_run.secrets[k], module_run.secrets[opc]).f2345(rand)
        session_keys[f"CK {n}"], session_keys[f"IK {n}"] = ck, ik
    assert len(session_keys) == 4
    for name in ("run.json", "apdu.pcap"):
        assert leaks(module_run.out_dir / name, session_keys | module_run.secrets) == []


# -- where to listen: bench file and command line ----------------------------------------------------

def test_a_bench_file_names_where_to_listen_and_a_bad_address_is_one_line(tmp_path: Path) -> None:
    from mcim_hil.bench import BenchFileError, load_bench
    good = tmp_path / "good.yaml"
    good.write_text("modem: {port: 'socket://127.0.0.1:7'}\ngsmtap: {listen: '127.0.0.1:4729'}\n")
    assert load_bench(good).gsmtap == "127.0.0.1:4729"
    bad = tmp_path / "bad.yaml"
    bad.write_text("modem: {port: 'socket://127.0.0.1:7'}\ngsmtap: {listen: 'tracer', port: 1}\n")
    with pytest.raises(BenchFileError) as exc:
        load_bench(bad)
    assert exc.value.problems == ["gsmtap.listen: 'tracer' is not HOST:PORT or off", "gsmtap.port: unknown key"]


def test_run_on_a_busy_gsmtap_address_stops_with_one_line_naming_it(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from mcim_hil.cli import main
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        code = main(["run", "--gsmtap", f"127.0.0.1:{port}", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == f"--gsmtap: cannot listen on 127.0.0.1:{port}: in use by another listener " \
                      "(pySim-trace, Wireshark's udp listener, another run?)"
    assert "Traceback" not in "\n".join(err)
