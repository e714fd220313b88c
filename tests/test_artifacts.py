"""The artifacts of a run as a lab engineer uses them: the APDU trace opened with tshark, the AT
and TPM logs, the message sequence, the HTML report, and no secret anywhere in any of them.

The runs go through the real stacks (swtpm, pcscd + vpcd + the virtual card, the modem on a
pty); tshark is the independent reader of the pcap. The last tests feed the writers events no
correct driver produces (a secret not flagged): the second line of defence must still hold.
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from mcim_hil.drivers.hook import CommandEvent
from mcim_hil.procedures.base import StepRow
from mcim_hil.record import Record
from mcim_hil.report import ARTIFACT_FILES, StepProgress, write_artifacts
from mcim_hil.report.pcap import REDACTED_FILLER
from report_support import ArtifactRun, leaks, run_and_write

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (scripts/setup.sh installs it)")

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")      # TS 35.208 test set 1
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory) -> ArtifactRun:
    run = run_and_write(tmp_path_factory.mktemp("relayed"), air="relayed")
    assert run.outcome.passed, [r for r in run.outcome.rows if r.verdict != "passed"]
    return run


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> ArtifactRun:
    run = run_and_write(tmp_path_factory.mktemp("module"), air="module")
    assert run.outcome.passed, [r for r in run.outcome.rows if r.verdict != "passed"]
    return run


def tshark(pcap: Path, *args: str) -> list[str]:
    done = subprocess.run([TSHARK, "-r", str(pcap), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


# -- the folder ---------------------------------------------------------------------------------

def test_every_artifact_is_written_into_the_folder(relayed: ArtifactRun) -> None:
    assert list(relayed.files) == list(ARTIFACT_FILES)
    for name, path in relayed.files.items():
        assert path == relayed.out_dir / name and path.stat().st_size > 0, name


def test_run_json_keeps_what_happened_in_each_step(relayed: ArtifactRun) -> None:
    steps = json.loads(relayed.files["run.json"].read_text())["steps"]
    assert [s["detail"] for s in steps] == [r.detail for r in relayed.outcome.rows]
    assert "RES == XRES" in steps[4]["detail"]


# -- apdu.pcap ----------------------------------------------------------------------------------

def test_pcap_is_classic_raw_ipv4_one_datagram_per_uicc_command(relayed: ArtifactRun) -> None:
    data = relayed.files["apdu.pcap"].read_bytes()
    magic, major, minor, _, _, _, linktype = struct.unpack(">IHHiIII", data[:24])
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 228)
    # first record: IPv4 / UDP to 4729 / GSMTAP v2, 16-byte header, type SIM
    packet = data[24 + 16:]
    assert packet[0] == 0x45 and packet[9] == 17
    assert struct.unpack(">H", packet[22:24])[0] == 4729
    assert packet[28:31] == bytes([2, 4, 4])


@needs_tshark
def test_tshark_checks_both_checksums_and_counts_every_command(relayed: ArtifactRun) -> None:
    rows = tshark(relayed.files["apdu.pcap"], "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                  "-T", "fields", "-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "frame.protocols")
    assert len(rows) == len(relayed.uicc_events())
    assert set(rows) == {"1\t1\tip:udp:gsmtap:gsm_sim"}   # 1: checksum good


@needs_tshark
def test_tshark_decodes_select_read_binary_and_authenticate(relayed: ArtifactRun) -> None:
    pcap = relayed.files["apdu.pcap"]
    rows = [r.split("\t") for r in tshark(pcap, "-Y", "gsm_sim", "-T", "fields", "-e", "gsm_sim.apdu.ins",
                                          "-e", "gsm_sim.apdu.sw", "-e", "gsm_sim.file_id")]
    instructions = {r[0] for r in rows}
    assert {"0xa4", "0xb0", "0x88"} <= instructions          # SELECT, READ BINARY, AUTHENTICATE
    assert any("0x6f07" in r[2] for r in rows)                # SELECT EF.IMSI (TS 31.102 4.2.2)
    assert all(r[1] for r in rows)                           # every command has its status word
    # the RAND the card got is the one the VNO sent in its AuthenticationRequest (step 5)
    payloads = tshark(pcap, "-Y", "gsm_sim.apdu.ins == 0x88", "-T", "fields", "-e", "udp.payload")
    # GSMTAP header (16 bytes), CLA INS P1 P2 Lc, then L(RAND) = 16 and RAND (TS 31.102 7.1.2)
    rands = [bytes.fromhex(p.replace(":", ""))[16 + 5 + 1:16 + 5 + 1 + 16].hex() for p in payloads]
    sent = [m["fields"]["rand"] for m in relayed.run_json_messages() if m["kind"] == "AuthenticationRequest"]
    assert rands == sent and len(sent) == 2                  # the PCID attach and the MCIM attach
    summary = "\n".join(tshark(pcap))
    assert "SELECT File EF.IMSI" in summary


@needs_tshark
def test_secret_commands_show_their_header_and_status_but_not_their_data(relayed: ArtifactRun) -> None:
    pcap = relayed.files["apdu.pcap"]
    verify = tshark(pcap, "-Y", "gsm_sim.apdu.ins == 0x20")
    assert any("VERIFY CHV CHV=10" in line for line in verify)  # ADM1 is key reference '0A' (TS 102 221 9.3)
    assert all(line.count("VERIFY") == 1 for line in verify)
    updates = [r.split("\t") for r in tshark(pcap, "-Y", "gsm_sim.apdu.ins == 0xd6", "-T", "fields",
                                             "-e", "gsm_sim.apdu.data", "-e", "gsm_sim.apdu.sw")]
    withheld = (REDACTED_FILLER * 5)[:33].hex()             # the key file's 33 bytes (EF.USIM_AUTH_KEY)
    assert [withheld, "0x9000"] in updates
    assert ["080910300000000010", "0x9000"] in updates       # EF.IMSI of the MCIM is no secret: shown


# -- at.log, tpm.log, sequence.txt ----------------------------------------------------------------------

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z  (>>|<<) (.+)$")


def test_at_log_has_every_command_sent_and_every_line_received(module: ArtifactRun) -> None:
    text = module.files["at.log"].read_text()
    lines = [LINE.match(line) for line in text.splitlines() if not line.startswith("#")]
    assert all(lines), [line for line in text.splitlines() if not line.startswith("#") and not LINE.match(line)]
    flow = [(m.group(1), m.group(2).split("  [")[0]) for m in lines]
    attach = flow.index((">>", "AT+CGATT=1"))
    assert flow[attach + 1] == ("<<", "OK")
    assert (">>", "AT+CEREG?") in flow and ("<<", '+CGPADDR: 1,"10.45.0.2"') in flow
    assert "# -- step 6: VNO provides IP connectivity" in text
    run = json.loads(module.files["run.json"].read_text())
    commands = [e for e in [*run["outside"], *(e for s in run["steps"] for e in s["events"])]
                if e.get("device") == "modem"]
    assert len([m for m in flow if m[0] == ">>"]) == len(commands)


def test_tpm_log_has_each_operation_with_its_response_code(relayed: ArtifactRun) -> None:
    lines = relayed.files["tpm.log"].read_text().splitlines()
    quote = [line for line in lines if "TPM2_Quote" in line]
    assert quote and "step 13" in quote[0] and "TPM_RC_SUCCESS" in quote[0] and " ms " in quote[0]
    unseal = [line for line in lines if "TPM2_Unseal" in line]
    assert unseal and "step 19" in unseal[0] and "secret: parameters not recorded" in unseal[0]


def test_sequence_has_one_line_per_message_in_order(relayed: ArtifactRun) -> None:
    lines = [line for line in relayed.files["sequence.txt"].read_text().splitlines() if not line.startswith("#")]
    messages = sorted(relayed.run_json_messages(), key=lambda m: m["seq"])
    assert len(lines) == len(messages)
    assert [re.split(r" {2,}", line)[4] for line in lines] == [m["kind"] for m in messages]
    attach = next(line for line in lines if "AttachRequest" in line)
    pcid = relayed.record.meta["pcid"]
    assert re.search(rf"step 1 +M2ME -> VNO +AttachRequest +imsi={pcid}$", attach)
    assert re.search(r"step 3 +CCIF --> RO/ICF +CredentialResponse .*k=<redacted> opc=<redacted>",
                     "\n".join(lines))


# -- report.html ----------------------------------------------------------------------------------------

def test_report_is_self_contained_and_tells_every_step(relayed: ArtifactRun) -> None:
    page = relayed.files["report.html"].read_text()
    run = json.loads(relayed.files["run.json"].read_text())
    for step in run["steps"]:
        assert html.escape(step["detail"]) in page, step["number"]
        assert f'id="step-{step["number"]}"' in page
    assert page.count('<g class="msg ') == len(relayed.run_json_messages())
    assert ">PASSED<" in page and html.escape(run["meta"]["title"]) in page
    # offline: no URL but the SVG namespace, no external resource, links only to the files beside it
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"]
    assert "src=" not in page and "<script" not in page and "@import" not in page
    links = [h for h in re.findall(r'href="([^"]+)"', page) if not h.startswith("#")]
    assert links == ["run.json", "apdu.pcap", "at.log", "tpm.log", "sequence.txt"]
    assert all((relayed.out_dir / link).is_file() for link in links)


# -- secrets -------------------------------------------------------------------------------------------

def test_no_artifact_holds_any_secret_of_the_run(relayed: ArtifactRun, module: ArtifactRun) -> None:
    for run in (relayed, module):
        assert set(run.secrets) == {"PCID K", "PCID OPc", "MCIM K", "MCIM OPc", "ADM1", "PIN1"}
        assert all(len(v) in (8, 16) for v in run.secrets.values())
        files = sorted(run.out_dir.iterdir())
        assert {f.name for f in files} >= set(ARTIFACT_FILES)
        found = [leak for f in files for leak in leaks(f, run.secrets)]
        assert found == []


def test_the_secret_scan_would_see_a_leak(relayed: ArtifactRun, tmp_path: Path) -> None:
    planted = tmp_path / "planted.log"
    planted.write_text(f"oops {relayed.secrets['MCIM OPc'].hex().upper()}\n")
    assert leaks(planted, relayed.secrets) == ["MCIM OPc as b'" + relayed.secrets["MCIM OPc"].hex().upper()[:6]
                                               + "'... in planted.log"]


def _event(device: str, command: str, request: bytes, response: bytes, status: str, *,
           secret: bool = False, port: str = "mcim-hil vPCD A 00 00") -> CommandEvent:
    return CommandEvent(device=device, port=port, command=command, request=request, response=response,
                        status=status, started=time.time(), duration_s=0.0005, secret=secret)


def _artifacts_of_a_leaky_driver(folder: Path) -> dict[str, Path]:
    record = Record(meta={"procedure": "scripted"})
    record.secret_values(K, OPC)
    with record.step(19, "personalise <the> card & check", ["M2ME"]) as step:
        # a driver that forgot to flag these: key material in an UPDATE BINARY and in an AT line
        record.device(_event("uicc", "UPDATE BINARY EF.KEY", bytes.fromhex("00d6000010") + K, b"\x90\x00", "9000"))
        csim = f'AT+CSIM=42,"00D6000010{OPC.hex().upper()}"'.encode() + b"\r"
        record.device(_event("modem", 'AT+CSIM=42,"00D6..."', csim, b'+CSIM: 4,"9000"\r\nOK', "OK",
                             port="/dev/ttyUSB2"))
        step.detail = "<b>wrote</b> the key"
    return write_artifacts(record, folder)


def test_an_unflagged_secret_is_still_kept_out_of_every_artifact(tmp_path: Path) -> None:
    files = _artifacts_of_a_leaky_driver(tmp_path)
    assert {"run.json", "apdu.pcap", "at.log", "report.html"} <= set(files)
    for path in files.values():
        data = path.read_bytes()
        for secret in (K, OPC):
            assert secret not in data and secret.hex().encode() not in data
            assert secret.hex().upper().encode() not in data, path.name
    page = files["report.html"].read_text()
    assert "personalise &lt;the&gt; card &amp; check" in page and "&lt;b&gt;wrote&lt;/b&gt; the key" in page
    assert "<b>wrote</b>" not in page


@needs_tshark
def test_an_unflagged_secret_command_still_shows_in_the_trace_with_the_filler(tmp_path: Path) -> None:
    files = _artifacts_of_a_leaky_driver(tmp_path)
    # the trace still shows the command, its length and status, with the filler for its data
    rows = tshark(files["apdu.pcap"], "-T", "fields", "-e", "gsm_sim.apdu.ins", "-e", "gsm_sim.apdu.data",
                  "-e", "gsm_sim.apdu.sw")
    assert rows == [f"0xd6\t{(REDACTED_FILLER * 2).hex()}\t0x9000"]


def test_a_flagged_secret_uicc_event_keeps_header_lengths_and_sw_only(tmp_path: Path) -> None:
    record = Record()
    record.device(_event("uicc", "VERIFY ADM1", bytes.fromhex("0020000a08") + b"77111606", b"\x90\x00", "9000",
                         secret=True))
    record.device(_event("uicc", "READ BINARY EF.KEY", bytes.fromhex("00b0000010"), K + b"\x90\x00", "9000",
                         secret=True))
    verify, read = json.loads(record.to_json())["outside"]
    assert (verify["request"], verify["request_header"], verify["request_length"], verify["sw"]) == \
        ("<redacted>", "0020000a08", 13, "9000")
    assert (read["response"], read["request_header"], read["response_length"], read["sw"]) == \
        ("<redacted>", "00b0000010", 16, "9000")
    pcap = write_artifacts(record, tmp_path)["apdu.pcap"].read_bytes()
    assert b"77111606" not in pcap and K not in pcap
    assert bytes.fromhex("0020000a08") + b"REDACTED" + b"\x90\x00" in pcap
    assert bytes.fromhex("00b0000010") + b"REDACTEDREDACTED" + b"\x90\x00" in pcap


# -- progress ----------------------------------------------------------------------------------------

class _Planned:
    def __init__(self, number: int | str, title: str, entities: tuple[str, ...]) -> None:
        self.number, self.title, self.entities = number, title, entities


PLAN = [_Planned(1, "M2ME attaches", ("M2ME", "VNO")), _Planned(2, "VNO asks the ICF", ("VNO", "RO/ICF")),
        _Planned("after", "attach with the MCIM", ("M2ME",))]
ROWS = [StepRow(1, ("M2ME", "VNO"), "M2ME attaches", "attached", 0.0123, "passed"),
        StepRow(2, ("VNO", "RO/ICF"), "VNO asks the ICF", "ICF unreachable", 0.5, "failed"),
        StepRow("after", ("M2ME",), "attach with the MCIM", "not run: an earlier step failed", 0.0, "skipped")]


def test_progress_prints_plain_lines_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    with StepProgress(PLAN, out) as progress:
        progress.status("bringing up bench emulated")
        progress.header("initial provisioning")
        for row in ROWS:
            progress(row)
    assert out.getvalue().splitlines() == [
        "initial provisioning",
        " step  entities                  duration  verdict what happened",
        "    1  M2ME, VNO                   12.3 ms  PASS    attached",
        "    2  VNO, RO/ICF                500.0 ms  FAIL    ICF unreachable",
        "after  M2ME                         0.0 ms  SKIP    not run: an earlier step failed",
    ]


def test_progress_on_a_terminal_rewrites_a_status_line_with_steps_done_and_the_current_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "160")    # the status line is cut to the terminal's width
    out = io.StringIO()
    with StepProgress(PLAN, out, live=True, tick_s=60) as progress:
        progress.header("initial provisioning")
        shown_first = out.getvalue()
        progress(ROWS[0])
        shown_second = out.getvalue()[len(shown_first):]
    assert "0/3 steps done" in shown_first and "step 1 (M2ME, VNO): M2ME attaches" in shown_first
    assert shown_second.startswith("\r\x1b[K    1  M2ME, VNO")      # the status line gave way to the row
    assert "1/3 steps done" in shown_second and "step 2 (VNO, RO/ICF): VNO asks the ICF" in shown_second
    assert out.getvalue().endswith("\r\x1b[K")                    # closed: the status line is gone
