"""A labgrid lab on loopback, the real thing: labgrid-coordinator, a labgrid-exporter exporting a
module's serial port through ser2net (RFC 2217), and places made with labgrid-client.

The "remote" bench behind the place is the emulated modem on a pty with its SIM, the virtual card
behind pcscd: what a lab's exporter host has plugged in. Everything runs on free ports in a
temporary folder and is stopped by ``close()``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
LABGRID_CLIENT = BIN / "labgrid-client"
LABGRID_COORDINATOR = BIN / "labgrid-coordinator"
LABGRID_EXPORTER = BIN / "labgrid-exporter"


def labgrid_missing() -> str | None:
    """Why the loopback lab cannot run here, or None."""
    try:
        import labgrid.remote.client  # noqa: F401
    except ImportError as exc:
        return f"labgrid is not installed ({exc}): scripts/setup.sh installs it"
    for tool in (LABGRID_CLIENT, LABGRID_COORDINATOR, LABGRID_EXPORTER):
        if not tool.exists():
            return f"{tool} is missing: scripts/setup.sh installs labgrid"
    if shutil.which("ser2net") is None and not Path("/usr/sbin/ser2net").exists():
        return "ser2net is not installed (scripts/setup.sh installs Debian's)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackLab:
    """Start with ``start(ports)``: {group name: serial device}; ``close()`` stops everything."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.coordinator = f"127.0.0.1:{free_port()}"
        self.exporter_name = f"exporter-{os.getpid()}"
        self._procs: list[subprocess.Popen] = []
        self.env = dict(os.environ, LG_COORDINATOR=self.coordinator, PATH=f"{BIN}:/usr/sbin:{os.environ['PATH']}")
        self.env.pop("LG_TOKEN", None)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        proc = subprocess.Popen(args, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        log.close()
        self._procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def start(self, ports: dict[str, str]) -> None:
        self._spawn("coordinator", [str(LABGRID_COORDINATOR), "-l", self.coordinator])
        self._wait(lambda: "Coordinator ready" in self.log("coordinator"), "coordinator")
        config = self.workdir / "exporter.yaml"
        config.write_text(yaml.safe_dump({group: {"RawSerialPort": {"port": port, "speed": 115200}}
                                          for group, port in ports.items()}))
        self._spawn("exporter", [str(LABGRID_EXPORTER), "--name", self.exporter_name, "--hostname", "127.0.0.1",
                                 str(config)])
        self._wait(lambda: all(f"/{g}/" in self.client("resources").stdout for g in ports), "exporter")

    def _wait(self, ready, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if any(p.poll() is not None for p in self._procs):
                raise RuntimeError(f"labgrid {what} stopped: " + "\n".join(
                    self.log(n) for n in ("coordinator", "exporter") if (self.workdir / f"{n}.log").exists()))
            if time.monotonic() > deadline:
                raise RuntimeError(f"labgrid {what} not ready in {timeout} s")
            time.sleep(0.2)

    def client(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        done = subprocess.run([str(LABGRID_CLIENT), "-x", self.coordinator, *args], cwd=self.workdir,
                              env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"labgrid-client {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def create_place(self, place: str, group: str, tags: dict[str, str] | None = None) -> None:
        self.client("-p", place, "create", check=True)
        self.client("-p", place, "add-match", f"*/{group}/*", check=True)
        if tags:
            self.client("-p", place, "set-tags", *(f"{k}={v}" for k, v in tags.items()), check=True)

    def acquired_by(self, place: str) -> str | None:
        shown = self.client("-p", place, "show", check=True).stdout
        for line in shown.splitlines():
            if line.strip().startswith("acquired:"):
                value = line.split(":", 1)[1].strip()
                return None if value == "None" else value
        return None

    def close(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self._procs.clear()


def lab_bench_file(path: Path, coordinator: str, place: str, *, gsmtap: str | None = None) -> Path:
    """A bench on a labgrid place: swtpm for the TPM here, the module on the place's serial port,
    the card through the module's AT+CSIM, its secrets the emulated card's."""
    secrets = Path(__file__).resolve().parent.parent / "lab_config" / "emulated-secrets"
    bench = {
        "name": f"lab-{place}",
        "tpm": {"emulator": "swtpm"},
        "uicc": {"via_modem": True, "secrets": {"adm1": {"file": str(secrets / "adm1")},
                                                 "pin1": {"file": str(secrets / "pin1")}}},
        "labgrid": {"coordinator": coordinator, "place": place},
    }
    if gsmtap:
        bench["gsmtap"] = {"listen": gsmtap}
    path.write_text(yaml.safe_dump(bench, sort_keys=False))
    return path
