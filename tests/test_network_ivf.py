"""The IVF (seed 004): stores the PVA's integrity results, answers a new SHO's inquiries, lets results expire."""

from __future__ import annotations

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
