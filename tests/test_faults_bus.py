"""Fault points on the network bus: a message lost, duplicated, delayed past the sender's
timeout, reordered. The sender retries with bounded attempts; otherwise MessageLost names the
message, sender and recipient. A peer's refusal is an answer and is never retried."""

from __future__ import annotations

import pytest

from mcim_hil.network.bus import Bus, Entity, MessageLost, RetryPolicy
from mcim_hil.network.messages import RegistryEntry, RegistryQuery
from mcim_hil.record import Record

FAST = RetryPolicy(attempts=3, backoff_s=0.0)


class Registry(Entity):
    """A DRF-like peer that counts what reaches it, in order."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus, "ro.drf")
        self.seen: list[str] = []
        self.on(RegistryQuery, self.answer)

    def answer(self, msg: RegistryQuery) -> RegistryEntry:
        self.seen.append(msg.pcid)
        return RegistryEntry(sender=self.address, recipient=msg.sender, pcid=msg.pcid, found=True)


def query(bus: Bus, pcid: str = "pcid-1") -> RegistryEntry:
    reply = bus.request(RegistryQuery(sender="ro.dpf", recipient="ro.drf", pcid=pcid))
    assert isinstance(reply, RegistryEntry)
    return reply


@pytest.fixture()
def bus() -> Bus:
    return Bus(Record(), retry=FAST)


def test_a_lost_message_is_sent_again_and_the_exchange_recovers(bus: Bus) -> None:
    peer = Registry(bus)
    bus.inject("RegistryQuery", "lost")
    assert query(bus).found
    assert peer.seen == ["pcid-1"]   # the lost copy never arrived; the retransmission did
    assert bus.fault_log == [{"kind": "RegistryQuery", "sender": "ro.dpf", "recipient": "ro.drf",
                              "fault": "lost", "attempt": 1}]
    errors = [m for m in bus.record.messages() if m["direction"] == "error"]
    assert len(errors) == 1 and "lost on the bus" in errors[0]["fields"]["error"]


def test_a_message_lost_on_every_attempt_fails_naming_it(bus: Bus) -> None:
    peer = Registry(bus)
    bus.inject("RegistryQuery", "lost", times=3)
    with pytest.raises(MessageLost, match="RegistryQuery from ro.dpf to ro.drf: no reply .* after 3 attempts"):
        query(bus)
    assert peer.seen == []
    # bounded: exactly the policy's attempts, then a later exchange goes through
    assert [f["attempt"] for f in bus.fault_log] == [1, 2, 3]
    assert query(bus).found


def test_a_reply_later_than_the_timeout_makes_the_sender_retry(bus: Bus) -> None:
    peer = Registry(bus)
    bus.inject("RegistryQuery", "delayed")
    assert query(bus).found
    assert peer.seen == ["pcid-1", "pcid-1"]   # the peer answered twice; the first answer came too late


def test_a_duplicated_message_reaches_the_peer_twice_and_the_sender_once(bus: Bus) -> None:
    peer = Registry(bus)
    bus.inject("RegistryQuery", "duplicated")
    assert query(bus).found
    assert peer.seen == ["pcid-1", "pcid-1"]
    replies = [m for m in bus.record.messages() if m["direction"] == "reply"]
    assert len(replies) == 2


def test_a_reordered_message_arrives_after_the_one_that_overtook_it(bus: Bus) -> None:
    peer = Registry(bus)
    bus.inject("RegistryQuery", "reordered")
    assert query(bus, "first").found
    # the held original came after its retransmission
    assert peer.seen == ["first", "first"]
    # a sender that does not retry: the held message arrives after the next one
    single = Bus(Record(), retry=RetryPolicy(attempts=1, backoff_s=0.0))
    other = Registry(single)
    single.inject("RegistryQuery", "reordered")
    with pytest.raises(MessageLost, match="after 1 attempts"):
        query(single, "held")
    assert query(single, "next").found
    assert other.seen == ["next", "held"]


def test_a_refusal_is_an_answer_and_is_not_retried(bus: Bus) -> None:
    calls: list[str] = []

    def refuse(msg: RegistryQuery) -> RegistryEntry:
        calls.append(msg.pcid)
        return RegistryEntry(sender="ro.drf", recipient=msg.sender, pcid=msg.pcid, found=False)

    bus.register("ro.drf", refuse)
    assert not query(bus).found
    assert calls == ["pcid-1"]


def test_an_unknown_fault_is_refused_naming_the_choices(bus: Bus) -> None:
    with pytest.raises(ValueError, match="lost, duplicated, delayed, reordered"):
        bus.inject("RegistryQuery", "scrambled")


def test_a_lost_reply_makes_the_sender_ask_again(bus: Bus) -> None:
    peer = Registry(bus)
    bus.inject("RegistryEntry", "lost")
    assert query(bus).found
    assert peer.seen == ["pcid-1", "pcid-1"]   # the peer answered twice; its first answer never arrived
    assert [(f["kind"], f["fault"]) for f in bus.fault_log] == [("RegistryEntry", "lost")]


def test_a_retransmission_is_delivered_in_the_same_exchange_a_new_request_in_another(bus: Bus) -> None:
    """A receiver tells the sender's retransmission (same exchange: the first answer may have been
    lost) from the same message sent again later (a new exchange: a replay)."""
    seen: list[int | None] = []

    class Peer(Registry):
        def answer(self, msg: RegistryQuery) -> RegistryEntry:
            seen.append(bus.exchange())
            return super().answer(msg)

    Peer(bus)
    bus.inject("RegistryQuery", "delayed")
    query(bus)
    query(bus)
    assert len(seen) == 3 and None not in seen
    assert seen[0] == seen[1] != seen[2]
    assert bus.exchange() is None    # outside a delivery
