"""The one hook every device command passes, so a record can listen to all of them.

Drivers emit a :class:`CommandEvent` after each device command. Events that carry a
secret (a PIN or ADM key in VERIFY, key material written to a card, an unsealed
secret) are flagged ``secret=True`` by the driver; the record redacts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class CommandEvent:
    device: str          # "tpm" | "uicc" | "modem"
    port: str            # TCTI, reader name or serial URL
    command: str         # "TPM2_Quote", "SELECT", "AT+CGMI"...
    request: bytes       # raw APDU, AT line; b"" where the library hides the bytes (TPM)
    response: bytes      # raw response (APDU data + SW, AT lines)
    status: str          # "TPM_RC_SUCCESS", "9000", "OK", or the error's name
    started: float       # time.time() when the command was sent
    duration_s: float
    secret: bool = False  # request or response carries a secret: never write it out


Listener = Callable[[CommandEvent], None]


class CommandHook:
    """A list of listeners; a driver owns one and calls :meth:`emit` after every command."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def emit(self, event: CommandEvent) -> None:
        for listener in list(self._listeners):
            listener(event)
