"""The emulated bench's virtual card keeps its K, OPc and ADM1 off the disk: during a run and
after it, no file in the bench's work folder or under /tmp holds them (raw or hex)."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

import pytest

from mcim_hil import emulated
from mcim_hil.bench import load_bench
from mcim_hil.procedures import PROCEDURES, run_procedure
from mcim_hil.session import Session, SessionOptions

LAB = Path(__file__).resolve().parent.parent / "lab_config"
MAX_SCANNED = 64 << 20


def _forms(value: bytes) -> list[bytes]:
    return [value, value.hex().encode(), value.hex().upper().encode()]


def _files_holding(roots: list[Path], values: list[bytes], since: float) -> list[str]:
    needles = [form for v in values for form in _forms(v)]
    found = []
    for root in roots:
        for folder, _dirs, files in os.walk(root, onerror=lambda _e: None):
            for name in files:
                path = Path(folder) / name
                try:
                    st = path.lstat()
                    if not path.is_file() or path.is_symlink() or st.st_size > MAX_SCANNED \
                            or st.st_mtime < since:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                if any(n in data for n in needles):
                    found.append(str(path))  # never the value
    return found


def test_the_virtual_cards_keys_never_reach_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adm1 = secrets.token_bytes(8)
    monkeypatch.setenv("MCIM_HIL_TEST_ADM1", adm1.hex())
    made: list[bytes] = []
    real = secrets.token_bytes

    def recorded(n: int | None = None) -> bytes:
        value = real(n)
        made.append(value)
        return value

    monkeypatch.setattr(emulated.secrets, "token_bytes", recorded)
    shutil.copytree(LAB / "emulated-secrets", tmp_path / "emulated-secrets")
    text = (LAB / "emulated.yaml").read_text().replace(
        "adm1: {file: emulated-secrets/adm1}", "adm1: {env: MCIM_HIL_TEST_ADM1}")
    bench_file = tmp_path / "bench.yaml"
    bench_file.write_text(text)
    bench = load_bench(str(bench_file))
    since = time.time() - 1
    with Session(bench, SessionOptions(air="relayed")) as session:
        k, opc = made[0], made[1]  # the factory K and OPc the bench made for its card
        assert len(k) == len(opc) == 16
        outcome = run_procedure(PROCEDURES["initial"], session, session.record)
        assert outcome.passed
        workdir = session.emulated.workdir
        assert _files_holding([workdir, Path("/tmp")], [k, opc, adm1], since) == [], \
            "a file holds the card's keys during the run"
    assert not workdir.exists() or _files_holding([workdir], [k, opc, adm1], since) == []
    assert _files_holding([Path("/tmp")], [k, opc, adm1], since) == [], \
        "a file holds the card's keys after the run"
