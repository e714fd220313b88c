"""Issue 7 §8: the PCID's subscription data limits its access. The ICF names one APN whose
connectivity reaches the RO only; the VNO refuses an attach on another APN as a real network
does (ATTACH REJECT #19 carrying PDN CONNECTIVITY REJECT #27, TS 24.301 5.5.1.2.5), and drops,
refuses and records a PCID session's request to any address but the RO's.

Through the real stacks: the AKA runs on the virtual card behind pcscd, the module's attach on
the emulated modem over its pty.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from mcim_hil.bench import load_bench
from mcim_hil.m2me.air import ModuleAttach, RelayedAttach
from mcim_hil.network.bus import Refused
from mcim_hil.network.messages import ConnectRequest
from mcim_hil.network.subscription import (
    CAUSE_ESM_FAILURE,
    ESM_CAUSE_UNKNOWN_APN,
    PCID_APN,
    TrafficRefused,
)
from mcim_hil.record import Record
from mcim_hil.session import Session, SessionOptions


def _session(air: str) -> Iterator[Session]:
    with Session(load_bench(None), SessionOptions(air=air), Record()) as session:
        yield session


@pytest.fixture
def relayed() -> Iterator[Session]:
    yield from _session("relayed")


@pytest.fixture
def module() -> Iterator[Session]:
    yield from _session("module")


def _messages(session: Session) -> list[dict]:
    data = session.record.to_dict()
    events = [e for s in data["steps"] for e in s["events"]] + data["outside"]
    return [e for e in events if e["type"] == "message"]


def test_the_pcid_s_subscription_names_one_apn_reaching_the_ro_only(relayed: Session) -> None:
    s = relayed
    assert s.m2me.attach().accepted
    answer = [m for m in _messages(s) if m["kind"] == "UpdateLocationAnswer"]
    assert answer and answer[-1]["sender"] == s.network.addresses.icf
    at = s.network.addresses
    assert answer[-1]["fields"]["apns"] == [PCID_APN]
    assert answer[-1]["fields"]["reachable"] == [at.icf, at.drf, at.dpf]


def test_an_attach_on_another_apn_is_rejected_with_esm_cause_27(relayed: Session) -> None:
    s = relayed
    assert isinstance(s.m2me.air, RelayedAttach)
    s.m2me.air.apn = "internet"
    result = s.m2me.attach()
    assert not result.accepted and result.reject_cause == CAUSE_ESM_FAILURE
    kinds = [m["kind"] for m in _messages(s)]
    assert kinds[-3:] == ["PdnConnectivityRequest", "PdnConnectivityReject", "AttachReject"]
    reject = [m for m in _messages(s) if m["kind"] == "PdnConnectivityReject"][-1]
    assert reject["fields"] == {"imsi": s.m2me.pcid, "apn": "internet", "esm_cause": ESM_CAUSE_UNKNOWN_APN}
    assert s.network.vno.lease(s.m2me.pcid) is None and s.m2me.address is None
    s.m2me.air.apn = PCID_APN                         # the APN the subscription names: accepted
    assert s.m2me.attach().accepted


def test_the_module_s_attach_on_another_apn_is_rejected_over_at(module: Session) -> None:
    s = module
    if s.emulated is None or s.emulated.modem_emulator is None:
        pytest.skip("the module's own attach needs the emulated modem")
    assert isinstance(s.m2me.air, ModuleAttach)
    s.m2me.air.apn = "internet"                      # AT+CGDCONT=1,"IP","internet" then AT+CGATT=1
    result = s.m2me.attach()
    assert not result.accepted and result.reject_cause == CAUSE_ESM_FAILURE
    reject = [m for m in _messages(s) if m["kind"] == "PdnConnectivityReject"]
    assert [m["fields"]["apn"] for m in reject] == ["internet"]


def test_a_pcid_session_reaching_past_the_ro_is_refused_and_recorded(relayed: Session) -> None:
    s = relayed
    assert s.m2me.attach().accepted
    ip, sho = s.m2me.address, s.network.addresses.sho
    with pytest.raises(Refused, match=f"on APN {PCID_APN} reaches .* only"):
        s.network.bus.request(ConnectRequest(sender=ip, recipient=sho, pcid=s.m2me.pcid, ip_address=ip))
    messages = _messages(s)
    assert [(m["kind"], m["direction"], m["recipient"]) for m in messages[-2:]] == [
        ("ConnectRequest", "request", sho), ("TrafficRefused", "reply", ip)]
    assert messages[-1]["fields"]["destination"] == sho
    assert [r.destination for r in s.network.vno.refused] == [sho]
    assert not [m for m in messages if m["direction"] == "error"]     # never delivered: the SHO did not answer
    # the RO itself is reached
    assert s.m2me.connect_to_ro(s.network.addresses.icf)
    assert isinstance(s.network.vno.refused[-1], TrafficRefused) and len(s.network.vno.refused) == 1
