"""The bus the network entities talk over: synchronous request/reply, every message recorded.

An entity registers a handler under its address; ``request(message)`` delivers the message to
the handler of ``message.recipient`` and returns its reply. Both pass the record with their
timing. No entity reaches into another's state: all they share is this bus.

Exchanges that do not go to a registered handler (the air interface between the VNO and an
M2ME, where the "handler" is the card reached through the modem) pass ``via=``: the bus records
them the same way.

Fault points (``inject``): a message of a given kind lost, duplicated, delayed past the
sender's reply timeout, or reordered (held back and delivered after the next message); a
fault on a reply's kind keeps that answer from the sender (lost, late or overtaken alike). The
sender retries what a real one would: a request that got no reply in time is sent again, at
most ``RetryPolicy.attempts`` times with exponential backoff; then ``MessageLost`` fails the
step. A peer's answer, even a refusal, is never retried.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, TypeVar

from mcim_hil.network.messages import Message

if TYPE_CHECKING:
    from mcim_hil.record import Record

Handler = Callable[[Message], Message]
M = TypeVar("M", bound=Message)


class NetworkError(Exception):
    """Base of the network's own errors."""


class UnknownAddress(NetworkError):
    """A message was sent to an address nobody registered."""


class UnexpectedMessage(NetworkError):
    """An entity got a message it has no handler for, or a reply of the wrong kind."""


class Refused(NetworkError):
    """A peer answered a step's request negatively; ``reply`` is its answer."""

    def __init__(self, entity: str, what: str, reason: str | None, reply: Message | None = None) -> None:
        self.entity = entity
        self.what = what
        self.reason = reason
        self.reply = reply
        super().__init__(f"{entity}: {what} refused: {reason or 'no reason given'}")


class MessageLost(NetworkError):
    """A request got no reply within the sender's timeout, after every retry."""


BUS_FAULTS = ("lost", "duplicated", "delayed", "reordered")


@dataclass(frozen=True)
class RetryPolicy:
    """What a sender does when a reply does not come: bounded attempts, exponential backoff.
    The reply timeout is the sender's; a fault makes it expire at once (no real wait)."""
    attempts: int = 3
    backoff_s: float = 0.02
    factor: float = 2.0
    timeout_s: float = 5.0

    def pause(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        return self.backoff_s * self.factor ** (attempt - 1)


@dataclass
class BusFault:
    """One fault point: the next ``times`` deliveries of ``kind`` suffer ``fault``."""
    kind: str
    fault: str
    times: int = 1
    hits: int = 0

    def __post_init__(self) -> None:
        if self.fault not in BUS_FAULTS:
            raise ValueError(f"bus fault must be one of {', '.join(BUS_FAULTS)}, not {self.fault!r}")

    def take(self, kind: str) -> bool:
        if kind != self.kind or self.hits >= self.times:
            return False
        self.hits += 1
        return True


@dataclass
class _Held:
    message: Message
    handler: Handler
    exchange: int = 0
    faults: list[str] = field(default_factory=list)


class Bus:
    """Delivers messages between registered addresses and records every one."""

    def __init__(self, record: Record | None = None, retry: RetryPolicy | None = None) -> None:
        self.record = record
        self.retry = retry or RetryPolicy()
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._gates: list[Callable[[Message], Message | None]] = []
        self._faults: list[BusFault] = []
        self._held: list[_Held] = []
        self.fault_log: list[dict] = []   # what the fault points did, in order
        self._exchanges = itertools.count(1)
        self._local = threading.local()   # the exchanges being delivered on this thread (nested)

    # -- fault points -----------------------------------------------------------------------

    def inject(self, kind: str, fault: str, times: int = 1) -> BusFault:
        """The next ``times`` deliveries of a ``kind`` message suffer ``fault`` (BUS_FAULTS)."""
        point = BusFault(kind, fault, times)
        with self._lock:
            self._faults.append(point)
        return point

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _fault_for(self, message: Message) -> str | None:
        with self._lock:
            for point in self._faults:
                if point.take(message.kind):
                    return point.fault
        return None

    def _log_fault(self, message: Message, fault: str, attempt: int) -> None:
        entry = {"kind": message.kind, "sender": message.sender, "recipient": message.recipient,
                 "fault": fault, "attempt": attempt}
        self.fault_log.append(entry)
        if self.record is not None:
            self.record.meta.setdefault("bus_faults", []).append(entry)

    def add_gate(self, gate: Callable[[Message], Message | None]) -> None:
        """``gate`` sees every request sent on the bus (not those handled ``via``): a message it
        answers is the refusal, recorded as the reply, and the request is not delivered
        (a VNO dropping a session's traffic to an address its APN does not reach)."""
        self._gates.append(gate)

    def register(self, address: str, handler: Handler) -> None:
        with self._lock:
            if address in self._handlers:
                raise NetworkError(f"bus: address {address!r} is already registered")
            self._handlers[address] = handler

    def unregister(self, address: str) -> None:
        with self._lock:
            self._handlers.pop(address, None)

    def addresses(self) -> list[str]:
        with self._lock:
            return sorted(self._handlers)

    def is_registered(self, address: str) -> bool:
        with self._lock:
            return address in self._handlers

    def exchange(self) -> int | None:
        """The exchange of the request being delivered (to a handler calling it), else None.
        Every attempt of one ``request`` (the sender's retransmissions, a duplicate) shares one
        exchange, as a transport's message id does; the same message requested again later is
        another exchange: a receiver answers a retransmission again, and refuses a replay."""
        stack = getattr(self._local, "exchanges", None)
        return stack[-1] if stack else None

    def request(self, message: Message, *, via: Handler | None = None) -> Message:
        """Deliver ``message`` and return the reply; ``via`` replaces the registered handler.
        A request that gets no reply in time is sent again (``self.retry``); MessageLost after
        the last attempt."""
        handler = via
        if handler is None:
            with self._lock:
                handler = self._handlers.get(message.recipient)
            if handler is None:
                raise UnknownAddress(f"bus: {message.kind} from {message.sender}: "
                                     f"no entity at {message.recipient!r}")
        if via is None:
            self._gate(message)
        policy = self.retry
        why = ""
        exchange = next(self._exchanges)
        for attempt in range(1, max(1, policy.attempts) + 1):
            fault = self._fault_for(message)
            if fault is not None:
                self._log_fault(message, fault, attempt)
            try:
                return self._deliver(message, handler, fault, exchange)
            except _NoReply as exc:
                why = str(exc)
            if attempt < policy.attempts:
                time.sleep(policy.pause(attempt))
        raise MessageLost(f"bus: {message.kind} from {message.sender} to {message.recipient}: no reply "
                          f"within {policy.timeout_s:g} s after {policy.attempts} attempts ({why})")

    def _gate(self, message: Message) -> None:
        """A gate's refusal is the answer (recorded as the reply); the request is not delivered."""
        for gate in self._gates:
            refusal = gate(message)
            if refusal is not None:
                t0 = time.perf_counter()
                self._record_request(message)
                if self.record is not None:
                    self.record.message(refusal, "reply", time.time(), time.perf_counter() - t0)
                raise Refused(refusal.sender, f"{message.kind} from {message.sender} to {message.recipient}",
                              getattr(refusal, "reason", None) or refusal.kind, refusal)

    def _deliver(self, message: Message, handler: Handler, fault: str | None, exchange: int) -> Message:
        if fault == "lost":
            self._record_request(message)
            self._record_no_reply(message, "lost on the bus")
            raise _NoReply("lost")
        if fault == "reordered":   # overtaken: delivered after the next message on the bus
            self._record_request(message)
            with self._lock:
                self._held.append(_Held(message, handler, exchange))
            self._record_no_reply(message, "held back, to be delivered after the next message")
            raise _NoReply("overtaken by a later message")
        reply = self._handle(message, handler, exchange)
        reply_fault = self._fault_for(reply)   # a fault point on the reply's kind: it never arrives
        if reply_fault is not None:
            self._log_fault(reply, reply_fault, 0)
            if reply_fault != "duplicated":    # a duplicated reply: the sender takes the first
                self._record_no_reply(message, f"the {reply.kind} answer was {reply_fault}")
                self._deliver_held()
                raise _NoReply(f"{reply.kind} {reply_fault}")
        if fault == "delayed":     # the peer answered, too late: the sender has given up on it
            self._record_no_reply(message, f"reply later than the {self.retry.timeout_s:g} s timeout, discarded")
            self._deliver_held()
            raise _NoReply("reply too late")
        if fault == "duplicated":  # the peer gets it twice; the sender takes the first reply
            try:
                self._handle(message, handler, exchange)
            except Exception:      # noqa: BLE001 - the duplicate's fate is recorded, not the sender's
                pass
        self._deliver_held()
        return reply

    def _deliver_held(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for late in held:
            try:
                self._handle(late.message, late.handler, late.exchange)
            except Exception:      # noqa: BLE001 - nobody waits for a late message's reply
                pass

    def _record_request(self, message: Message) -> None:
        if self.record is not None:
            self.record.message(message, "request", time.time(), None)

    def _record_no_reply(self, message: Message, what: str) -> None:
        if self.record is not None:
            self.record.message_error(message, MessageLost(f"fault injected: {what}"), time.time(), 0.0)

    def _handle(self, message: Message, handler: Handler, exchange: int) -> Message:
        started = time.time()
        t0 = time.perf_counter()
        if self.record is not None:
            self.record.message(message, "request", started, None)
        stack = self._local.__dict__.setdefault("exchanges", [])
        stack.append(exchange)
        try:
            reply = handler(message)
        except BaseException as exc:
            if self.record is not None:
                self.record.message_error(message, exc, time.time(), time.perf_counter() - t0)
            raise
        finally:
            stack.pop()
        duration = time.perf_counter() - t0
        if not isinstance(reply, Message):
            raise UnexpectedMessage(f"{message.recipient}: answered {message.kind} with "
                                    f"{type(reply).__name__}, not a message")
        if self.record is not None:
            self.record.message(reply, "reply", time.time(), duration)
        return reply

    def post(self, message: Message) -> None:
        """Record a one-way message that needs no reply (an AUTHENTICATION REJECT over the air)."""
        if self.record is not None:
            self.record.message(message, "oneway", time.time(), None)


M = TypeVar("M", bound=Message)


class Retransmissions:
    """A receiver's answers to its last requests, by bus exchange: a retransmission (the same
    message in the same exchange: the sender's answer was late or lost) gets the first answer
    again instead of being handled twice (a single-use nonce would call it a replay). The same
    message in a new exchange is handled anew. Bounded: a sender retransmits within seconds."""

    def __init__(self, bus: Bus, keep: int = 256) -> None:
        self._bus = bus
        self._keep = keep
        self._answers: OrderedDict[int, tuple[Message, Message]] = OrderedDict()
        self._lock = threading.Lock()

    def answer(self, msg: M, handle: Callable[[M], Message]) -> Message:
        exchange = self._bus.exchange()
        if exchange is None:
            return handle(msg)
        with self._lock:
            seen = self._answers.get(exchange)
        if seen is not None and seen[0] == msg:
            return seen[1]
        reply = handle(msg)
        with self._lock:
            self._answers[exchange] = (msg, reply)
            while len(self._answers) > self._keep:
                self._answers.popitem(last=False)
        return reply


class _NoReply(Exception):
    """One attempt got no reply in time (the bus's own; MessageLost after the last attempt)."""


def expect_reply(reply: Message, *kinds: type[M]) -> M:
    """Return ``reply`` if it is one of ``kinds``, else raise UnexpectedMessage naming both."""
    if isinstance(reply, kinds):
        return reply  # type: ignore[return-value]
    names = " or ".join(k.__name__ for k in kinds)
    raise UnexpectedMessage(f"{reply.sender}: answered with {reply.kind}, expected {names}")


class Entity:
    """A network function on the bus: an address, handlers per message type, a send helper."""

    def __init__(self, bus: Bus, address: str) -> None:
        self.bus = bus
        self.address = address
        self._handlers: dict[type[Message], Callable[[Message], Message]] = {}
        bus.register(address, self._dispatch)

    def on(self, kind: type[M], handler: Callable[[M], Message]) -> None:
        """Handle messages of ``kind`` (exact type) with ``handler``."""
        self._handlers[kind] = handler  # type: ignore[assignment]

    def _dispatch(self, message: Message) -> Message:
        handler = self._handlers.get(type(message))
        if handler is None:
            raise UnexpectedMessage(f"{self.address}: no handler for {message.kind} "
                                    f"from {message.sender}")
        return handler(message)

    def request(self, message: Message, *kinds: type[M]) -> M:
        """Send ``message`` and return the reply, checked to be one of ``kinds``."""
        return expect_reply(self.bus.request(message), *kinds)
