"""pcscd restarted under a card session (issue 9 §1, UICC faults), on a private pcscd in a mount
namespace of its own (emulators/pcscd.py PrivatePcscd): the system pcscd is never touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mcim_hil.emulators.pcscd import namespace_command, namespace_unsupported

pytestmark = pytest.mark.skipif(namespace_unsupported() is not None, reason=str(namespace_unsupported()))

# Runs inside the namespace: a card session on the private pcscd, pcscd restarted, then the
# same transport used again.
TRANSPORT_CHILD = '''
import json, sys, tempfile
from pathlib import Path
from mcim_hil.emulators.pcscd import PrivatePcscd
from mcim_hil.emulators import vuicc
from mcim_hil.drivers.uicc_transport import PcscTransport
from mcim_hil.drivers.errors import CardRemoved

SELECT_MF = bytes.fromhex("00A40004023F00")
out = {}
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    state = tmp / "card.json"
    vuicc.create_card_file(state, iccid="8949440000001155314", imsi="001010123456789",
                           k=bytes(16), opc=bytes(16), adm1=b"53253116", pin1=b"1234")
    with PrivatePcscd(tmp / "pcscd") as pcscd:
        out["port"] = pcscd.port
        with vuicc.VirtualUicc(state, pcscd.slot.port, reader=pcscd.slot.reader):
            card = PcscTransport.open(pcscd.slot.reader, timeout=5.0)
            out["sw_before"] = card.transmit(SELECT_MF)[1]
            out["context_before"] = card._context
            pcscd.restart()
            try:
                card.transmit(SELECT_MF)
                out["error"] = None
            except CardRemoved as exc:
                out["error"] = str(exc)
            out["context_after"] = card._context
            out["sw_after"] = card.transmit(SELECT_MF)[1]
            card.close()
            pcscd.stop()
            try:
                card = PcscTransport.open(pcscd.slot.reader, timeout=1.0)
                out["without_pcscd"] = "opened"
            except Exception as exc:
                out["without_pcscd"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
'''


def _in_namespace(tmp_path: Path, program: str, timeout: float = 120) -> dict:
    script = tmp_path / "child.py"
    script.write_text(program)
    cmd, env = namespace_command([sys.executable, str(script)])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _system_pcscd() -> str:
    return Path("/run/pcscd/pcscd.pid").read_text().strip()


def test_transport_opens_a_new_context_after_pcscd_restarts(tmp_path: Path) -> None:
    system_before = _system_pcscd()
    out = _in_namespace(tmp_path, TRANSPORT_CHILD)
    assert out["sw_before"] >> 8 in (0x61, 0x90)
    # the command that died with pcscd is reported, naming pcscd, not sent again
    assert out["error"] is not None and "pcscd restarted" in out["error"]
    assert "was not sent again" in out["error"]
    # ... and the transport works on a new context without the caller opening anything
    assert out["context_after"] != out["context_before"]
    assert out["sw_after"] >> 8 in (0x61, 0x90)
    # with pcscd gone for good: one clear line naming pcscd
    assert out["without_pcscd"].startswith("DeviceNotFound: pcscd:")
    # the private vpcd is not on the system pcscd's ports, and the system pcscd is the same one
    assert not 35963 <= out["port"] <= 35978
    assert _system_pcscd() == system_before
