"""What the fuzzers feed, and the rule they check (issue 9 section 3).

Each target takes bytes, hands them to one parser of the project in-process (no pcscd, no
pty, no swtpm: parsers only) and sorts the outcome: accepted, or rejected with the project's
own error type and a message; anything else (another exception, a ValueError escaping a
driver, a logged traceback in an emulator) is a crash. tests/test_fuzz.py drives these with
hypothesis, benchmarks/fuzz.py with a seeded mutational loop of >= 10^6 inputs.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import shutil
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from mcim_hil.bench import DEFAULT_BENCH, BenchFileError, load_bench
from mcim_hil.drivers import uicc_files
from mcim_hil.drivers.errors import ModemError
from mcim_hil.drivers.modem import Modem, Registration
from mcim_hil.network import attestation, m2msimmobj
from mcim_hil.network.attestation import AttestationError, TpmStructureError
from mcim_hil.network.m2msimmobj import M2MSIMMobjError
from mcim_hil.network.mcim import Mcim, McimError, SealedObject


class Crash(AssertionError):
    """An input a parser did not handle by the project's rule; the message says how."""


@dataclass
class Target:
    name: str
    run: Callable[[bytes], None]          # raises only the ``rejects`` types, or Crash
    rejects: tuple[type[BaseException], ...]
    seeds: list[bytes] = field(default_factory=list)
    max_size: int = 512

    def check(self, data: bytes) -> str:
        """'accepted' or 'rejected'; raises Crash for anything else."""
        try:
            self.run(data)
        except self.rejects as exc:
            if not str(exc).strip():
                raise Crash(f"{self.name}: {type(exc).__name__} without a message for {data[:64]!r}") from exc
            return "rejected"
        except Crash:
            raise
        except Exception as exc:
            raise Crash(f"{self.name}: {type(exc).__name__}: {exc} for {data[:64]!r}") from exc
        return "accepted"


def chunks(data: bytes) -> list[bytes]:
    """A byte string as a sequence of length-prefixed pieces (a run of APDUs, of AT lines)."""
    out, i = [], 0
    while i < len(data):
        n = data[i]
        out.append(data[i + 1:i + 1 + n])
        i += 1 + n
    return out


def join_chunks(pieces: list[bytes]) -> bytes:
    return b"".join(bytes([len(p)]) + p for p in pieces)


# -- the virtual card's APDU handling (harness/emulators/vuicc.py) ------------------------------

def _new_card():
    from mcim_hil.emulators.vuicc import SJA2_ATR, UiccCard
    from mcim_hil.emulators.vuicc_fs import factory_state
    state = factory_state(iccid="8988211000000000017", imsi="001010123456789", k=bytes(range(16)),
                          opc=bytes(range(16, 32)), adm1=b"77111606", pin1=b"1234\xff\xff\xff\xff", mnc_len=2,
                          atr=SJA2_ATR)
    return UiccCard(state, save=lambda _state: None)


def run_card(data: bytes) -> None:
    card = _new_card()
    for apdu in chunks(data):
        response = card.process(apdu)
        if len(response) < 2:
            raise Crash(f"vuicc: response {response.hex()} has no status word for {apdu.hex()}")


CARD_SEEDS = [join_chunks([bytes.fromhex(h) for h in seq]) for seq in (
    ["00A40004023F00", "00A40004022FE2", "00B000000A"],
    ["00A40004023F00", "00A40004022F00", "00B2010426"],
    ["00A4040407A0000000871002", "00A40004026F07", "00B0000009", "00D6000009080910101032547698"],
    ["00200000083737313131363036", "00A40004027FFF", "008800812210" + "00" * 16 + "10" + "00" * 16],
    ["80F2000000", "00C0000010", "002C000110" + "31" * 16, "0070000001", "00A40004027F20"],
)]


# -- the modem emulator's command parser (harness/emulators/modem.py) --------------------------

class _EmulatorErrors(logging.Handler):
    """Collects what the emulator logs as a failure: a logged traceback is a crash."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_emulator_errors = _EmulatorErrors()
_EMULATOR_LOG = logging.getLogger("mcim_hil.emulators.modem")


def new_emulated_modem():
    """The emulated modem, its pty replaced by a list of written bytes, its SIM by the in-process card."""
    from mcim_hil.emulators.modem import EmulatedModem
    emu = EmulatedModem("fuzz: in-process card")
    card = _new_card()
    written: list[bytes] = []
    emu._sim.transmit_raw = card.process       # the module's SIM, without pcscd
    emu._write = written.append                # the pty
    return emu, written


def run_modem_emulator(data: bytes) -> None:
    emu, written = new_emulated_modem()
    del _emulator_errors.records[:]
    _EMULATOR_LOG.addHandler(_emulator_errors)
    try:
        for line in chunks(data):
            emu._execute(line)
    finally:
        _EMULATOR_LOG.removeHandler(_emulator_errors)
    if _emulator_errors.records:
        record = _emulator_errors.records[0]
        raise Crash(f"modem emulator logged {record.getMessage()!r}"
                    + (f" ({record.exc_info[0].__name__}: {record.exc_info[1]})" if record.exc_info else ""))


MODEM_EMULATOR_SEEDS = [join_chunks([s.encode("latin-1") for s in seq]) for seq in (
    ["AT", "ATE0", "AT+CMEE=2", "AT+CGMI", "AT+CGSN=1", "ATI"],
    ["AT+CMEE=1", "AT+CFUN=4", "AT+CFUN?", "AT+CEREG=2", "AT+CEREG?", "AT+CGATT?"],
    ['AT+CSIM=14,"00A40004023F00"', 'AT+CSIM=10,"00B000000A"', "AT+CIMI"],
    ['AT+CRSM=176,28423,0,0,9', 'AT+CRSM=176,12258,0,0,10,,"3F00"', "AT+CRSM=242"],
    ['AT+CGDCONT=1,"IP","internet"', "AT+CGDCONT?", "AT+CGPADDR=1", "ATS3?", "ATS4=10", "AT&F"],
)]


# -- the modem driver's response and URC parsing (drivers/modem.py) ----------------------------

class AnsweringPort:
    """An in-process serial port: each command written is answered with the canned bytes, then
    a closing OK so that an answer without a final result code costs no timeout."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self._buffer = bytearray()
        self._ready = threading.Condition()

    @property
    def in_waiting(self) -> int:
        return len(self._buffer)

    def write(self, data: bytes) -> int:
        with self._ready:
            self._buffer += self.answer + b"\r\nOK\r\n"
            self._ready.notify_all()
        return len(data)

    def read(self, size: int = 1) -> bytes:
        with self._ready:
            if not self._buffer:
                self._ready.wait(0.1)
            out = bytes(self._buffer[:size])
            del self._buffer[:size]
            return out

    def cancel_read(self) -> None:
        with self._ready:
            self._ready.notify_all()

    def close(self) -> None:
        pass


_DRIVER_CALLS: list[Callable[[Modem], object]] = [
    lambda m: m.at(),
    lambda m: m.identity(),
    lambda m: m.imsi(),
    lambda m: m.csim(bytes.fromhex("00B0000001")),
    lambda m: m.crsm(176, 0x6F07, 0, 0, 9),
    lambda m: m.attached(),
    lambda m: m.pdp_address(1),
    lambda m: m.registration(),
    lambda m: m.wait_registered(0.0),
    lambda m: m.command("AT+COPS?"),
]


def run_modem_driver(data: bytes) -> None:
    """First byte: which driver call; the rest: what the module answers to each command."""
    if not data:
        return
    call, answer = _DRIVER_CALLS[data[0] % len(_DRIVER_CALLS)], data[1:]
    modem = Modem(AnsweringPort(answer), "fuzz://modem", timeout=2.0)   # type: ignore[arg-type]
    modem.retry_backoff_s = 0.0      # the retries still run (noise, RDY, SIM busy), without their pauses
    try:
        call(modem)
    finally:
        modem.close()
    for line in answer.decode("utf-8", "replace").splitlines():     # the URC parser on every line
        if line.strip().upper().startswith("+CEREG:"):
            Registration.from_urc(line.strip())


MODEM_DRIVER_SEEDS = [bytes([i]) + answer for i, answer in (
    (0, b"\r\nOK"), (1, b"\r\nQuectel"), (2, b"\r\n001010123456789"),
    (3, b'\r\n+CSIM: 4,"9000"'), (4, b'\r\n+CRSM: 144,0,"080910101032547698"'),
    (5, b"\r\n+CGATT: 1"), (6, b'\r\n+CGPADDR: 1,"10.45.0.7"'),
    (7, b'\r\n+CEREG: 2,5,"00A1","01A2D001",7'), (8, b'\r\n+CEREG: 0,3,,,,0,20'),
    (0, b"\r\n+CME ERROR: 50"), (9, b"\r\n+CMS ERROR: 304"), (7, b'\r\n+CEREG: 5,"00A1","01A2D001",7\r\n+CEREG: 2,1'),
    (1, b"AT+CGMI\r\r\n+CGMI: Quectel\r\n\r\nRING"),
)]


# -- the emulated modem's fault control lines (harness/emulators/modem_faults.py) -------------

def run_modem_fault_control(data: bytes) -> None:
    """A control line, then the same bytes as a command line the armed plan is asked about."""
    from mcim_hil.emulators.modem_faults import ModemFaultPlan
    plan = ModemFaultPlan()
    for seed in MODEM_FAULT_SEEDS[:2]:
        plan.apply(seed)
    plan.apply(data)
    plan.on_command(data.decode("latin-1"))


MODEM_FAULT_SEEDS = [b'{"op": "silent", "command": "+CSIM", "ins": 214, "skip": 1, "times": 2}',
                     b'{"op": "cme", "command": "+CGMI", "code": 14}', b'{"op": "clear"}',
                     b'{"op": "reset", "command": null}', b'{"op": "garbage", "command": "E0", "times": 1}',
                     b'+CSIM=12,"00D6000001FF"']


# -- the UICC driver's decoders (drivers/uicc_files.py) ----------------------------------------

_UICC_DECODERS = [uicc_files.decode_fcp, uicc_files.decode_iccid, uicc_files.decode_imsi, uicc_files.decode_ad,
                  uicc_files.decode_dir_record, uicc_files.decode_auth_key, uicc_files.decode_milenage_cfg,
                  uicc_files.decode_usim_sqn, lambda d: list(uicc_files.iter_tlv(d))]


def run_uicc_decoders(data: bytes) -> None:
    if data:
        _UICC_DECODERS[data[0] % len(_UICC_DECODERS)](data[1:])


def _uicc_seeds() -> list[bytes]:
    tlv = uicc_files.encode_tlv
    ef = tlv(0x62, tlv(0x82, b"\x41\x21") + tlv(0x83, b"\x2f\xe2") + tlv(0x80, b"\x00\x0a") + tlv(0x88, b"\x10")
             + tlv(0x8A, b"\x05") + tlv(0xC6, tlv(0x90, b"\x00") + tlv(0x83, b"\x01")))
    df = tlv(0x62, tlv(0x82, b"\x78\x21") + tlv(0x83, b"\x3f\x00") + tlv(0x84, bytes.fromhex("a0000000871002"))
             + tlv(0x81, b"\x01\x00") + tlv(0x8A, b"\x05"))
    records = tlv(0x62, tlv(0x82, b"\x42\x21\x00\x26\x05") + tlv(0x83, b"\x6f\x06") + tlv(0x80, b"\x00\x98"))
    return [bytes([i]) + data for i, data in (
        (0, ef), (0, df), (0, records), (1, bytes.fromhex("98881201000000000071")),
        (2, bytes.fromhex("080910101032547698")), (3, bytes.fromhex("00000002")),
        (4, bytes.fromhex("61184F10A0000000871002FFFFFFFF890619000050045553494DFFFF")),
        (5, b"\x14" + bytes(32)), (6, bytes([64, 0, 32, 64, 96]) + bytes(80)), (7, bytes(14 + 12)),
        (8, bytes.fromhex("8102AABB9F7001FF")))]


# -- the bench-file loader (harness/bench.py) --------------------------------------------------

_bench_dir: list[Path] = []


def run_bench_loader(data: bytes) -> None:
    if not _bench_dir:
        _bench_dir.append(Path(tempfile.mkdtemp(prefix="mcim-hil-fuzz-bench-")))
        atexit.register(shutil.rmtree, _bench_dir[0], True)
    path = _bench_dir[0] / "bench.yaml"
    path.write_bytes(data)
    load_bench(path, probe=False)


BENCH_SEEDS = [DEFAULT_BENCH.read_bytes(), (DEFAULT_BENCH.parent / "sysmo-sja2-quectel.yaml").read_bytes(),
               b"name: x\ntpm: {tcti: 'swtpm:host=127.0.0.1,port=2321', ek_ca: [a.pem]}\n"
               b"uicc: {reader: 're:Virtual.*', secrets: {adm1: {env: ADM}}}\nmodem: {port: /dev/ttyUSB2, timeout: 2}\n",
               b"modem: {emulator: at-pty, baudrate: 9600}\nm2me: {module_firmware: {manufacturer: a, model: b, "
               b"revision: c}, platform_id: p}\ntopology: {vno_is_sho: true}\n",
               b"a: &a [x, [y, z]]\nb: &b [*a, *a, *a]\ntpm: {tcti: *b, state_dir: *a}\n"
               b"uicc: {emulator: vuicc, iccid: *a, secrets: {adm1: {env: *b}, pin1: {file: *a}}}\n"]


# -- the M2MSIMMobj (harness/network/m2msimmobj.py) --------------------------------------------

_SHO_KEY = ec.derive_private_key(0x5EED, ec.SECP256R1())
_AT = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
_SEALED = SealedObject(public=bytes(range(90)), duplicate=bytes(120), seed=bytes(70), encryption_key=b"",
                       storage_key_name=b"\x00\x0b" + bytes(32), pcr_selection=(23,), policy_digest=bytes(32))


def run_m2msimmobj(data: bytes) -> None:
    m2msimmobj.parse(data, _SHO_KEY.public_key(), at=_AT)


def _m2msimmobj_seed() -> bytes:
    return m2msimmobj.build(_SEALED, mcim_envelope=bytes(64), metadata={"IMSI": "001010123456789"},
                            signer=_SHO_KEY, not_after=_AT + dt.timedelta(days=1))


# -- the network's decoders of what travels in messages (MCIM, TPM structures, evidence) -------

def run_network_decoders(data: bytes) -> None:
    if not data:
        return
    kind, body = data[0] % 4, data[1:]
    if kind == 0:
        Mcim.from_bytes(body)
    elif kind == 1:
        attestation.parse_public(body)
    elif kind == 2:
        attestation.parse_attest(body)
    else:
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return                                      # not JSON: the bus never carries it
        if isinstance(doc, dict):
            attestation.Evidence.from_dict(doc)


def _network_seeds() -> list[bytes]:
    mcim = Mcim(imsi="001010123456789", k=bytes(16), opc=bytes(16), home_plmn="001-01", not_after=_AT)
    ecc_public = (struct.pack(">HHI", 0x0023, 0x000B, 0x00030072) + b"\x00\x00" + struct.pack(">H", 0x0010)
                  + struct.pack(">HH", 0x0018, 0x000B) + struct.pack(">HH", 0x0003, 0x0010)
                  + b"\x00\x20" + bytes(32) + b"\x00\x20" + bytes(32))
    quote = (struct.pack(">IH", 0xFF544347, 0x8018) + b"\x00\x02ab" + b"\x00\x04nonc" + bytes(25)
             + struct.pack(">IHB", 1, 0x000B, 3) + b"\x00\x00\x80" + b"\x00\x20" + bytes(32))
    evidence = {"platform_id": "m2me-1", "pcr_values": {"23": "00" * 32},
                "measurements": [{"component": "boot", "pcr": 23, "digest": "00" * 32}]}
    evidence.update({name: "00" for name in attestation._EVIDENCE_BYTES})
    return [b"\x00" + mcim.to_bytes(), b"\x01" + struct.pack(">H", len(ecc_public)) + ecc_public,
            b"\x02" + quote, b"\x03" + json.dumps(evidence).encode()]


# -- all of them ---------------------------------------------------------------------------------

def _modem_fault_error() -> type[Exception]:
    from mcim_hil.emulators.modem_faults import ModemFaultError
    return ModemFaultError


def targets() -> list[Target]:
    return [
        Target("vuicc-apdu", run_card, (), CARD_SEEDS, max_size=600),
        Target("modem-emulator", run_modem_emulator, (), MODEM_EMULATOR_SEEDS, max_size=300),
        Target("modem-driver", run_modem_driver, (ModemError,), MODEM_DRIVER_SEEDS, max_size=300),
        Target("modem-fault-control", run_modem_fault_control, (_modem_fault_error(),), MODEM_FAULT_SEEDS,
               max_size=200),
        Target("uicc-decoders", run_uicc_decoders, (uicc_files.CodecError,), _uicc_seeds(), max_size=200),
        Target("bench-loader", run_bench_loader, (BenchFileError,), BENCH_SEEDS, max_size=2048),
        Target("m2msimmobj", run_m2msimmobj, (M2MSIMMobjError,), [_m2msimmobj_seed()], max_size=4096),
        Target("network-decoders", run_network_decoders, (McimError, TpmStructureError, AttestationError),
               _network_seeds(), max_size=600),
    ]


