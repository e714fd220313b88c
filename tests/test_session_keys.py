"""RES, CK, IK and Kc are session secrets (issue 9 §4): kept out of every artifact by default,
shown only with ``--reveal-session-keys``, and then the report says so.

The runs go through the real stacks (swtpm, pcscd + vpcd + the virtual card); the session keys
are recomputed independently with Milenage from the RANDs the VNO sent and the credentials the
network holds, so the scan does not trust the record's own idea of what a session key is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mcim_hil.record import REDACTED, Record, session_keys
from report_support import ArtifactRun, leaks, run_and_write
from secrets_support import session_keys_of

TSHARK = shutil.which("tshark")


@pytest.fixture(scope="module")
def hidden(tmp_path_factory: pytest.TempPathFactory) -> ArtifactRun:
    run = run_and_write(tmp_path_factory.mktemp("hidden"), air="relayed")
    assert run.outcome.passed, [(r.number, r.detail) for r in run.outcome.rows if r.verdict != "passed"]
    return run


@pytest.fixture(scope="module")
def revealed(tmp_path_factory: pytest.TempPathFactory) -> ArtifactRun:
    run = run_and_write(tmp_path_factory.mktemp("revealed"), air="relayed", reveal_session_keys=True)
    assert run.outcome.passed, [(r.number, r.detail) for r in run.outcome.rows if r.verdict != "passed"]
    return run


def test_no_res_ck_ik_or_kc_in_any_artifact_by_default(hidden: ArtifactRun) -> None:
    keys = session_keys_of(hidden)
    assert {name.split()[0] for name in keys} == {"RES", "CK", "IK", "Kc"} and len(keys) == 8  # two attaches
    found = [leak for f in sorted(hidden.out_dir.iterdir()) for leak in leaks(f, keys)]
    assert found == []
    responses = [m for m in hidden.run_json_messages() if m["kind"] == "AuthenticationResponse"]
    assert [m["fields"]["res"] for m in responses] == [REDACTED, REDACTED]
    assert "Session keys revealed" not in (hidden.out_dir / "report.html").read_text()


def test_authenticate_keeps_its_header_rand_autn_and_status_word(hidden: ArtifactRun) -> None:
    auth = [e for e in hidden.uicc_events() if e["command"] == "AUTHENTICATE"]
    assert len(auth) == 2 and all(e["response"] == REDACTED for e in auth)
    requests = {m["fields"]["rand"] for m in hidden.run_json_messages() if m["kind"] == "AuthenticationRequest"}
    assert {bytes.fromhex(e["request"])[6:22].hex() for e in auth} == requests   # RAND after Lc and L(RAND)
    assert all(e["request_header"].startswith("008800") and e["sw"] == "9000" for e in auth)


def test_revealed_session_keys_are_in_run_json_and_the_pcap_and_the_report_says_so(revealed: ArtifactRun) -> None:
    keys = session_keys_of(revealed)
    run_json = revealed.out_dir / "run.json"
    assert {name.split()[0] for name in keys if leaks(run_json, {name: keys[name]})} == {"RES", "CK", "IK", "Kc"}
    assert json.loads(run_json.read_text())["meta"]["session_keys"] == "revealed"
    pcap = (revealed.out_dir / "apdu.pcap").read_bytes()
    assert all(keys[f"{k} {n}"] in pcap for k in ("RES", "CK", "IK") for n in (0, 1))
    page = (revealed.out_dir / "report.html").read_text()
    assert "Session keys revealed" in page and "--reveal-session-keys" in page
    # the long-term secrets stay out even so
    found = [leak for f in sorted(revealed.out_dir.iterdir()) for leak in leaks(f, revealed.secrets)]
    assert found == []


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (scripts/setup.sh installs it)")
def test_tshark_reads_the_revealed_authenticate_answer(revealed: ArtifactRun) -> None:
    done = subprocess.run([TSHARK, "-r", str(revealed.out_dir / "apdu.pcap"), "-Y", "gsm_sim.apdu.ins == 0x88",
                           "-T", "fields", "-e", "gsm_sim.apdu.sw", "-e", "udp.payload"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    keys = session_keys_of(revealed)
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [r[0] for r in rows] == ["0x9000", "0x9000"]
    for n, (_, payload) in enumerate(rows):
        answer = bytes([0xDB, 8]) + keys[f"RES {n}"] + bytes([16]) + keys[f"CK {n}"] + bytes([16]) + keys[f"IK {n}"]
        assert answer in bytes.fromhex(payload.replace(":", ""))


# -- the record's own judgement, fed exchanges a tracer could send ------------------------------------

RAND = bytes(range(16))
AUTN = bytes(range(16, 32))
RES, CK, IK, KC = bytes.fromhex("a54211d5e3ba50bf"), bytes(range(0x40, 0x50)), bytes(range(0x60, 0x70)), \
    bytes.fromhex("1122334455667788")
ANSWER = bytes([0xDB, 8]) + RES + bytes([16]) + CK + bytes([16]) + IK + bytes([8]) + KC
AUTHENTICATE = bytes.fromhex("0088008122") + bytes([16]) + RAND + bytes([16]) + AUTN


def _sniff(record: Record) -> None:
    with record.step(5, "AKA", ["M2ME", "VNO"]):
        # T=0: the answer comes with GET RESPONSE (TS 102 221 7.3.1.1.4)
        record.sniffed(time.time(), "127.0.0.1:4729", "AUTHENTICATE", AUTHENTICATE, bytes.fromhex("6137"))
        record.sniffed(time.time(), "127.0.0.1:4729", "GET RESPONSE", bytes.fromhex("00c0000037"),
                       ANSWER + b"\x90\x00")


def test_a_sniffed_answer_fetched_by_get_response_registers_its_keys_for_the_scrub() -> None:
    assert session_keys(ANSWER) == [RES, CK, IK, KC]
    record = Record()
    _sniff(record)
    text = record.to_json()
    assert not [k for k in (RES, CK, IK, KC) for form in (k.hex(), k.hex().upper()) if form in text]
    assert RAND.hex() in text                 # the challenge stays readable
    # the same CK where the record does not parse (a log line): scrubbed all the same
    assert record.scrub(f'AT+CSIM=42,"{CK.hex().upper()}"') == 'AT+CSIM=42,"<redacted>"'


def test_a_sniffed_answer_shows_whole_when_revealed() -> None:
    record = Record(reveal_session_keys=True)
    _sniff(record)
    events = record.steps[0].events
    assert events[1]["response"] == (ANSWER + b"\x90\x00").hex() and not events[1]["secret"]
    assert CK.hex() in record.to_json()
    assert record.scrub(f'AT+CSIM=42,"{CK.hex().upper()}"') == f'AT+CSIM=42,"{CK.hex().upper()}"'


def test_session_keys_ignores_a_sync_failure_and_a_short_answer() -> None:
    assert session_keys(bytes([0xDC, 14]) + bytes(14)) == []
    assert session_keys(b"") == []
    assert session_keys(bytes([0x04]) + RES[:4] + bytes([0x08]) + KC) == [RES[:4], KC]   # GSM context


def test_mcim_hil_run_reveal_session_keys_warns_and_marks_the_report(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from mcim_hil.cli import main
    assert main(["run", "--air", "relayed", "--out", str(tmp_path), "--reveal-session-keys"]) == 0
    err = capsys.readouterr().err
    assert "session keys (RES, CK, IK, Kc) are revealed" in err and str(tmp_path) in err
    assert json.loads((tmp_path / "run.json").read_text())["meta"]["session_keys"] == "revealed"
    assert "Session keys revealed" in (tmp_path / "report.html").read_text()
