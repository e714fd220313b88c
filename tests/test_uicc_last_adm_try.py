"""Hardware is precious: with ADM1 down to its last try, no command path spends it. The
virtual card is a kept card file (uicc.card_state) whose ADM1 counter is set to 1."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcim_hil.bench import load_bench
from mcim_hil.drivers.errors import SafetyRefused
from mcim_hil.drivers.sja2 import Sja2
from mcim_hil.drivers.uicc import Uicc
from mcim_hil.drivers.uicc_transport import PcscTransport
from mcim_hil.emulated import EmulatedBench
from mcim_hil.emulators.vuicc_fs import ADM1, CardState
from mcim_hil.session import Session, SessionOptions

LAB = Path(__file__).resolve().parent.parent / "lab_config"


def _adm1_tries(card: Path) -> int:
    return CardState.load(card).pins[ADM1].tries


@pytest.fixture()
def last_try_bench(tmp_path: Path) -> Path:
    shutil.copytree(LAB / "emulated-secrets", tmp_path / "emulated-secrets")
    card = tmp_path / "card.json"
    bench_file = tmp_path / "bench.yaml"
    bench_file.write_text((LAB / "emulated.yaml").read_text().replace(
        "  profile: sysmo-isim-sja2", f"  profile: sysmo-isim-sja2\n  card_state: {card}"))
    # first start makes the card file; then its ADM1 counter goes down to 1
    with Session(load_bench(str(bench_file)), SessionOptions(air="relayed")):
        pass
    state = CardState.load(card)
    state.pins[ADM1].tries = 1
    state.save(card)
    return bench_file


def test_a_session_refuses_the_last_adm1_try(last_try_bench: Path) -> None:
    # the equipment supplier's personalisation needs ADM1: the bench refuses before it
    card = last_try_bench.parent / "card.json"
    with pytest.raises(SafetyRefused) as refused:
        with Session(load_bench(str(last_try_bench)), SessionOptions(air="relayed")):
            pass
    assert refused.value.command == "VERIFY ADM1" and "1 tries left" in str(refused.value)
    assert _adm1_tries(card) == 1, "the last ADM1 try was spent"


def test_snapshot_and_restore_refuse_the_last_adm1_try(last_try_bench: Path) -> None:
    card = last_try_bench.parent / "card.json"
    bench = load_bench(str(last_try_bench))
    with EmulatedBench(bench) as endpoints:
        uicc = Uicc(PcscTransport.open(endpoints.uicc_reader))
        try:
            sja2 = Sja2(uicc)
            with pytest.raises(SafetyRefused):  # what the plugin does before and after a test
                sja2.snapshot(adm1=bench.uicc.adm1.resolve_key())
        finally:
            uicc.close()
    assert _adm1_tries(card) == 1, "the last ADM1 try was spent"


def test_the_cli_run_refuses_the_last_adm1_try(last_try_bench: Path, tmp_path: Path) -> None:
    card = last_try_bench.parent / "card.json"
    cli = Path(sys.executable).parent / "mcim-hil"
    done = subprocess.run([str(cli), "run", "--bench", str(last_try_bench), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert _adm1_tries(card) == 1, "the last ADM1 try was spent"


def test_bench_check_does_not_spend_the_last_adm1_try(last_try_bench: Path) -> None:
    card = last_try_bench.parent / "card.json"
    cli = Path(sys.executable).parent / "mcim-hil"
    done = subprocess.run([str(cli), "bench", "check", "--bench", str(last_try_bench)],
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr
    assert _adm1_tries(card) == 1, "the last ADM1 try was spent"


def test_the_fault_matrix_does_not_spend_the_last_adm1_try(last_try_bench: Path, tmp_path: Path) -> None:
    """The matrix's cases run on factory card images made from the bench's keys, never on the kept
    card; whatever it does, the card's last ADM1 try stays."""
    card = last_try_bench.parent / "card.json"
    cli = Path(sys.executable).parent / "mcim-hil"
    done = subprocess.run([str(cli), "faults", "--bench", str(last_try_bench), "--procedure", "initial",
                           "--steps", "19", "--kinds", "uicc", "--out", str(tmp_path / "faults")],
                          capture_output=True, text=True, timeout=600)
    assert "Traceback" not in done.stderr, done.stderr
    assert _adm1_tries(card) == 1, "the last ADM1 try was spent"
