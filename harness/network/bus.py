"""The bus the network entities talk over: synchronous request/reply, every message recorded.

An entity registers a handler under its address; ``request(message)`` delivers the message to
the handler of ``message.recipient`` and returns its reply. Both pass the record with their
timing. No entity reaches into another's state: all they share is this bus.

Exchanges that do not go to a registered handler (the air interface between the VNO and an
M2ME, where the "handler" is the card reached through the modem) pass ``via=``: the bus records
them the same way.
"""

from __future__ import annotations

import threading
import time
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


class Bus:
    """Delivers messages between registered addresses and records every one."""

    def __init__(self, record: Record | None = None) -> None:
        self.record = record
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._gates: list[Callable[[Message], Message | None]] = []

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

    def request(self, message: Message, *, via: Handler | None = None) -> Message:
        """Deliver ``message`` and return the reply; ``via`` replaces the registered handler."""
        handler = via
        if handler is None:
            with self._lock:
                handler = self._handlers.get(message.recipient)
            if handler is None:
                raise UnknownAddress(f"bus: {message.kind} from {message.sender}: "
                                     f"no entity at {message.recipient!r}")
        started = time.time()
        t0 = time.perf_counter()
        if self.record is not None:
            self.record.message(message, "request", started, None)
        for gate in self._gates if via is None else ():
            refusal = gate(message)
            if refusal is not None:
                if self.record is not None:
                    self.record.message(refusal, "reply", time.time(), time.perf_counter() - t0)
                raise Refused(refusal.sender, f"{message.kind} from {message.sender} to {message.recipient}",
                              getattr(refusal, "reason", None) or refusal.kind, refusal)
        try:
            reply = handler(message)
        except BaseException as exc:
            if self.record is not None:
                self.record.message_error(message, exc, time.time(), time.perf_counter() - t0)
            raise
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
