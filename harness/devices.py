"""Opens the drivers for a bench's devices, wherever they are (hardware or emulators)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from .bench import Bench
from .emulated import Endpoints
from mcim_hil.drivers.hook import CommandHook


@dataclass
class Devices:
    tpm: Any = None     # mcim_hil.drivers.tpm.Tpm
    uicc: Any = None    # mcim_hil.drivers.uicc.Uicc
    modem: Any = None   # mcim_hil.drivers.modem.Modem


def open_devices(bench: Bench, endpoints: Endpoints, stack: ExitStack,
                 hook: CommandHook | None = None, only: tuple[str, ...] | None = None) -> Devices:
    """Open each device the bench names; ``stack`` closes them. ``only`` limits which."""
    want = set(only or bench.devices())
    devices = Devices()
    if bench.tpm and "tpm" in want:
        from mcim_hil.drivers.tpm import Tpm
        devices.tpm = stack.enter_context(
            Tpm.open(endpoints.tpm_tcti or "", hook=hook, timeout=bench.tpm.timeout))
    if bench.modem and ("modem" in want or (bench.uicc and bench.uicc.via_modem)):
        from mcim_hil.drivers.modem import Modem
        devices.modem = stack.enter_context(Modem.open(
            endpoints.modem_port or "", baudrate=bench.modem.baudrate, timeout=bench.modem.timeout, hook=hook))
        devices.modem.echo_off()
        devices.modem.set_error_mode(2)
    if bench.uicc and "uicc" in want:
        from mcim_hil.drivers.uicc import Uicc
        from mcim_hil.drivers.uicc_transport import CsimTransport, PcscTransport
        if bench.uicc.via_modem:
            transport = CsimTransport(devices.modem)
        else:
            reader = endpoints.uicc_reader if endpoints.uicc_reader is not None else bench.uicc.reader
            transport = PcscTransport.open(reader, shared=bench.uicc.shared, timeout=bench.uicc.timeout)
            stack.callback(transport.close)
        devices.uicc = Uicc(transport, hook=hook)
    return devices
