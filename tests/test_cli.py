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
        assert set(endpoints) == {"tpm_tcti", "uicc_reader", "modem_port", "ek_ca", "bench_file"}
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


# -- issue 9: SIGTERM, and one clear line with exit 1 or 2 instead of a traceback ---------------


def emulated_bench_text(extra: str = "", *, drop: tuple[str, ...] = ()) -> str:
    """The default emulated bench file with absolute secret paths, minus the lines in ``drop``."""
    text = DEFAULT_BENCH.read_text().replace("emulated-secrets/", f"{DEFAULT_BENCH.parent}/emulated-secrets/")
    lines = [line for line in text.splitlines() if not any(line.strip().startswith(d) for d in drop)]
    return "\n".join(lines) + "\n" + extra


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def left_behind(tmpdir: Path) -> tuple[list[str], str]:
    """What a bench left in its TMPDIR, and the processes still running from there."""
    procs = subprocess.run(["pgrep", "-af", str(tmpdir)], capture_output=True, text=True).stdout
    procs = "\n".join(line for line in procs.splitlines() if "pgrep" not in line)
    return sorted(os.listdir(tmpdir)), procs


def start_cli(args: list[str], tmpdir: Path) -> subprocess.Popen[str]:
    tmpdir.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONUNBUFFERED="1")
    return subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_line(proc: subprocess.Popen[str], predicate, seen: list[str]) -> str:
    while True:
        line = proc.stdout.readline()
        assert line, f"ended before the line came: {''.join(seen)} {proc.stderr.read()}"
        seen.append(line)
        if predicate(line):
            return line


def test_sigterm_mid_run_stops_swtpm_removes_the_work_folder_and_names_the_step(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    proc = start_cli(["run", "--air", "relayed", "--out", str(tmp_path / "out")], tmpdir)
    seen: list[str] = []
    try:
        wait_for_line(proc, lambda line: line[:5].strip() == "3", seen)   # step 3 is done: mid-run
        assert any("mcim-hil-swtpm" in p for p in left_behind(tmpdir)[1].splitlines()), "no swtpm to stop?"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    line = one_line(stderr)
    assert line.startswith("initial: terminated by SIGTERM at step ")
    step = int(line.split("at step ")[1].split(";")[0])
    assert 4 <= step <= 21
    assert "initial: PASSED" not in stdout
    assert left_behind(tmpdir) == ([], "")     # no swtpm, no card, no work folder with the card's keys
    assert (tmp_path / "out" / "run.json").is_file()


@pytest.mark.parametrize("command", [["bench", "check"], ["bench", "up"]])
def test_sigterm_during_bench_start_stops_everything_it_started(tmp_path: Path, command: list[str]) -> None:
    tmpdir = tmp_path / "tmp"
    proc = start_cli(command, tmpdir)
    try:
        deadline = time.monotonic() + 30
        while "mcim-hil-swtpm" not in left_behind(tmpdir)[1] and time.monotonic() < deadline:
            time.sleep(0.05)                   # swtpm is up: the bench is half started
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in stderr
    if command == ["bench", "check"]:
        assert proc.returncode == 143
        assert one_line(stderr) == "mcim-hil bench check: terminated by SIGTERM; the bench was stopped"
    assert left_behind(tmpdir) == ([], "")


def test_sigterm_while_a_failed_bench_start_cleans_up_still_stops_swtpm(tmp_path: Path) -> None:
    # every vpcd slot taken (lock files held here): the card cannot start while swtpm is still
    # being set up in its thread; SIGTERM then lands in that clean-up
    import fcntl
    from mcim_hil.emulators.pcscd import vpcd_slots
    locks = tmp_path / "locks"
    locks.mkdir()
    held = []
    for slot in vpcd_slots():
        fd = os.open(locks / f"mcim-hil-vpcd-{slot.port}.lock", os.O_CREAT | os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir), MCIM_HIL_LOCK_DIR=str(locks))
    proc = subprocess.Popen(CLI + ["bench", "check"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        deadline = time.monotonic() + 30
        while "mcim-hil-swtpm" not in left_behind(tmpdir)[1] and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        for fd in held:
            os.close(fd)
    assert proc.returncode == 143, stderr
    assert one_line(stderr) == "mcim-hil bench check: terminated by SIGTERM; the bench was stopped"
    deadline = time.monotonic() + 5          # a swtpm left behind would stay: give none a chance to hide
    while left_behind(tmpdir)[1] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left_behind(tmpdir) == ([], "")


def test_an_emulator_that_crashed_keeps_the_verdict_and_is_named_in_one_line(tmp_path: Path) -> None:
    proc = start_cli(["run", "--air", "relayed", "--out", str(tmp_path / "out")], tmp_path / "tmp")
    seen: list[str] = []
    try:
        # the table's header comes once the bench is up, just before step 1; the run is held
        # while its card dies, so a fast run cannot finish with the card before it is gone
        wait_for_line(proc, lambda line: line.startswith(" step  entities"), seen)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            # the card runs in memory now (--state -): find it as this run's child
            cards = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "mcim_hil.emulators.vuicc"],
                                   capture_output=True, text=True).stdout.split()
            assert len(cards) == 1
            os.kill(int(cards[0]), signal.SIGKILL)      # the virtual card crashes mid-run
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "initial: FAILED at step " in stdout        # the verdict line is kept
    line = one_line(stderr)
    assert line.startswith("initial: stopping the emulated bench: VirtualUicc: virtual UICC on port ")
    assert "had crashed (exit code -9)" in line
    assert left_behind(tmp_path / "tmp") == ([], "")


def test_safety_refused_at_set_up_is_one_line_exit_1(tmp_path: Path) -> None:
    from mcim_hil.emulators.vuicc import create_card_file
    card = tmp_path / "card.json"
    create_card_file(card, iccid="8988211000000000017", imsi="001010000000017", k=bytes(16), opc=bytes(16),
                     adm1=b"77111606")
    state = json.loads(card.read_text())
    state["pins"]["0a"]["tries"] = 1                  # ADM1: the last try must never be spent
    card.write_text(json.dumps(state))
    bench = tmp_path / "bench.yaml"
    bench.write_text(emulated_bench_text().replace("  profile: sysmo-isim-sja2", f"  card_state: {card}"))
    done = mcim_hil("run", "--bench", str(bench), "--air", "relayed", "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("mcim-hil run: SafetyRefused: ") and "VERIFY ADM1" in line and "1 tries left" in line
    assert json.loads(card.read_text())["pins"]["0a"]["tries"] == 1


def test_device_not_found_under_run_is_one_line_exit_1(tmp_path: Path) -> None:
    bench = tmp_path / "bench.yaml"
    bench.write_text(emulated_bench_text(drop=("emulator: at-pty",)).replace(
        "modem:\n", "modem:\n  port: socket://127.0.0.1:9\n"))
    done = mcim_hil("run", "--bench", str(bench), "--air", "relayed", "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("mcim-hil run: DeviceNotFound: socket://127.0.0.1:9: open: ")


@pytest.mark.parametrize("drop,extra,expected", [
    (("secrets:", "adm1:", "pin1:"), "", "uicc.secrets.adm1: missing"),
    (("tpm:", "emulator: swtpm"), "", "tpm: missing"),
    (("tpm:", "emulator: swtpm"), "tpm: {tcti: 'swtpm:host=127.0.0.1,port=9'}\n", "tpm.ek_ca: missing"),
], ids=["no-secrets", "no-tpm", "real-tpm-without-ek_ca"])
def test_a_bench_without_what_a_run_needs_names_file_and_key(tmp_path: Path, drop, extra, expected) -> None:
    bench = tmp_path / "bench.yaml"
    bench.write_text(emulated_bench_text(extra, drop=drop))
    done = mcim_hil("run", "--bench", str(bench), "--air", "relayed", "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert one_line(done.stderr).startswith(f"{bench}: {expected}")
    assert not (tmp_path / "out").exists()          # refused before anything ran


def test_bench_check_without_secrets_names_file_and_key(tmp_path: Path) -> None:
    bench = tmp_path / "bench.yaml"
    bench.write_text(emulated_bench_text(drop=("secrets:", "adm1:", "pin1:")))
    done = mcim_hil("bench", "check", "--bench", str(bench))
    assert done.returncode == 1
    assert one_line(done.stderr).startswith(f"{bench}: uicc.secrets.adm1: missing")


@pytest.mark.parametrize("out,expected", [
    ("FILE", "is not a folder"),
    ("FILE/sub", "is under {file}, which is not a folder"),
    ("/dev/null", "is not a folder"),
    ("/dev/null/run", "is under /dev/null, which is not a folder"),
], ids=["file", "under-file", "dev-null", "under-dev-null"])
def test_out_that_cannot_take_the_artifacts_is_refused_before_the_procedure(tmp_path: Path, out, expected) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    out = out.replace("FILE", str(file))
    t0 = time.monotonic()
    done = mcim_hil("run", "--out", out, timeout=30)
    assert done.returncode == 1
    assert one_line(done.stderr) == f"--out {out}: " + expected.format(file=file)
    assert "step" not in done.stdout
    assert file.read_text() == "x"


def test_air_module_on_a_running_bench_is_one_line(tmp_path: Path) -> None:
    bench = tmp_path / "bench.yaml"
    bench.write_text(f"""
name: already-up
tpm: {{tcti: "swtpm:host=127.0.0.1,port=9", ek_ca: [{DEFAULT_BENCH}]}}
uicc: {{reader: "re:.", secrets: {{adm1: {{file: {DEFAULT_BENCH.parent}/emulated-secrets/adm1}}}}}}
modem: {{port: "socket://127.0.0.1:9"}}
""")
    done = mcim_hil("run", "--bench", str(bench), "--air", "module", "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith(f"{bench}: --air module needs the emulated modem")
    assert "modem.port socket://127.0.0.1:9" in line and "--air relayed" in line


def test_bench_zero_is_one_line(tmp_path: Path) -> None:
    done = mcim_hil("bench", "check", "--bench", "/dev/zero", timeout=30)
    assert done.returncode == 2
    assert one_line(done.stderr) == "/dev/zero: not a bench file: a device"
