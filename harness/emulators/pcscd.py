"""pcscd and its vpcd slots, for the virtual card.

One system pcscd serves every reader (pcscd 1.9.9 ignores PCSCLITE_CSOCK_NAME and keeps its
socket at the compiled-in /run/pcscd). vpcd readers come from /etc/reader.conf.d (or
$MCIM_HIL_READER_CONF_DIR): each has two slots, and slot n listens on TCP port CHANNELID + n;
pcscd names the slot "<FRIENDLYNAME> 00 0n".
A bench claims a slot with an exclusive lock file, so benches side by side never share one.

A private pcscd (``PrivatePcscd``, for the pcscd-restart faults) runs only in a process with its
own mount namespace and a tmpfs over /run/pcscd (``namespace_command``), with its own vpcd
reader on ports outside the system's; it may be killed and started again there, while the
system pcscd is never touched.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

READER_CONF_ENV = "MCIM_HIL_READER_CONF_DIR"   # a private pcscd's reader.conf.d (in its namespace)
READER_CONF_DIR = Path(os.environ.get(READER_CONF_ENV, "/etc/reader.conf.d"))
VPCD_SLOTS_PER_READER = 2  # vsmartcard vpcd: VPCD_MAX_SLOTS
LOCK_DIR = Path(os.environ.get("MCIM_HIL_LOCK_DIR", "/tmp"))


class PcscdUnavailable(Exception):
    """pcscd is not running and cannot be started from here; the message says how."""


@dataclass(frozen=True)
class VpcdSlot:
    reader: str   # the PC/SC reader name pyscard shows
    port: int     # the TCP port vpcd listens on for this slot's card


def list_readers() -> list[str] | None:
    """Reader names through pcscd, or None when pcscd does not answer. A context of its own
    each time (pyscard's readers() keeps one for the process, dead once pcscd restarts)."""
    try:
        from smartcard import scard
        rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rc != scard.SCARD_S_SUCCESS:
            return None
        try:
            rc, names = scard.SCardListReaders(ctx, [])
        finally:
            scard.SCardReleaseContext(ctx)
    except Exception:
        return None
    if rc == scard.SCARD_E_NO_READERS_AVAILABLE:
        return []
    return [str(r) for r in names] if rc == scard.SCARD_S_SUCCESS else None


def ensure_pcscd(timeout: float = 5.0) -> None:
    """Start pcscd when it is not running and we may (root, or sudo without a password)."""
    if list_readers() is not None:
        return
    if os.geteuid() == 0:
        cmd = ["pcscd"]
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        cmd = ["sudo", "-n", "pcscd"]
    else:
        raise PcscdUnavailable(
            "pcscd is not running and mcim-hil may not start it: run `sudo pcscd` "
            "(or `sudo systemctl start pcscd.socket`), or scripts/setup.sh")
    if not shutil.which(cmd[-1]):
        raise PcscdUnavailable("pcscd is not installed: run scripts/setup.sh (Debian package pcscd)")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PcscdUnavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-300:]}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list_readers() is not None:
            return
        time.sleep(0.05)
    raise PcscdUnavailable(f"pcscd started but did not answer within {timeout:.0f} s")


def vpcd_slots(conf_dir: Path | None = None) -> list[VpcdSlot]:
    """Every vpcd slot that reader.conf.d declares, in file order (default: $MCIM_HIL_READER_CONF_DIR
    as it is now, else /etc/reader.conf.d)."""
    if conf_dir is None:
        conf_dir = Path(os.environ.get(READER_CONF_ENV, "/etc/reader.conf.d"))
    slots: list[VpcdSlot] = []
    if not conf_dir.is_dir():
        return slots
    for conf in sorted(conf_dir.iterdir()):
        try:
            text = conf.read_text()
        except OSError:
            continue
        for block in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^\s*(FRIENDLYNAME|LIBPATH|CHANNELID)\s+(.+?)\s*$", block, re.M))
            if "vpcd" not in fields.get("LIBPATH", "") or "CHANNELID" not in fields:
                continue
            name = fields.get("FRIENDLYNAME", "Virtual PCD").strip('"')
            base = int(fields["CHANNELID"], 0)
            slots += [VpcdSlot(f"{name} 00 {n:02d}", base + n) for n in range(VPCD_SLOTS_PER_READER)]
    return slots


class SlotClaim:
    """An exclusive claim on one vpcd slot, held until released (or the process ends)."""

    def __init__(self, slot: VpcdSlot, fd: int) -> None:
        self.slot = slot
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


SLOT_WAIT_ENV = "MCIM_HIL_SLOT_WAIT_S"   # how long to wait for a free slot (default 0: fail at once)


def claim_free_slot(wait_s: float | None = None) -> SlotClaim:
    """Claim a vpcd slot that pcscd shows, that no other bench holds and that has no card.

    When every slot is held, wait up to ``wait_s`` seconds (default: $MCIM_HIL_SLOT_WAIT_S, else
    0) for one to be released: test sessions sharing a machine queue instead of failing."""
    if wait_s is None:
        try:
            wait_s = float(os.environ.get(SLOT_WAIT_ENV, "0"))
        except ValueError:
            wait_s = 0.0
    deadline = time.monotonic() + max(wait_s, 0.0)
    while True:
        try:
            return _claim_once()
        except SlotsBusy:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


class SlotsBusy(PcscdUnavailable):
    """Every vpcd slot is held by another bench or card."""


def _claim_once() -> SlotClaim:
    ensure_pcscd()
    present = set(list_readers() or [])
    slots = [s for s in vpcd_slots() if s.reader in present]
    if not slots:
        raise PcscdUnavailable(
            "pcscd shows no vpcd reader: install vsmartcard-vpcd and restart pcscd (scripts/setup.sh does both)")
    for slot in slots:
        fd = os.open(LOCK_DIR / f"mcim-hil-vpcd-{slot.port}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if _card_present(slot.reader):  # some other tool's card sits there
            os.close(fd)
            continue
        return SlotClaim(slot, fd)
    raise SlotsBusy(f"all {len(slots)} vpcd slots are in use: stop another bench, or add readers "
                    f"to {READER_CONF_DIR} (see scripts/mcim-hil-vpcd.conf), or set {SLOT_WAIT_ENV} to wait")


def _card_present(reader: str) -> bool:
    from smartcard.scard import (SCARD_S_SUCCESS, SCARD_SCOPE_USER, SCARD_STATE_PRESENT,
                                 SCARD_STATE_UNAWARE, SCardEstablishContext,
                                 SCardGetStatusChange, SCardReleaseContext)
    rc, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
    if rc != SCARD_S_SUCCESS:
        return False
    try:
        rc, states = SCardGetStatusChange(ctx, 0, [(reader, SCARD_STATE_UNAWARE)])
        return rc == SCARD_S_SUCCESS and bool(states[0][1] & SCARD_STATE_PRESENT)
    finally:
        SCardReleaseContext(ctx)


# --------------------------------------------------------------------------- a private pcscd

RUN_DIR = Path("/run/pcscd")              # pcscd 1.9.9's compiled-in socket and pid file place
SYSTEM_VPCD_PORTS = range(35963, 35979)   # the system pcscd's vpcd slots (scripts/setup.sh)
VPCD_LIBRARY = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PRIVATE_PORTS = range(36100, 36400, 2)    # where a private vpcd reader's slot pair is sought
PRIVATE_READER = "mcim-hil private vPCD"


def namespace_unsupported() -> str | None:
    """Why a private pcscd cannot run here (None when it can): it needs root (a mount
    namespace and a tmpfs over /run/pcscd), util-linux unshare, pcscd and the vpcd driver."""
    if os.geteuid() != 0:
        return "a private pcscd needs root (its own mount namespace over /run/pcscd)"
    for tool in ("unshare", "mount", "pcscd"):
        if shutil.which(tool) is None:
            return f"a private pcscd needs `{tool}` (util-linux / pcscd), not found on PATH"
    if not VPCD_LIBRARY.exists():
        return f"a private pcscd needs the vpcd driver {VPCD_LIBRARY} (Debian vsmartcard-vpcd)"
    return None


OUTER_NS_ENV = "MCIM_HIL_OUTER_MNT_NS"   # the mount namespace namespace_command was called from


def _mount_namespace() -> str:
    return os.readlink("/proc/self/ns/mnt")


def namespace_command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """``argv`` run in a new mount namespace (private propagation) with a tmpfs over
    /run/pcscd: a pcscd started there cannot see, nor be seen by, the system one. Returns
    the command and the environment to run it with."""
    script = f'mount -t tmpfs -o mode=0755 tmpfs {RUN_DIR} && exec "$@"'
    env = dict(os.environ, **{OUTER_NS_ENV: _mount_namespace()})
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv], env


def in_private_namespace() -> bool:
    """True in a process started by namespace_command: another mount namespace than its
    caller's, with its own mount over /run/pcscd. (Comparing with pid 1's namespace does not
    work in a container, where /proc/1/ns is not ours to read.)"""
    outer = os.environ.get(OUTER_NS_ENV)
    try:
        return bool(outer) and _mount_namespace() != outer and os.path.ismount(RUN_DIR)
    except OSError:
        return False


def _free_port_pair() -> int:
    """A base port P with P and P+1 free for vpcd to listen on (outside the system's slots)."""
    for base in PRIVATE_PORTS:
        if base in SYSTEM_VPCD_PORTS or base + 1 in SYSTEM_VPCD_PORTS:
            continue
        probes = []
        try:
            for port in (base, base + 1):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("0.0.0.0", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise PcscdUnavailable(f"no free port pair in {PRIVATE_PORTS.start}-{PRIVATE_PORTS.stop} for a private vpcd")


class PrivatePcscd:
    """A pcscd of our own with one vpcd reader (two slots), in this process's mount namespace.

    Its reader loads its own copy of libifdvpcd (the library keeps one static slot array).
    ``restart()`` kills it and starts it again: what a user restarting pcscd does to a card
    session. Refuses to run outside a private mount namespace, so the system pcscd is never
    touched."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.conf_dir = self.workdir / "reader.conf.d"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def slot(self) -> VpcdSlot:
        return VpcdSlot(f"{PRIVATE_READER} 00 00", self.port)

    def start(self, timeout: float = 10.0) -> None:
        if not in_private_namespace():
            raise PcscdUnavailable("a private pcscd runs only in its own mount namespace "
                                   "(namespace_command); the system pcscd is shared")
        if self.port == 0:
            self.port = _free_port_pair()
            self.conf_dir.mkdir(parents=True, exist_ok=True)
            library = self.workdir / "libifdvpcd-private.so"
            shutil.copyfile(VPCD_LIBRARY, library)
            (self.conf_dir / "mcim-hil-private-vpcd").write_text(
                f'FRIENDLYNAME "{PRIVATE_READER}"\nDEVICENAME   /dev/null:0x{self.port:X}\n'
                f"LIBPATH      {library}\nCHANNELID    0x{self.port:X}\n")
        for stale in ("pcscd.comm", "pcscd.pid"):
            (RUN_DIR / stale).unlink(missing_ok=True)
        log = open(self.workdir / "pcscd.log", "ab")
        try:
            self._proc = subprocess.Popen(["pcscd", "--foreground", "-c", str(self.conf_dir)],
                                          stdout=log, stderr=subprocess.STDOUT, close_fds=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PcscdUnavailable(f"private pcscd exited at start (code {self._proc.returncode}); "
                                       f"see {self.workdir / 'pcscd.log'}")
            if self.slot.reader in (list_readers() or []):
                return
            time.sleep(0.05)
        raise PcscdUnavailable(f"private pcscd showed no reader {self.slot.reader!r} within {timeout:g} s")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """pcscd killed and started again: every PC/SC context and card handle is lost."""
        self.stop()
        self.restarts += 1
        self.start()

    def __enter__(self) -> PrivatePcscd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
