"""One exception family for every device, in the spirit of OpenHTF's usb_exceptions.

Every message names the device (reader, TCTI, serial URL) and the command, and the
original cause is kept with ``raise ... from``.
"""

from __future__ import annotations


class DeviceError(Exception):
    """A device could not be opened or a command on it failed."""

    def __init__(self, device: str, command: str, message: str) -> None:
        self.device = device
        self.command = command
        self.message = message
        super().__init__(f"{device}: {command}: {message}")


class DeviceNotFound(DeviceError):
    """The bench names a device that is not there (reader, port, TPM)."""


class TpmError(DeviceError):
    """A TPM command failed; ``rc`` is the TPM response code, ``rc_name`` its name."""

    def __init__(self, device: str, command: str, message: str, rc: int | None = None,
                 rc_name: str | None = None) -> None:
        self.rc = rc
        self.rc_name = rc_name
        super().__init__(device, command, message)


class CardError(DeviceError):
    """A card answered a status word other than success; ``sw`` is SW1SW2 as an int."""

    def __init__(self, device: str, command: str, message: str, sw: int | None = None) -> None:
        self.sw = sw
        super().__init__(device, command, message)


class ModemError(DeviceError):
    """A modem answered a final result other than OK, or nothing, or garbage.

    ``result`` is the final result line as received (``ERROR``, ``+CME ERROR: 10``...),
    or None when the modem was silent.
    """

    def __init__(self, device: str, command: str, message: str, result: str | None = None) -> None:
        self.result = result
        super().__init__(device, command, message)


class SafetyRefused(DeviceError):
    """The harness refused a command that could damage precious hardware
    (the last ADM or PIN try, a TPM clear, a rewrite of factory data)."""


class DeviceTimeout(DeviceError):
    """A device did not answer a command within its time; the connection is given up
    (reopen or reconnect it). Whether the device carried the command out is unknown."""


class TpmTimeout(TpmError, DeviceTimeout):
    """The TPM did not answer in time."""


class TpmPowerLost(TpmError):
    """The TPM lost power under the driver: its transient objects and sessions are gone."""


class CardTimeout(CardError, DeviceTimeout):
    """The card (or its reader) did not answer in time."""


class CardRemoved(CardError):
    """The card left its reader (or the reader went away) during the session."""
