"""swtpm as a bench TPM: one `swtpm socket` process per bench, on a free TCP port pair.

The TPM is manufactured once per state directory by ``swtpm_setup`` with an EK, an EK
certificate and a platform certificate signed by a local CA that lives inside the same
state directory, so a validator can pin that CA and no machine-wide CA is touched.

State directory layout (ours):
    tpm/                       the TPM state (swtpm --tpmstate)
    ca/                        the local CA: root CA, signing (issuer) key and certificate
    swtpm_setup.conf, swtpm-localca.conf, swtpm-localca.options
    swtpm_setup.log, swtpm.log
    .provisioned               written once swtpm_setup has succeeded

This module shares no code with mcim_hil.drivers.tpm: it speaks the swtpm control
channel and the few raw TPM 2.0 commands it needs (Startup, GetRandom) itself.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from .swtpm_faults import PowerCutRelay

SWTPM = "swtpm"
SWTPM_SETUP = "swtpm_setup"
SWTPM_LOCALCA = "/usr/bin/swtpm_localca"
HOST = "127.0.0.1"

# swtpm control channel commands (swtpm's tpm_ioctl.h, socket protocol: big-endian u32 code)
CMD_GET_CAPABILITY = 1
CMD_INIT = 2
CMD_SHUTDOWN = 3
CMD_STOP = 14   # power off: the TPM stops answering until CMD_INIT

# TPM 2.0 Part 2: TPM_ST_NO_SESSIONS, TPM_CC_Startup / GetRandom, TPM_SU_CLEAR, TPM_RC_INITIALIZE
TPM_ST_NO_SESSIONS = 0x8001
TPM_CC_STARTUP = 0x00000144
TPM_CC_SHUTDOWN = 0x00000145
TPM_CC_READ_CLOCK = 0x00000181
TPM_CC_CLOCK_SET = 0x00000128
TPM_ST_SESSIONS = 0x8002
TPM_RH_OWNER = 0x40000001
TPM_RS_PW = 0x40000009
# libtpms writes Clock to NV (and so sets clockInfo.safe again) every 2^12 ms of TPM time
# (its NV_CLOCK_UPDATE_INTERVAL)
CLOCK_NV_INTERVAL_MS = 1 << 12
TPM_CC_GET_RANDOM = 0x0000017B
TPM_SU_CLEAR = 0x0000
TPM_RC_SUCCESS = 0x000
TPM_RC_INITIALIZE = 0x100

_MARKER = ".provisioned"
_TAIL_CHARS = 2000


class SwtpmError(RuntimeError):
    """swtpm or swtpm_setup failed; names the command and carries its stderr tail."""

    def __init__(self, command: str, message: str, stderr_tail: str = "") -> None:
        self.command = command
        self.stderr_tail = stderr_tail
        text = f"{command}: {message}"
        if stderr_tail:
            text += f"\n--- stderr tail ---\n{stderr_tail}"
        super().__init__(text)


def _tail(text: str) -> str:
    return text[-_TAIL_CHARS:].strip()


def _read_tail(path: Path) -> str:
    try:
        return _tail(path.read_text(errors="replace"))
    except OSError:
        return ""


# --- a provisioned identity shared by temp-dir TPMs that ask for it ---------------------

_template_lock = threading.Lock()
_template_dir: Path | None = None


def _shared_template() -> Path:
    """A state dir manufactured once per process; copies of it are the same TPM identity."""
    global _template_dir
    with _template_lock:
        if _template_dir is None or not (_template_dir / _MARKER).exists():
            root = Path(tempfile.mkdtemp(prefix="mcim-hil-swtpm-template-"))
            atexit.register(shutil.rmtree, root, True)
            _provision(root)
            _template_dir = root
        return _template_dir


# --- manufacturing ------------------------------------------------------------------------

def _write_configs(state_dir: Path) -> Path:
    """Configs that point swtpm_setup at the CA inside state_dir (never /var/lib/swtpm-localca)."""
    ca = state_dir / "ca"
    ca.mkdir(exist_ok=True)
    setup_conf = state_dir / "swtpm_setup.conf"
    localca_conf = state_dir / "swtpm-localca.conf"
    localca_opts = state_dir / "swtpm-localca.options"
    setup_conf.write_text(
        f"create_certs_tool = {SWTPM_LOCALCA}\n"
        f"create_certs_tool_config = {localca_conf}\n"
        f"create_certs_tool_options = {localca_opts}\n"
        "active_pcr_banks = sha256\n"
    )
    localca_conf.write_text(
        f"statedir = {ca}\n"
        f"signingkey = {ca / 'signkey.pem'}\n"
        f"issuercert = {ca / 'issuercert.pem'}\n"
        f"certserial = {ca / 'certserial'}\n"
    )
    localca_opts.write_text(
        "--platform-manufacturer mcim-hil\n"
        "--platform-version 2.0\n"
        "--platform-model swtpm\n"
    )
    return setup_conf


def _provision(state_dir: Path) -> None:
    """Run swtpm_setup: EK (RSA and ECC), EK certificates, platform certificate."""
    tpm_dir = state_dir / "tpm"
    tpm_dir.mkdir(parents=True, exist_ok=True)
    setup_conf = _write_configs(state_dir)
    log = state_dir / "swtpm_setup.log"
    log.write_text("")
    cmd = [SWTPM_SETUP, "--tpm2", "--tpmstate", str(tpm_dir),
           "--createek", "--create-ek-cert", "--create-platform-cert",
           "--config", str(setup_conf), "--logfile", str(log)]
    env = dict(os.environ)
    env.pop("SWTPM_ROOTCA_PASSWORD", None)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(tpm_dir, ignore_errors=True)
        raise SwtpmError("swtpm_setup", f"could not run: {exc}", _read_tail(log)) from exc
    if done.returncode != 0:
        shutil.rmtree(tpm_dir, ignore_errors=True)  # half-made, never an identity: start over
        raise SwtpmError("swtpm_setup", f"exit status {done.returncode} for {state_dir}",
                         _tail(done.stderr + "\n" + _read_tail(log)))
    (state_dir / _MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))


def _copy_identity(template: Path, state_dir: Path) -> None:
    shutil.copytree(template / "tpm", state_dir / "tpm")
    shutil.copytree(template / "ca", state_dir / "ca")
    _write_configs(state_dir)
    shutil.copy2(template / _MARKER, state_dir / _MARKER)


# --- ports and liveness -----------------------------------------------------------------

def _free_port_pair() -> int:
    """A port P with P and P+1 both free on 127.0.0.1 right now."""
    for _ in range(200):
        with socket.socket() as first:
            first.bind((HOST, 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind((HOST, port + 1))
                except OSError:
                    continue
            return port
    raise SwtpmError("swtpm socket", "no free TCP port pair on 127.0.0.1")


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on 127.0.0.1:port (from /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    inodes: set[str] = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":  # 0A = LISTEN
                inodes.add(fields[9])
    return inodes


def _owns_ports(pid: int, ports: tuple[int, ...]) -> bool:
    """True when process pid is the one listening on every port (not someone else's swtpm)."""
    if not os.path.exists("/proc/net/tcp"):
        return True  # no procfs to ask: trust the free-port check
    try:
        fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        return all(any(f"socket:[{inode}]" in fds for inode in _listening_inodes(port))
                   for port in ports)
    except OSError:
        return False


def _die_with_parent() -> None:
    # Linux prctl(PR_SET_PDEATHSIG, SIGTERM): swtpm goes when the thread that started it goes,
    # so it is only asked for from the main thread (a worker thread may end before the bench).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


class Swtpm:
    """One swtpm process in socket mode; ``.tcti`` is what a bench file's TPM entry holds."""

    def __init__(self, state_dir: Path | None = None, *, shared_identity: bool = False,
                 faults: bool = False) -> None:
        """state_dir None: a temp dir removed on stop. A given dir is kept with its TPM identity.

        shared_identity (temp dirs only): copy a state manufactured once per process instead
        of running swtpm_setup again; every such TPM then has the same EK and CA.
        faults: ``.tcti`` names a relay (swtpm_faults) so :meth:`power_loss_at` can cut the
        power at a chosen command.
        """
        self._faults = faults
        self._relay: PowerCutRelay | None = None
        if shared_identity and state_dir is not None:
            raise ValueError("shared_identity only applies to a temp state dir")
        self._given_dir = Path(state_dir).resolve() if state_dir is not None else None
        self._shared_identity = shared_identity
        self._dir: Path | None = self._given_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Path | None = None
        self.port = 0
        self.ctrl_port = 0

    # -- properties -----------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        if self._dir is None:
            raise SwtpmError("swtpm socket", "not started: no state dir yet")
        return self._dir

    @property
    def tcti(self) -> str:
        if not self.port:
            raise SwtpmError("swtpm socket", "not started: no port yet")
        port = self._relay.port if self._relay is not None else self.port
        return f"swtpm:host={HOST},port={port}"

    @property
    def pid(self) -> int:
        """The swtpm process (for a test that freezes it with SIGSTOP)."""
        self._require_running("pid")
        assert self._proc is not None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ek_ca_certificates(self) -> list[Path]:
        """PEM files of the local CA chain that signed the EK certificate: issuer first, root last."""
        ca = self.state_dir / "ca"
        chain = [ca / "issuercert.pem", ca / "swtpm-localca-rootca-cert.pem"]
        missing = [str(p) for p in chain if not p.exists()]
        if missing:
            raise SwtpmError("swtpm_setup", f"local CA certificate missing: {', '.join(missing)}")
        return chain

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> None:
        """Manufacture the TPM on first use of the state dir, then run swtpm until ready."""
        if self.running:
            return
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="mcim-hil-swtpm-"))
        try:
            self._manufacture_once()
            self._spawn_on_free_ports(timeout)
            if self._given_dir is not None:
                self._settle_clock()
            if self._faults:
                self._relay = PowerCutRelay(HOST, self.port, self.power_off, self.power_on)
        except BaseException:
            if self._given_dir is None:  # nothing of a failed temp TPM stays behind
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            raise

    def _manufacture_once(self) -> None:
        state = self.state_dir
        if (state / _MARKER).exists():
            return  # a kept TPM: same EK, same CA
        if (state / "tpm" / "tpm2-00.permall").exists():
            # never manufacture over a TPM state: that would destroy an identity
            raise SwtpmError("swtpm_setup", f"{state} holds a TPM state without the {_MARKER} "
                             "marker; remove its tpm/ directory to manufacture a new TPM there")
        if self._shared_identity:
            _copy_identity(_shared_template(), state)
        else:
            state.mkdir(parents=True, exist_ok=True)
            _provision(state)

    def _spawn_on_free_ports(self, timeout: float) -> None:
        for attempt in range(5):  # another process may take the ports before swtpm binds them
            try:
                self._spawn(timeout)
                return
            except SwtpmError as exc:
                if attempt == 4 or "Address already in use" not in exc.stderr_tail:
                    raise

    def _spawn(self, timeout: float) -> None:
        port = _free_port_pair()
        self._log_file = self.state_dir / "swtpm.log"
        cmd = [SWTPM, "socket", "--tpm2",
               "--tpmstate", f"dir={self.state_dir / 'tpm'}",
               "--server", f"type=tcp,port={port},bindaddr={HOST}",
               "--ctrl", f"type=tcp,port={port + 1},bindaddr={HOST}",
               "--flags", "not-need-init,startup-clear"]
        with open(self._log_file, "wb") as log:
            try:
                main = threading.current_thread() is threading.main_thread()
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        preexec_fn=_die_with_parent if main else None)
            except OSError as exc:
                raise SwtpmError("swtpm socket", f"could not run: {exc}") from exc
        self._proc, self.port, self.ctrl_port = proc, port, port + 1
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                self._forget_process()
                raise SwtpmError("swtpm socket", f"exited with status {proc.returncode}",
                                 _read_tail(self._log_file))
            # ours before we talk to it: never send a command to someone else's swtpm
            if _owns_ports(proc.pid, (port, port + 1)) and self._answers():
                return
            if time.monotonic() > deadline:
                self._kill()
                self._forget_process()
                raise SwtpmError("swtpm socket", f"not ready on port {port} after {timeout} s",
                                 _read_tail(self._log_file))
            time.sleep(0.02)

    def _answers(self) -> bool:
        """Ready when the ctrl channel answers and the TPM answers a command."""
        try:
            self._ctrl(CMD_GET_CAPABILITY, b"", 8)
            rc, _ = self._tpm_command(TPM_CC_GET_RANDOM, struct.pack(">H", 8))
            return rc == TPM_RC_SUCCESS
        except OSError:
            return False

    def _settle_clock(self) -> None:
        """A kept TPM last stopped without TPM2_Shutdown (an older mcim-hil, a crash) shows
        clockInfo.safe = 0 until libtpms next writes its clock: advance Clock by that interval
        (TPM2_ClockSet, owner auth empty as swtpm_setup leaves it), which writes it now."""
        try:
            rc, body = self._tpm_command(TPM_CC_READ_CLOCK, b"")
            if rc != TPM_RC_SUCCESS or len(body) < 25:
                return
            _time, clock, _resets, _restarts, safe = struct.unpack(">QQIIB", body[:25])
            if safe:
                return
            password = struct.pack(">IHBH", TPM_RS_PW, 0, 0, 0)  # TPM 2.0 Part 1, 19.8.4
            self._tpm_command(TPM_CC_CLOCK_SET,
                              struct.pack(">II", TPM_RH_OWNER, len(password)) + password
                              + struct.pack(">Q", clock + CLOCK_NV_INTERVAL_MS),
                              tag=TPM_ST_SESSIONS)
        except OSError:
            pass  # the bench's own checks will say what is wrong

    def shutdown(self) -> int:
        """TPM2_Shutdown(SU_CLEAR): the orderly end of a TPM session; returns its response code.

        Without it libtpms counts the next start as a power loss and quotes show
        clockInfo.safe = 0 for a few seconds (TPM 2.0 Part 1, 36.6), so every planned stop
        and power cycle sends it first.
        """
        self._require_running("shutdown")
        try:
            rc, _ = self._tpm_command(TPM_CC_SHUTDOWN, struct.pack(">H", TPM_SU_CLEAR))
        except OSError as exc:
            raise SwtpmError("TPM2_Shutdown", f"port {self.port}: {exc}",
                             _read_tail(self._log_file) if self._log_file else "") from exc
        return rc

    def power_cycle(self) -> None:
        """An orderly power cycle: TPM2_Shutdown(CLEAR), power off and on (ctrl CMD_INIT),
        TPM2_Startup(CLEAR).

        PCRs reset; persistent objects and NV stay; transient objects and sessions are gone.
        """
        self._require_running("power_cycle")
        self.shutdown()
        self._power_on()

    # -- fault controls: the TPM as a board that loses power ------------------------------

    def power_off(self) -> None:
        """Cut the TPM's power without TPM2_Shutdown (ctrl CMD_STOP): it answers nothing
        until :meth:`power_on`, and that start counts as a power loss (clockInfo.safe = 0)."""
        self._require_running("power_off")
        try:
            result = struct.unpack(">I", self._ctrl(CMD_STOP, b"", 4))[0]
        except OSError as exc:
            raise SwtpmError("swtpm ctrl CMD_STOP", f"port {self.ctrl_port}: {exc}") from exc
        if result != 0:
            raise SwtpmError("swtpm ctrl CMD_STOP", f"result 0x{result:x} on port {self.ctrl_port}")

    def power_on(self) -> None:
        """Power the TPM on (ctrl CMD_INIT) and send TPM2_Startup(CLEAR), as firmware would."""
        self._require_running("power_on")
        self._power_on()

    def power_loss(self) -> None:
        """Power lost and back: off without TPM2_Shutdown, then on. PCRs reset, transient
        objects and sessions gone, persistent objects and NV stay."""
        self.power_off()
        self.power_on()

    def power_loss_at(self, command_code: int, when: str = "before", *, skip: int = 0,
                      power_back: bool = True) -> None:
        """Arm a power loss at the next TPM command ``command_code`` (e.g. TPM2_CC.Import),
        ``before`` it reaches the TPM or ``after`` it ran (its answer lost); the host's
        connection drops, then the power comes back unless ``power_back`` is False.
        Needs ``Swtpm(faults=True)``."""
        if self._relay is None:
            raise SwtpmError("swtpm relay", "power_loss_at needs Swtpm(faults=True)")
        self._relay.arm(command_code, when, skip=skip, power_back=power_back)

    @property
    def power_cuts(self) -> list[tuple[int, str]]:
        """(command code, when) of every power loss power_loss_at caused so far."""
        return list(self._relay.cuts) if self._relay is not None else []

    def _power_on(self) -> None:
        try:
            result = struct.unpack(">I", self._ctrl(CMD_INIT, struct.pack(">I", 0), 4))[0]
            if result != 0:
                raise SwtpmError("swtpm ctrl CMD_INIT", f"result 0x{result:x} on port {self.ctrl_port}")
            rc, _ = self._tpm_command(TPM_CC_STARTUP, struct.pack(">H", TPM_SU_CLEAR))
        except OSError as exc:
            raise SwtpmError("swtpm ctrl CMD_INIT", f"port {self.ctrl_port}: {exc}",
                             _read_tail(self._log_file) if self._log_file else "") from exc
        if rc not in (TPM_RC_SUCCESS, TPM_RC_INITIALIZE):
            raise SwtpmError("TPM2_Startup", f"response code 0x{rc:03x} on port {self.port}")

    def stop(self, timeout: float = 5.0) -> None:
        """Shut swtpm down (ctrl CMD_SHUTDOWN, then SIGTERM, then SIGKILL); remove a temp dir."""
        try:
            if self.running:
                try:
                    self.shutdown()
                except SwtpmError:
                    pass  # a TPM that no longer answers: stop it all the same
                try:
                    self._ctrl(CMD_SHUTDOWN, b"", 4)
                except OSError:
                    pass
                assert self._proc is not None
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._kill()
            elif self._proc is not None:
                self._proc.wait()
        finally:
            if self._relay is not None:
                self._relay.close()
                self._relay = None
            self._forget_process()
            if self._given_dir is None and self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _kill(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _forget_process(self) -> None:
        self._proc = None
        self.port = self.ctrl_port = 0

    def _require_running(self, what: str) -> None:
        if not self.running:
            raise SwtpmError("swtpm socket", f"{what}: swtpm is not running")

    def __enter__(self) -> Swtpm:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self.running else "stopped"
        return f"Swtpm({state}, state_dir={self._dir})"

    # -- wire -----------------------------------------------------------------------------

    def _ctrl(self, code: int, payload: bytes, response_size: int) -> bytes:
        with socket.create_connection((HOST, self.ctrl_port), timeout=2.0) as sock:
            sock.sendall(struct.pack(">I", code) + payload)
            return _recv_exact(sock, response_size)

    def _tpm_command(self, command_code: int, parameters: bytes,
                     tag: int = TPM_ST_NO_SESSIONS) -> tuple[int, bytes]:
        """One raw TPM 2.0 command (``parameters``: everything after the header); returns
        (response code, what follows the response header)."""
        size = 10 + len(parameters)
        with socket.create_connection((HOST, self.port), timeout=2.0) as sock:
            sock.sendall(struct.pack(">HII", tag, size, command_code) + parameters)
            _tag, length, rc = struct.unpack(">HII", _recv_exact(sock, 10))
            body = _recv_exact(sock, length - 10) if length > 10 else b""
        return rc, body
