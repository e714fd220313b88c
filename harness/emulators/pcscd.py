"""pcscd and its vpcd slots, for the virtual card.

One system pcscd serves every reader (pcscd 1.9.9 ignores PCSCLITE_CSOCK_NAME, so a private
daemon is not an option). vpcd readers come from /etc/reader.conf.d: each has two slots, and
slot n listens on TCP port CHANNELID + n; pcscd names the slot "<FRIENDLYNAME> 00 0n".
A bench claims a slot with an exclusive lock file, so benches side by side never share one.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

READER_CONF_DIR = Path("/etc/reader.conf.d")
VPCD_SLOTS_PER_READER = 2  # vsmartcard vpcd: VPCD_MAX_SLOTS
LOCK_DIR = Path(os.environ.get("MCIM_HIL_LOCK_DIR", "/tmp"))


class PcscdUnavailable(Exception):
    """pcscd is not running and cannot be started from here; the message says how."""


@dataclass(frozen=True)
class VpcdSlot:
    reader: str   # the PC/SC reader name pyscard shows
    port: int     # the TCP port vpcd listens on for this slot's card


def list_readers() -> list[str] | None:
    """Reader names through pcscd, or None when pcscd does not answer."""
    try:
        from smartcard.System import readers
        return [str(r) for r in readers()]
    except Exception:
        return None


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


def vpcd_slots(conf_dir: Path = READER_CONF_DIR) -> list[VpcdSlot]:
    """Every vpcd slot that reader.conf.d declares, in file order."""
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
