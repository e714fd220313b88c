"""labgrid places as benches, end to end on loopback with the real thing.

labgrid-coordinator, a labgrid-exporter exporting the module's pty through ser2net, and
labgrid-client making the place; `mcim-hil run --bench` on that place passes `initial` with the
module reached over rfc2217 and the card through the module's AT+CSIM. The module is the
emulated modem with its SIM, the virtual card behind pcscd, standing on the "exporter host".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from lab_support import LoopbackLab, free_port, lab_bench_file, labgrid_missing

pytestmark = pytest.mark.skipif(labgrid_missing() is not None, reason=str(labgrid_missing()))

pytest_plugins = ["pytester"]

MCIM_HIL = [sys.executable, "-m", "mcim_hil"]


class RemoteBench:
    """The module and its SIM on the exporter host: the emulated modem on a pty, its SIM the virtual card."""

    def __init__(self) -> None:
        from mcim_hil.bench import load_bench
        from mcim_hil.emulated import EmulatedBench
        from dataclasses import replace
        emulated = load_bench(None)
        self.bench = EmulatedBench(replace(emulated, tpm=None))
        self.endpoints = self.bench.start()
        self.modem = self.bench.modem_emulator

    def stop(self) -> None:
        self.bench.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoopbackLab, RemoteBench]]:
    remote = RemoteBench()
    loopback = LoopbackLab(tmp_path_factory.mktemp("lab"))
    try:
        loopback.start({"bench1": remote.endpoints.modem_port})
        loopback.create_place("sja2-bench1", "bench1")
        yield loopback, remote
    finally:
        loopback.close()
        remote.stop()


def run(bench: Path, out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MCIM_HIL, "run", "--bench", str(bench), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300, env=env)


def test_initial_passes_on_a_labgrid_place_through_rfc2217_and_at_csim(lab, tmp_path: Path) -> None:
    loopback, remote = lab
    listen = f"127.0.0.1:{free_port()}"
    remote.modem.trace_sim_to(("127.0.0.1", int(listen.rsplit(":", 1)[1])))   # a SIMtrace2 on the bench
    try:
        bench = lab_bench_file(tmp_path / "lab.yaml", loopback.coordinator, "sja2-bench1", gsmtap=listen)
        done = run(bench, tmp_path / "out")
    finally:
        remote.modem.trace_sim_to(None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "initial: PASSED" in done.stdout
    data = json.loads((tmp_path / "out" / "run.json").read_text())
    place = data["meta"]["labgrid"]
    assert (place["coordinator"], place["place"], place["acquired_by"]) == \
        (loopback.coordinator, "sja2-bench1", "harness")
    assert place["modem_port"].startswith("rfc2217://127.0.0.1:") and place["modem_port"].endswith("?ign_set_control")
    (serial,) = place["resources"]
    assert serial["class"] == "NetworkSerialPort"
    assert serial["path"] == f"{loopback.exporter_name}/bench1/NetworkSerialPort/RawSerialPort"
    # the AKA ran on the card through the module: AUTHENTICATE went as AT+CSIM over rfc2217
    events = [e for s in data["steps"] for e in s["events"]]
    at = [e for e in events if e["type"] == "device" and e["device"] == "modem"]
    assert at and all(e["port"] == place["modem_port"] for e in at)
    assert any(e["command"].startswith("AT+CSIM") and "0088008122" in bytes.fromhex(e["request"]).decode().lower()
               for e in at if not e["secret"])
    # and the tracer on the bench saw the same exchanges on the card's contacts
    assert any(e["type"] == "sniffed" and e["command"] == "AUTHENTICATE" for e in events)
    # given back after the run
    assert loopback.acquired_by("sja2-bench1") is None


def test_a_place_the_caller_reserved_and_acquired_is_used_and_left_acquired(lab, tmp_path: Path) -> None:
    loopback, _ = lab
    loopback.client("-p", "sja2-bench1", "set-tags", "bench=sja2", check=True)
    reserved = loopback.client("reserve", "--wait", "--shell", "bench=sja2", check=True).stdout
    token = reserved.strip().split("LG_TOKEN=")[1].split()[0]
    env = dict(loopback.env, LG_TOKEN=token)
    subprocess.run([str(p) for p in ("labgrid-client",)] + ["-x", loopback.coordinator, "-p", "+", "acquire"],
                   env=env, check=True, capture_output=True, timeout=60)
    try:
        holder = loopback.acquired_by("sja2-bench1")
        assert holder is not None
        bench = lab_bench_file(tmp_path / "lab.yaml", loopback.coordinator, "+", gsmtap="off")
        done = run(bench, tmp_path / "out", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        place = json.loads((tmp_path / "out" / "run.json").read_text())["meta"]["labgrid"]
        assert (place["place"], place["acquired_by"]) == ("sja2-bench1", "caller")
        assert loopback.acquired_by("sja2-bench1") == holder     # still the caller's
    finally:
        loopback.client("-p", "sja2-bench1", "release")
        loopback.client("cancel-reservation", token)


def test_a_place_held_by_someone_else_is_one_line_and_stays_theirs(lab, tmp_path: Path) -> None:
    loopback, _ = lab
    other = dict(loopback.env, LG_USERNAME="colleague")
    subprocess.run(["labgrid-client", "-x", loopback.coordinator, "-p", "sja2-bench1", "acquire"], env=other,
                   check=True, capture_output=True, timeout=60)
    try:
        bench = lab_bench_file(tmp_path / "lab.yaml", loopback.coordinator, "sja2-bench1", gsmtap="off")
        done = run(bench, tmp_path / "out")
        assert done.returncode != 0
        assert done.stderr.strip().splitlines()[-1] == \
            f"{bench}: labgrid: place sja2-bench1 on {loopback.coordinator} is acquired by " \
            f"{os.uname().nodename}/colleague"
        assert "Traceback" not in done.stderr
        assert loopback.acquired_by("sja2-bench1") == f"{os.uname().nodename}/colleague"
    finally:
        subprocess.run(["labgrid-client", "-x", loopback.coordinator, "-p", "sja2-bench1", "release"], env=other,
                       capture_output=True, timeout=60)


def test_an_unknown_place_and_an_absent_coordinator_are_one_line_each(lab, tmp_path: Path) -> None:
    loopback, _ = lab
    for coordinator, place, said in (
            (loopback.coordinator, "no-such-place", "place 'no-such-place' on {c}: place pattern no-such-place "
                                                    "matches nothing"),
            (f"127.0.0.1:{free_port()}", "sja2-bench1", "cannot reach the labgrid coordinator {c}: "
                                                        "Could not connect to coordinator")):
        bench = lab_bench_file(tmp_path / "lab.yaml", coordinator, place, gsmtap="off")
        done = run(bench, tmp_path / "out")
        assert done.returncode != 0
        assert done.stderr.strip().splitlines() == [f"{bench}: labgrid: " + said.format(c=coordinator)]


def test_sigterm_while_the_harness_holds_the_place_still_gives_it_back(lab) -> None:
    import signal
    import time
    from mcim_hil.lab.place import LabgridPlace, PlaceLease
    loopback, _ = lab
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(SystemExit) as stopped:
        with PlaceLease(LabgridPlace(loopback.coordinator, "sja2-bench1")):
            assert loopback.acquired_by("sja2-bench1") is not None
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)       # the handler ends this at once
    assert stopped.value.code == 128 + signal.SIGTERM
    assert loopback.acquired_by("sja2-bench1") is None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_beside_labgrid_s_plugin_a_test_takes_the_module_of_the_labgrid_target(lab, pytester: pytest.Pytester) -> None:
    loopback, _ = lab
    bench = lab_bench_file(pytester.path / "lab.yaml", loopback.coordinator, "sja2-bench1", gsmtap="off")
    env = pytester.path / "env.yaml"
    env.write_text("targets:\n  main:\n    resources:\n      RemotePlace:\n        name: sja2-bench1\n")
    pytester.makepyfile(test_on_target="""
        from labgrid.resource import NetworkSerialPort

        def test_module_and_card_of_the_target(target, modem, uicc):
            port = target.get_resource(NetworkSerialPort)      # labgrid's own fixture
            assert modem.port == f"rfc2217://{port.host}:{port.port}?ign_set_control"
            assert uicc.read_iccid() == "8988211000000000017"   # through the module's AT+CSIM
    """)
    loopback.client("-p", "sja2-bench1", "acquire", check=True)   # labgrid's RemotePlace wants it held
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lg-env", str(env), "--lg-coordinator",
                                               loopback.coordinator, "--bench", str(bench), "--no-artifacts",
                                               "--junitxml=out.xml", timeout=300)
    finally:
        loopback.client("-p", "sja2-bench1", "release")
    result.assert_outcomes(passed=1)
    junit = (pytester.path / "out.xml").read_text()
    assert f'name="lg_env" value="{env}"' in junit and 'name="labgrid_place" value="sja2-bench1"' in junit
    assert 'name="modem_port" value="rfc2217://127.0.0.1:' in junit
