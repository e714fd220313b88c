"""The mcim-hil command line, as an engineer runs it (a subprocess, its output and exit code)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcim_hil.bench import DEFAULT_BENCH
from mcim_hil.drivers.modem import Modem
from mcim_hil.drivers.tpm import Tpm
from mcim_hil.drivers.uicc import Uicc
from mcim_hil.drivers.uicc_transport import PcscTransport
from mcim_hil.emulators.pcscd import LOCK_DIR

CLI = [sys.executable, "-m", "mcim_hil"]


def mcim_hil(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


def test_bench_check_prints_every_device_of_the_emulated_bench() -> None:
    done = mcim_hil("bench", "check")
    assert done.returncode == 0, done.stderr
    rows = {tuple(line.split(None, 2)[:2]): line.split(None, 2)[2] for line in done.stdout.splitlines()[2:]}
    assert rows[("tpm", "manufacturer")].startswith("IBM")
    assert rows[("tpm", "EK")] == "present, certificate in NV"
    assert rows[("uicc", "ATR")] == "3b9f96801f878031e073fe211b674a4c753034054ba9"
    assert rows[("uicc", "ICCID")] == "8988211000000000017"
    assert rows[("modem", "model")] == "EMU-LTE"
    assert rows[("modem", "IMEI")] == "356938035643809"


def test_bench_check_names_the_device_that_failed(tmp_path: Path) -> None:
    bench = tmp_path / "bench.yaml"
    bench.write_text(f"""
name: broken-tpm
tpm: {{tcti: "swtpm:host=127.0.0.1,port=9"}}
uicc: {{emulator: vuicc, secrets: {{adm1: {{file: {DEFAULT_BENCH.parent}/emulated-secrets/adm1}}}}}}
""")
    done = mcim_hil("bench", "check", "--bench", str(bench))
    assert done.returncode == 1
    assert "bench check failed: tpm" in done.stderr
    assert "tpm     FAILED    swtpm:host=127.0.0.1,port=9" in done.stdout
    assert "uicc    ICCID" in done.stdout  # the other devices are still checked


def test_malformed_bench_file_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    bench = tmp_path / "bench.yaml"
    bench.write_text("tpm: {tcti: 42}\nmodem: {port: /dev/ttyNOPE0, parity: odd}\n")
    done = mcim_hil("bench", "check", "--bench", str(bench))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{bench}: tpm.tcti: expected str, got int (42)",
        f"{bench}: tpm: give either tcti (a real device) or emulator",
        f"{bench}: modem.parity: unknown key",
    ]


def test_bench_up_prints_endpoints_that_tools_can_use_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(CLI + ["bench", "up"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while True:
            line = proc.stdout.readline()
            assert line, f"bench up ended early: {proc.stderr.read()}"
            if line.startswith("#"):
                break
            lines.append(line.strip())
        endpoints = dict(line.split("=", 1) for line in lines)
        assert set(endpoints) == {"tpm_tcti", "uicc_reader", "modem_port"}
        with Tpm.open(endpoints["tpm_tcti"]) as tpm:
            assert tpm.info().manufacturer == "IBM"
        transport = PcscTransport.open(endpoints["uicc_reader"])
        try:
            assert Uicc(transport).read_iccid() == "8988211000000000017"
        finally:
            transport.close()
        with Modem.open(endpoints["modem_port"]) as modem:
            assert modem.identity().model == "EMU-LTE"
        swtpm_port = endpoints["tpm_tcti"].rsplit("=", 1)[1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        still = subprocess.run(["pgrep", "-f", f"port={swtpm_port}"], capture_output=True, text=True)
        assert still.stdout.strip() == "", "swtpm still running after bench up stopped"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_run_prints_one_row_per_seed_step_and_writes_run_json(tmp_path: Path) -> None:
    done = mcim_hil("run", "--procedure", "initial", "--air", "relayed", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line[:5].strip().isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, 22))
    assert all("PASS" in r for r in rows)
    assert "initial: PASSED" in done.stdout
    run = json.loads((tmp_path / "run.json").read_text())
    assert [s["number"] for s in run["steps"]] == list(range(1, 22)) + ["after"]
    assert all(s["verdict"] == "passed" for s in run["steps"])
    kinds = {e.get("kind") for s in run["steps"] for e in s["events"]}
    assert {"AttachRequest", "AuthenticationRequest", "BootstrapMessage", "EvidenceRequest",
            "M2MSIMMobjDownload", "ProvisioningStatus"} <= kinds
    devices = {e.get("device") for s in run["steps"] for e in s["events"]}
    assert {"tpm", "uicc"} <= devices


def test_run_exits_non_zero_naming_the_failed_step(tmp_path: Path) -> None:
    # the supplier says it shipped another module firmware than the one the module reports
    bench = tmp_path / "bench.yaml"
    text = DEFAULT_BENCH.read_text().replace("emulated-secrets/", f"{DEFAULT_BENCH.parent}/emulated-secrets/")
    bench.write_text(text + """
m2me:
  module_firmware: {manufacturer: mcim-hil, model: EMU-LTE, revision: EMU-LTE_0.9.0}
""")
    out = tmp_path / "out"
    done = mcim_hil("run", "--bench", str(bench), "--air", "relayed", "--out", str(out))
    assert done.returncode == 1
    assert "initial: FAILED at step 14" in done.stdout
    (row,) = [line for line in done.stdout.splitlines() if line.strip().startswith("14 ")]
    assert "FAIL" in row and "reference_values" in row and "module-firmware" in row
    run = json.loads((out / "run.json").read_text())
    assert [s["verdict"] for s in run["steps"]][13:15] == ["failed", "passed"]


PCSCD_PID_FILE = Path("/run/pcscd/pcscd.pid")  # pcscd writes its own pid there


def _slot_claims_of_other_processes() -> list[int]:
    """Pids other than this one holding a vpcd slot lock (/proc/locks): another test session
    or bench is using pcscd."""
    inodes = {p.stat().st_ino for p in LOCK_DIR.glob("mcim-hil-vpcd-*.lock")}
    holders = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and int(fields[5].rsplit(":", 1)[1]) in inodes:
            holders.append(int(fields[4]))
    return sorted(set(holders) - {os.getpid()})


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(os.geteuid() != 0 or Path("/run/systemd/system").is_dir(),
                    reason="needs root and a pcscd that is not systemd's to stop and start")
def test_bench_check_starts_pcscd_when_it_is_not_running() -> None:
    """Stops pcscd only when no other process holds a vpcd slot (pcscd is one system daemon
    that other test sessions share), and then only the pid pcscd wrote in its pid file."""
    others = _slot_claims_of_other_processes()
    if others:
        pytest.skip(f"other processes hold vpcd slots (pids {others}): pcscd is not ours to stop")
    if not PCSCD_PID_FILE.is_file():
        pytest.skip(f"no {PCSCD_PID_FILE}: this pcscd was not started the way the harness starts it")
    stopped = int(PCSCD_PID_FILE.read_text().split()[0])
    os.kill(stopped, signal.SIGTERM)
    for _ in range(50):
        if not _running(stopped):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"pcscd (pid {stopped}) did not stop")
    done = mcim_hil("bench", "check")
    assert done.returncode == 0, done.stdout + done.stderr
    started = int(PCSCD_PID_FILE.read_text().split()[0])
    assert started != stopped and _running(started)
    assert "uicc    ICCID" in done.stdout
