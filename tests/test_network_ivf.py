"""The IVF (seed 004): stores the PVA's integrity results, answers a new SHO's inquiries, lets results expire."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcim_hil.network.bus import Bus
from mcim_hil.network.ivf import Ivf
from mcim_hil.network.messages import (
    IntegrityInquiry,
    IntegrityInquiryResponse,
    IntegrityResultAck,
    IntegrityResultIssue,
)
from mcim_hil.network.store import Store
from mcim_hil.record import Record

PVA = "pva.pva-v.example"
NSHO = "sho.sho-c.example"
DIGEST = bytes(range(32))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup() -> tuple[Bus, Ivf, Clock]:
    clock = Clock()
    bus = Bus(Record())
    ivf = Ivf(bus, Store(), address="ivf.pva-v.example", pva_addresses=[PVA], lifetime_s=3600.0, clock=clock)
    return bus, ivf, clock


def issue(bus: Bus, sender: str = PVA, *, passed: bool = True, at: float = 1_000_000.0) -> IntegrityResultAck:
    reply = bus.request(IntegrityResultIssue(sender=sender, recipient="ivf.pva-v.example", platform_id="m2me-1",
                                             passed=passed, validated_components=("bootloader", "firmware"),
                                             pcr_digest=DIGEST, validated_at=at))
    assert isinstance(reply, IntegrityResultAck)
    return reply


def inquire(bus: Bus, platform_id: str = "m2me-1", required: tuple[str, ...] = ()) -> IntegrityInquiryResponse:
    reply = bus.request(IntegrityInquiry(sender=NSHO, recipient="ivf.pva-v.example", platform_id=platform_id,
                                         required_components=required))
    assert isinstance(reply, IntegrityInquiryResponse)
    return reply


def test_stores_and_answers_the_pva_result(setup: tuple[Bus, Ivf, Clock]) -> None:
    bus, ivf, _ = setup
    assert issue(bus).stored
    answer = inquire(bus, required=("firmware",))
    assert answer.available and answer.passed
    assert answer.validated_components == ("bootloader", "firmware")
    assert answer.pcr_digest == DIGEST
    assert answer.validated_at == 1_000_000.0 and answer.expires_at == 1_003_600.0
    assert ivf.result("m2me-1")["issuer"] == PVA


def test_unknown_platform_is_a_miss(setup: tuple[Bus, Ivf, Clock]) -> None:
    bus, _, _ = setup
    answer = inquire(bus, "m2me-unknown")
    assert not answer.available and answer.reason == "no integrity result for this platform"


def test_result_expires(setup: tuple[Bus, Ivf, Clock]) -> None:
    bus, _, clock = setup
    issue(bus)
    clock.now += 3599.0
    assert inquire(bus).available
    clock.now += 1.0
    answer = inquire(bus)
    assert not answer.available and "expired" in (answer.reason or "")


def test_components_the_new_sho_requires_beyond_the_result_are_a_miss(setup: tuple[Bus, Ivf, Clock]) -> None:
    bus, _, _ = setup
    issue(bus)
    answer = inquire(bus, required=("firmware", "modem-firmware"))
    assert not answer.available and "modem-firmware" in (answer.reason or "")


def test_only_a_pva_issues_results_and_a_new_one_replaces_the_old(setup: tuple[Bus, Ivf, Clock]) -> None:
    bus, _, clock = setup
    refused = issue(bus, sender="sho.sho-b.example")
    assert not refused.stored and "not a PVA" in (refused.reason or "")
    assert not inquire(bus).available
    issue(bus)
    clock.now += 10.0
    issue(bus, passed=False, at=clock.now)
    answer = inquire(bus)
    assert answer.available and not answer.passed and answer.validated_at == clock.now


# -- seed 004's IVF from the bench file, through `mcim-hil run` (the 4th change step 3 NOTE) ---------

LAB_CONFIG = Path(__file__).resolve().parent.parent / "lab_config"


def run_cli(bench: str, procedure: str, out: Path) -> tuple[int, dict]:
    from mcim_hil.cli import main
    code = main(["run", "--bench", str(LAB_CONFIG / bench), "--procedure", procedure, "--air", "relayed",
                 "--out", str(out)])
    return code, json.loads((out / "run.json").read_text())


def step(run: dict, number: int) -> dict:
    return [s for s in run["steps"] if s["number"] == number][-1]


def kinds(run: dict, prefix: str = "") -> list[str]:
    return [e["kind"] for s in run["steps"] if str(s["number"]).startswith(prefix) for e in s["events"]
            if e.get("type") == "message" and e.get("direction") == "request"]


def test_result_unavailable_on_the_ivf_shows_at_steps_3_and_4(tmp_path: Path) -> None:
    code, run = run_cli("emulated-ivf-unavailable.yaml", "change-sho", tmp_path)
    assert code == 0
    assert run["meta"]["network"]["addresses"]["ivf"] == "ivf.ivp-i.example"  # a separate entity
    assert "NOTE: the new SHO requests the PVA to validate integrity (the integrity result has expired)" \
        in step(run, 3)["detail"]
    assert step(run, 4)["detail"].startswith("IVF result not used (the integrity result has expired)")
    assert run["meta"]["pva"]["integrity_validations"] == 2  # the initial one and the fallback


def test_components_the_new_sho_requires_differ_shows_at_steps_3_and_4(tmp_path: Path) -> None:
    code, run = run_cli("emulated-ivf-components.yaml", "change-sho", tmp_path)
    assert code == 0
    assert run["meta"]["network"]["addresses"]["ivf"] == "ivf.sho-b.example"  # on the old SHO
    assert "(components not validated: module-firmware)" in step(run, 3)["detail"]
    assert "components platform-firmware, module-firmware, m2me-agent" in step(run, 4)["detail"]
    counters = run["meta"]["pva"]
    assert counters["integrity_validations"] == 2 and counters["ivf_issues"] == 2


def test_only_seed_004_procedures_issue_to_the_ivf(tmp_path: Path) -> None:
    code, initial = run_cli("emulated.yaml", "initial", tmp_path / "initial")
    assert code == 0
    assert "ValidationRequest" in kinds(initial) and "IntegrityResultIssue" not in kinds(initial)
    assert initial["meta"]["pva"]["ivf_issues"] == 0
    code, with_ivf = run_cli("emulated.yaml", "initial-ivf", tmp_path / "initial-ivf")
    assert code == 0
    assert kinds(with_ivf).count("IntegrityResultIssue") == 1
    assert with_ivf["meta"]["pva"]["ivf_issues"] == 1


def test_bad_ivf_keys_in_the_bench_file_name_the_key(tmp_path: Path) -> None:
    from mcim_hil.bench import BenchFileError, load_bench
    bench = tmp_path / "bench.yaml"
    text = (LAB_CONFIG / "emulated.yaml").read_text().replace("emulated-secrets/", str(LAB_CONFIG / "emulated-secrets") + "/")
    bench.write_text(text + "  ivf_host: moon\n  ivf_lifetime_s: -1\n  required_components: {third_sho: [x]}\n")
    with pytest.raises(BenchFileError) as caught:
        load_bench(bench)
    message = str(caught.value)
    assert "topology.ivf_host: 'moon' is not one of pva, old_sho, separate" in message
    assert "topology.ivf_lifetime_s: must be 0 or more seconds" in message
    assert "unknown SHO role(s) ['third_sho']" in message
