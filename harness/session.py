"""A provisioning session on a bench: the devices, the record, the network and the M2ME.

It brings up the emulated devices a bench asks for (real ones are used as they are), opens
the drivers with their command hook feeding the record, builds the network, and manufactures
a pristine M2ME from the devices. Procedures run against it.

A session can also be built on parts that already run (the pytest plugin keeps the bench up
for a whole test session and opens the drivers per test): it then uses them and leaves them
running; it only ever stops what it started itself.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from mcim_hil.drivers.hook import CommandHook

from .bench import Bench
from .devices import Devices, open_devices
from .emulated import EmulatedBench, Endpoints
from .m2me.agent import M2me
from .m2me.air import ModuleAttach, RelayedAttach
from .m2me.components import measured_components
from .m2me.factory import Manufactured, manufacture
from .m2me.tre import MEASUREMENT_PCR, Component, TrustedEnvironment
from .network.factory import build_network
from .network.subscriber import M2meSubscriber
from .network.topology import Network, NetworkOptions
from .record import Record

AIR_MODES = ("module", "relayed")


@dataclass
class SessionOptions:
    air: str = "module"                 # module: the modem attaches itself; relayed: the harness relays the AKA
    platform_id: str | None = None      # default: from the EK certificate's serial
    golden: dict[str, Component] | None = None   # what the supplier says it shipped (reference values)
    network: dict[str, Any] | None = None        # NetworkOptions overrides
    store_dir: Path | None = None
    ek_roots: list[x509.Certificate] | None = None  # replaces the bench's pinned EK CAs
    gsmtap: str | None = None           # where to listen for sniffed SIM traffic (HOST:PORT, off); over the bench's


def ek_roots(bench: Bench, endpoints: Endpoints | None) -> list[x509.Certificate]:
    """The EK CA certificates the PVA pins: the emulated TPM's local CA, then the bench file's."""
    paths = list(endpoints.ek_ca_certificates if endpoints else [])
    paths += list(bench.tpm.ek_ca if bench.tpm and bench.tpm.ek_ca else [])
    certs = []
    for path in paths:
        data = Path(path).read_bytes()
        certs.append(x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                     else x509.load_der_x509_certificate(data))
    return certs


def build_bench_network(bench: Bench, record: Record, store: str | Path, *,
                        roots: list[x509.Certificate], overrides: dict[str, Any] | None = None) -> Network:
    """The TR 33.812 network for a bench: its topology options, ``overrides`` on top."""
    options = dict(overrides or {})
    for key, value in bench.topology.network_options().items():
        options.setdefault(key, value)
    # issue 9: the PVA quotes, and the SHO seals to, the bench's tpm.seal_pcrs
    options.setdefault("pcr_selection", bench.tpm.seal_pcrs if bench.tpm is not None else (MEASUREMENT_PCR,))
    return build_network(NetworkOptions.from_mapping(options, source=str(bench.path)), store, record,
                         ek_roots=roots)


class Session:
    """Use as a context manager; ``ctx`` for procedures is the session itself.

    ``emulated``: a bench already up (a started EmulatedBench): used, never stopped here.
    ``devices``: drivers already open, their hook already feeding ``record``: used, never closed here.
    ``network``: a network already built on ``record``.
    """

    def __init__(self, bench: Bench, options: SessionOptions | None = None, record: Record | None = None, *,
                 emulated: EmulatedBench | None = None, devices: Devices | None = None,
                 network: Network | None = None) -> None:
        self.bench = bench
        self.options = options or SessionOptions()
        if self.options.air not in AIR_MODES:
            raise ValueError(f"air interface must be one of {', '.join(AIR_MODES)}")
        self.record = record or Record(meta={"bench": str(bench.path), "bench_name": bench.name})
        self.hook = CommandHook()
        self.hook.subscribe(self.record.device)
        self._stack = ExitStack()
        self.emulated: EmulatedBench | None = emulated
        self.endpoints: Endpoints | None = emulated.endpoints if emulated is not None else None
        self.devices: Devices | None = devices
        self.network: Network | None = network
        self.m2me: M2me | None = None
        self.tre: TrustedEnvironment | None = None
        self.manufactured: Manufactured | None = None
        self.state: dict[str, Any] = {}   # what steps hand to later steps
        self.subscriber = M2meSubscriber()  # the M2ME's owner: its key is registered at manufacture

    # -- lifecycle ----------------------------------------------------------------------------

    def start_bench(self) -> Endpoints:
        """Bring up the emulators (if any) and open the devices, unless they were given up already."""
        if self.emulated is None:
            self.emulated = EmulatedBench(self.bench)
            self.endpoints = self._stack.enter_context(self.emulated)
        assert self.endpoints is not None
        if self.endpoints.lab is not None:
            self.record.meta["labgrid"] = self.endpoints.lab
        self._start_sniffing()
        if self.devices is None:
            self.devices = open_devices(self.bench, self.endpoints, self._stack, hook=self.hook)
        self.tre = TrustedEnvironment(self.devices.tpm)
        self._stack.callback(self.tre.release)
        return self.endpoints

    def build(self) -> None:
        """The network, and the M2ME made pristine by the equipment supplier."""
        assert self.devices is not None and self.tre is not None and self.endpoints is not None
        if self.network is None:
            store = self.options.store_dir or Path(self._stack.enter_context(tempfile.TemporaryDirectory(
                prefix="mcim-hil-run-")))
            self.network = build_bench_network(self.bench, self.record, store, roots=self._ek_roots(),
                                               overrides=self.options.network)
        air: Any
        if self.options.air == "module" and self.bench.modem and self.bench.modem.air_link and (
                self.emulated is None or self.emulated.modem_emulator is None):
            # a bench that `mcim-hil bench up` keeps running: its module's radio, over the air link
            from .emulators.air_link import AirLinkClient
            link = AirLinkClient(self.bench.modem.air_link)
            self._stack.callback(link.close)
            air = ModuleAttach(self.devices.modem, link, self.network.vno)
        elif self.options.air == "module":
            if self.emulated is None or self.emulated.modem_emulator is None:
                raise ValueError(f"{self.bench.path}: the module's own attach needs the emulated modem "
                                 "(a real module cannot reach this network over the air): use air=relayed")
            air = ModuleAttach(self.devices.modem, self.emulated.modem_emulator, self.network.vno)
        else:
            air = RelayedAttach(self.network.vno, self.devices.uicc)
        adm1 = self.bench.uicc.adm1 if self.bench.uicc else None
        if adm1 is None:
            raise ValueError(f"{self.bench.path}: uicc.secrets.adm1 is needed to personalise the card")
        ek = self.tre.endorsement_key()
        platform_id = self.options.platform_id or self._platform_id(ek.certificate)
        self.m2me = M2me(bus=self.network.bus, tre=self.tre, uicc=self.devices.uicc, air=air,
                         platform_id=platform_id, adm1=adm1.resolve_key)
        self.m2me.access_renewal_margin_s = self.bench.m2me.access_renewal_margin_days * 86400.0
        self.record.secret_values(adm1.resolve_key())

    def manufacture(self) -> Manufactured:
        """The M2MES personalises the pristine M2ME; then it boots (components measured)."""
        assert self.m2me is not None and self.network is not None
        components = measured_components(self.devices.modem if self.devices else None)
        self.manufactured = manufacture(self.m2me, self.network.m2mes, components, golden=self.options.golden,
                                        subscriber_key=self.subscriber.public_key)
        self.network.sho.add_contract(self.m2me.pcid, platform_id=self.m2me.platform_id)
        self.network.sho.register_subscription_at_ro(self.m2me.pcid)
        self.m2me.boot(components)
        return self.manufactured

    def note_identities(self) -> None:
        """The units this run is on, into run.json: the IMSI as the procedure starts (the PCID)."""
        from .device_identity import read_identities
        assert self.devices is not None and self.tre is not None
        self.record.meta["devices"] = read_identities(self.devices, self.tre.endorsement_key().certificate)

    def __enter__(self) -> Session:
        try:
            self.start_bench()
            self.build()
            self.manufacture()
            self.note_identities()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if "devices" in self.record.meta:     # what the procedure left on the card
            from .device_identity import read_imsi_after
            self.record.meta["devices"].update(read_imsi_after(self.devices))
        self._stack.close()

    # -- helpers ------------------------------------------------------------------------------

    def _start_sniffing(self) -> None:
        from .lab.gsmtap import start_sniffing, stop_sniffing
        modem = self.emulated.modem_emulator if self.emulated is not None else None
        listener = start_sniffing(self.record, self.options.gsmtap or self.bench.gsmtap, modem,
                                  where="--gsmtap" if self.options.gsmtap else f"{self.bench.path}: gsmtap.listen")
        self._stack.callback(stop_sniffing, self.record, listener, modem)

    def _ek_roots(self) -> list[x509.Certificate]:
        if self.options.ek_roots is not None:
            return list(self.options.ek_roots)
        return ek_roots(self.bench, self.endpoints)

    @staticmethod
    def _platform_id(ek_certificate: bytes | None) -> str:
        if not ek_certificate:
            return "m2me-unknown"
        cert = x509.load_der_x509_certificate(ek_certificate)
        return f"m2me-{cert.serial_number:x}"[:40]
