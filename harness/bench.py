"""Bench files: what a bench is made of and how to reach each device (data, validated).

A bench file names the TPM (a TCTI string, or the swtpm emulator), the UICC (a PC/SC reader
by exact name, ``re:`` regex or index, or the virtual card), the modem (a pyserial URL, or the
emulated modem on a pty), the secrets by reference, and the network topology options.
It is kept apart from the drivers, which talk to the devices (labgrid's resource/driver split).

Loading reports every problem, one line each, naming the file and the key.
"""

from __future__ import annotations

import os
import re
import reprlib
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_BENCH = Path(__file__).resolve().parent.parent / "lab_config" / "emulated.yaml"
BENCH_ENV = "MCIM_HIL_BENCH"

TPM_EMULATORS = ("swtpm",)
UICC_EMULATORS = ("vuicc",)
MODEM_EMULATORS = ("at-pty",)
MODEM_PROFILES = ("generic", "quectel", "u-blox", "simcom")   # emulators/modem_profiles
UICC_PROFILES = ("sysmo-isim-sja2",)
TCTI_NAMES = ("device", "swtpm", "mssim", "tabrmd")

# A bench file is a page of YAML; anything bigger is a wrong path (/dev/zero, a log, an image).
MAX_BENCH_BYTES = 1024 * 1024
MAX_PROBLEMS_SHOWN = 20   # a broken file names its first problems and counts the rest

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlevel = 1
_short.maxlist = _short.maxdict = 4


class BenchFileError(Exception):
    """A bench file is malformed; ``problems`` holds one line per problem.

    The message shows the first MAX_PROBLEMS_SHOWN lines and how many more there are.
    """

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}: {p}" for p in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"{path}: ... and {len(problems) - MAX_PROBLEMS_SHOWN} more problems")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class SecretRef:
    """A secret given by reference: an environment variable or a file, never inline.

    ADM keys follow pySim: 8 ASCII digits, or 16 hex characters given as raw bytes.
    """

    key: str                 # where it is declared, e.g. "uicc.secrets.adm1"
    env: str | None = None
    file: Path | None = None

    def describe(self) -> str:
        return f"env {self.env}" if self.env else f"file {self.file}"

    def resolve_text(self) -> str:
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretUnavailable(f"{self.key}: environment variable {self.env} is not set")
            return value.strip()
        assert self.file is not None
        try:
            return self.file.read_text().strip()
        except OSError as exc:
            raise SecretUnavailable(f"{self.key}: cannot read secret file {self.file}: {exc.strerror}") from exc

    def resolve_key(self) -> bytes:
        """The secret as the bytes a card expects (ADM/PIN: ASCII digits padded to 8 with FF)."""
        text = self.resolve_text()
        if re.fullmatch(r"[0-9A-Fa-f]{16}", text):
            return bytes.fromhex(text)
        if re.fullmatch(r"[0-9]{4,8}", text):
            return text.encode("ascii").ljust(8, b"\xff")
        raise SecretUnavailable(
            f"{self.key} ({self.describe()}): expected 4-8 decimal digits or 16 hex characters")

    def __repr__(self) -> str:  # never the value
        return f"SecretRef({self.key}: {self.describe()})"


class SecretUnavailable(Exception):
    """A referenced secret cannot be read; the message names the reference, never the value."""


@dataclass(frozen=True)
class TpmResource:
    tcti: str | None = None          # e.g. "device:/dev/tpmrm0"; None with an emulator
    emulator: str | None = None      # "swtpm"
    state_dir: Path | None = None    # swtpm: keep the TPM identity between runs
    ek_ca: tuple[Path, ...] = ()     # the EK manufacturer CA certificates the PVA pins (PEM or DER)
    timeout: float = 30.0            # longest one driver operation waits for the TPM (s)
    # the PCRs the PVA quotes and the MCIM is sealed to (issue 9): a simulator's boot PCRs hold
    # nothing, a hardware TPM's 0-7 hold the platform's boot (PC Client PFP SRTM)
    seal_pcrs: tuple[int, ...] = (23,)


SIMULATOR_SEAL_PCRS = (23,)                            # the M2ME's measurement PCR (PC Client: resettable)
HARDWARE_SEAL_PCRS = (0, 1, 2, 3, 4, 5, 6, 7, 23)     # + the platform's boot PCRs
MEASUREMENT_PCR = 23                                   # where the M2ME measures its components (m2me/tre.py)


def _seal_pcrs(s: "_Section", simulator: bool) -> tuple[int, ...]:
    """tpm.seal_pcrs: PCR indices 0..23, no duplicates, the measurement PCR among them."""
    default = SIMULATOR_SEAL_PCRS if simulator else HARDWARE_SEAL_PCRS
    value = s.get("seal_pcrs", (list,), None)
    if value is None:
        return default
    where = s.key("seal_pcrs")
    if not value or not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 23 for p in value):
        s.problems.append(f"{where}: expected a list of PCR indices 0..23, got {_short.repr(value)}")
        return default
    if len(set(value)) != len(value):
        twice = sorted({p for p in value if value.count(p) > 1})
        s.problems.append(f"{where}: PCR {', '.join(map(str, twice))} named twice")
        return default
    if MEASUREMENT_PCR not in value:
        s.problems.append(f"{where}: must include PCR {MEASUREMENT_PCR}, where the M2ME measures its components")
        return default
    return tuple(sorted(value))


@dataclass(frozen=True)
class UiccResource:
    reader: str | int | None = None  # exact name, "re:<regex>", or index; None with an emulator
    emulator: str | None = None      # "vuicc"
    profile: str = "sysmo-isim-sja2"
    shared: bool = True              # PC/SC share mode: shared lets an engineer attach tools too
    via_modem: bool = False          # reach the card through the modem's AT+CSIM instead of a reader
    card_state: Path | None = None   # vuicc: where the virtual card keeps its content
    iccid: str | None = None         # vuicc: the factory ICCID
    adm1: SecretRef | None = None
    pin1: SecretRef | None = None
    timeout: float = 10.0            # longest one PC/SC call waits for the card (s)


@dataclass(frozen=True)
class ModemResource:
    port: str | None = None          # pyserial URL: /dev/ttyUSB2, socket://, rfc2217://...
    emulator: str | None = None      # "at-pty"
    baudrate: int = 115200
    timeout: float = 5.0
    imei: str | None = None          # at-pty: the emulated module's IMEI
    profile: str | None = None       # at-pty: the vendor it behaves as (MODEM_PROFILES)
    air_link: Path | None = None     # a running bench's emulated radio (emulators/air_link.py)


@dataclass(frozen=True)
class TopologyOptions:
    """The seeds' alternative topologies (seed 000 end notes)."""

    ro_colocated_with_vno: bool = False
    pva_dpf_hosted_by_sho: bool = False
    vno_is_sho: bool = False
    sho_requests_pva_via_ro: bool = False    # 004 c3 s8: the SHO requests the RO to request the PVA
    # seed 004's IVF (harness/network/topology.py): where it runs, how long a result stands,
    # what each SHO requires validated; None: the network's default
    ivf_host: str | None = None
    ivf_lifetime_s: float | None = None
    required_components: Any = None

    def network_options(self) -> dict[str, Any]:
        """The keys a bench file set, as NetworkOptions takes them."""
        out: dict[str, Any] = {"ro_colocated_with_vno": self.ro_colocated_with_vno,
                               "pva_dpf_hosted_by_sho": self.pva_dpf_hosted_by_sho, "vno_is_sho": self.vno_is_sho,
                               "sho_requests_pva_via_ro": self.sho_requests_pva_via_ro}
        for key in ("ivf_host", "ivf_lifetime_s", "required_components"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class M2meOptions:
    """What the equipment supplier says this M2ME is, for its reference values."""

    platform_id: str | None = None
    # the module firmware the supplier ships (+CGMI/+CGMM/+CGMR); None: as read at manufacture
    module_firmware: tuple[str, str, str] | None = None
    # issue 7 §5: during a change of SHO, renew the initial-access credential when it expires
    # within this many days
    access_renewal_margin_days: float = 30.0


@dataclass(frozen=True)
class Bench:
    path: Path
    name: str
    tpm: TpmResource | None
    uicc: UiccResource | None
    modem: ModemResource | None
    topology: TopologyOptions = field(default_factory=TopologyOptions)
    m2me: M2meOptions = field(default_factory=M2meOptions)
    gsmtap: str | None = None        # where to listen for sniffed SIM traffic: "HOST:PORT" or "off"
    labgrid: Any = None              # mcim_hil.lab.place.LabgridPlace: the modem is that place's serial port

    @property
    def emulated(self) -> bool:
        return any(r is not None and r.emulator for r in (self.tpm, self.uicc, self.modem))

    def devices(self) -> list[str]:
        return [n for n in ("tpm", "uicc", "modem") if getattr(self, n) is not None]


def bench_path(arg: str | os.PathLike[str] | None = None) -> Path:
    """The bench file to use: the argument, else $MCIM_HIL_BENCH, else lab_config/emulated.yaml."""
    if arg:
        return Path(arg)
    env = os.environ.get(BENCH_ENV)
    return Path(env) if env else DEFAULT_BENCH


def _positive(s: "_Section", name: str, default: float) -> float:
    """A device timeout in seconds: a positive number."""
    value = s.get(name, (int, float), default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        s.problems.append(f"{s.key(name)}: expected a positive number of seconds, got {value!r}")
        return default
    return float(value)


class _Section:
    """Reads one mapping of the bench file, collecting problems instead of stopping at the first."""

    def __init__(self, data: Any, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        self.seen: set[str] = set()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.append(f"{where}: expected a mapping, got {type(data).__name__}")
            data = {}
        self.data: dict[str, Any] = data

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, types: tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.seen.add(name)
        if name not in self.data or self.data[name] is None:
            if required:
                self.problems.append(f"{self.key(name)}: missing")
            return default
        value = self.data[name]
        if bool not in types and isinstance(value, bool):
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            want = " or ".join(t.__name__ for t in types)
            self.problems.append(f"{self.key(name)}: expected {want}, got {type(value).__name__} "
                                 f"({_short.repr(value)})")
            return default
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.get(name, (str,), default)
        if value is not None and value not in choices:
            self.problems.append(f"{self.key(name)}: {_short.repr(value)} is not one of {', '.join(choices)}")
            return default
        return value

    def secret(self, name: str, base: Path) -> SecretRef | None:
        self.seen.add(name)
        if name not in self.data or self.data[name] is None:
            return None
        value = self.data[name]
        where = self.key(name)
        if not isinstance(value, dict):
            # Deliberately do not echo the value: it may be a secret written inline.
            self.problems.append(f"{where}: secrets are given by reference ({{env: VAR}} or {{file: PATH}}), never inline")
            return None
        unknown = set(value) - {"env", "file"}
        if unknown or len(value) != 1:
            self.problems.append(f"{where}: give exactly one of env or file")
            return None
        given = value.get("env", value.get("file"))
        if not isinstance(given, str) or not given or "\0" in given:
            self.problems.append(f"{where}: {'env' if 'env' in value else 'file'} must be a non-empty string")
            return None
        if "env" in value:
            return SecretRef(where, env=given)
        path = Path(given)
        return SecretRef(where, file=path if path.is_absolute() else base / path)

    def finish(self) -> None:
        for extra in sorted(set(self.data) - self.seen, key=str):
            self.problems.append(f"{self.key(_short.repr(extra) if not isinstance(extra, str) else extra[:60])}: "
                                 "unknown key")


def _path(value: str | None, base: Path) -> Path | None:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def _one_of(sec: _Section, real: str, real_value: Any, emulator: Any) -> None:
    if real_value is None and emulator is None:
        sec.problems.append(f"{sec.where}: give either {real} (a real device) or emulator")
    elif real_value is not None and emulator is not None:
        sec.problems.append(f"{sec.where}: give {real} or emulator, not both")


def _read_text(p: Path) -> str:
    """The file as text, refusing what cannot be a bench file before reading it all."""
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to must not hang; a device node is refused
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
                kind = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
                raise BenchFileError(p, [f"not a bench file: {kind}"])
            os.set_blocking(fd, True)
            data = f.read(MAX_BENCH_BYTES + 1)     # never more: an endless pipe must not grow memory
    except OSError as exc:
        raise BenchFileError(p, [f"cannot read bench file: {exc.strerror or exc}"]) from exc
    except ValueError as exc:                     # a NUL in the path
        raise BenchFileError(p, [f"cannot read bench file: {exc}"]) from exc
    if len(data) > MAX_BENCH_BYTES:
        raise BenchFileError(p, [f"larger than {MAX_BENCH_BYTES // 1024} KiB: not a bench file"])
    if b"\0" in data:
        raise BenchFileError(p, ["holds NUL bytes: not a UTF-8 text file (binary, UTF-16 or UTF-32?)"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BenchFileError(p, [f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"]) from None


def _parse_yaml(p: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BenchFileError(p, [f"not valid YAML{at}: {problem}"]) from None
    except RecursionError:
        raise BenchFileError(p, ["not a bench file: YAML nested too deeply"]) from None
    except (ValueError, OverflowError, TypeError) as exc:   # e.g. a timestamp with month 13
        raise BenchFileError(p, [f"not valid YAML: {_short.repr(str(exc))}"]) from None


def load_bench(path: str | os.PathLike[str] | None = None, *, probe: bool = True) -> Bench:
    """Load and validate a bench file. With ``probe``, real devices named in it must exist
    (a serial device node, a TPM device node, a PC/SC reader)."""
    p = bench_path(path)
    raw = _parse_yaml(p, _read_text(p))

    problems: list[str] = []
    base = p.resolve().parent
    top = _Section(raw, "", problems)
    name = top.get("name", (str,), p.stem)

    tpm = uicc = modem = None
    on_place = isinstance(top.data.get("labgrid"), dict)
    if "tpm" in top.data:
        s = _Section(top.get("tpm", (dict,), {}), "tpm", problems)
        tcti = s.get("tcti", (str,))
        emulator = s.choice("emulator", TPM_EMULATORS)
        _one_of(s, "tcti", tcti, emulator)
        if tcti is not None and tcti.split(":", 1)[0] not in TCTI_NAMES:
            problems.append(f"tpm.tcti: {tcti!r}: TCTI name must be one of {', '.join(TCTI_NAMES)}")
        ek_ca = s.get("ek_ca", (list,), [])
        if not all(isinstance(x, str) for x in ek_ca):
            problems.append("tpm.ek_ca: expected a list of certificate file paths")
            ek_ca = []
        simulator = emulator is not None or (tcti or "").split(":", 1)[0] in ("swtpm", "mssim")
        tpm = TpmResource(tcti=tcti, emulator=emulator, state_dir=_path(s.get("state_dir", (str,)), base),
                          ek_ca=tuple(p for p in (_path(x, base) for x in ek_ca) if p is not None),
                          timeout=_positive(s, "timeout", 30.0), seal_pcrs=_seal_pcrs(s, simulator))
        s.finish()
    if "uicc" in top.data:
        s = _Section(top.get("uicc", (dict,), {}), "uicc", problems)
        reader = s.get("reader", (str, int))
        emulator = s.choice("emulator", UICC_EMULATORS)
        via_modem = s.get("via_modem", (bool,), False)
        if not via_modem:
            _one_of(s, "reader", reader, emulator)
        if isinstance(reader, str) and reader.startswith("re:"):
            try:
                re.compile(reader[3:])
            except (re.error, OverflowError, RecursionError) as exc:
                problems.append(f"uicc.reader: bad regular expression: {exc}")
        sec = _Section(s.get("secrets", (dict,), {}), "uicc.secrets", problems)
        adm1, pin1 = sec.secret("adm1", base), sec.secret("pin1", base)
        sec.finish()
        uicc = UiccResource(
            reader=reader, emulator=emulator,
            profile=s.choice("profile", UICC_PROFILES, "sysmo-isim-sja2") or "sysmo-isim-sja2",
            shared=s.get("shared", (bool,), True), via_modem=via_modem,
            card_state=_path(s.get("card_state", (str,)), base),
            iccid=s.get("iccid", (str,)), adm1=adm1, pin1=pin1,
            timeout=_positive(s, "timeout", 10.0))
        if uicc.iccid is not None and not re.fullmatch(r"[0-9]{18,20}", uicc.iccid):
            problems.append("uicc.iccid: expected 18 to 20 digits")
        s.finish()
    if "modem" in top.data:
        s = _Section(top.get("modem", (dict,), {}), "modem", problems)
        port = s.get("port", (str,))
        emulator = s.choice("emulator", MODEM_EMULATORS)
        if on_place and (port is not None or emulator is not None):
            problems.append("modem: the labgrid place's serial port is the modem: give no port or emulator")
        elif not on_place:
            _one_of(s, "port", port, emulator)
        timeout = s.get("timeout", (int, float), 5.0)
        if not 0 < timeout <= 3600:
            problems.append(f"modem.timeout: {_short.repr(timeout)} is not between 0 and 3600 seconds")
            timeout = 5.0
        modem = ModemResource(port=port, emulator=emulator,
                              baudrate=s.get("baudrate", (int,), 115200),
                              timeout=float(timeout), imei=s.get("imei", (str,)),
                              profile=s.choice("profile", MODEM_PROFILES),
                              air_link=_path(s.get("air_link", (str,)), base))
        s.finish()
    s = _Section(top.get("topology", (dict,), {}), "topology", problems)
    topology = TopologyOptions(
        ro_colocated_with_vno=s.get("ro_colocated_with_vno", (bool,), False),
        pva_dpf_hosted_by_sho=s.get("pva_dpf_hosted_by_sho", (bool,), False),
        vno_is_sho=s.get("vno_is_sho", (bool,), False),
        sho_requests_pva_via_ro=s.get("sho_requests_pva_via_ro", (bool,), False),
        ivf_host=s.choice("ivf_host", ("pva", "old_sho", "separate")),
        ivf_lifetime_s=s.get("ivf_lifetime_s", (int, float)),
        required_components=s.get("required_components", (list, dict)))
    if topology.ivf_lifetime_s is not None and topology.ivf_lifetime_s < 0:
        problems.append(f"topology.ivf_lifetime_s: must be 0 or more seconds, got {topology.ivf_lifetime_s!r}")
    if topology.required_components is not None:
        from .network.topology import TopologyError, _required_by_role
        try:
            _required_by_role(topology.required_components)
        except TopologyError as exc:
            problems.append(f"topology.{exc}")
    s.finish()
    s = _Section(top.get("m2me", (dict,), {}), "m2me", problems)
    firmware = None
    fw = _Section(s.get("module_firmware", (dict,), None), "m2me.module_firmware", problems)
    if fw.data:
        parts = [fw.get(k, (str,), required=True) for k in ("manufacturer", "model", "revision")]
        firmware = tuple(parts) if all(parts) else None
    fw.finish()
    margin = s.get("access_renewal_margin_days", (int, float), 30.0)
    if not margin >= 0:
        problems.append(f"m2me.access_renewal_margin_days: must be 0 or more days, got {margin!r}")
        margin = 30.0
    m2me = M2meOptions(platform_id=s.get("platform_id", (str,)), module_firmware=firmware,
                       access_renewal_margin_days=float(margin))
    s.finish()
    labgrid = None
    if "labgrid" in top.data:
        s = _Section(top.get("labgrid", (dict,), {}), "labgrid", problems)
        coordinator = s.get("coordinator", (str,), required=True)
        place = s.get("place", (str,), required=True)
        serial = s.get("serial", (str,))
        if coordinator is not None and not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\s/]+)(:\d{1,5})?", coordinator):
            problems.append(f"labgrid.coordinator: {coordinator!r} is not HOST:PORT")
        if coordinator and place:
            from .lab.place import LabgridPlace, coordinator_address
            labgrid = LabgridPlace(coordinator_address(coordinator), place, serial)
        s.finish()
        if modem is None:
            modem = ModemResource()
    s = _Section(top.get("gsmtap", (dict,), {}), "gsmtap", problems)
    gsmtap = s.get("listen", (str,))
    if gsmtap is not None and gsmtap != "off" and not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}", gsmtap):
        problems.append(f"gsmtap.listen: {gsmtap!r} is not HOST:PORT or off")
    s.finish()
    top.finish()

    if uicc is not None and uicc.via_modem and modem is None:
        problems.append("uicc.via_modem: the bench has no modem to reach the card through")
    if tpm is None and uicc is None and modem is None:
        problems.append("the bench names no device (tpm, uicc, modem)")
    if problems:
        raise BenchFileError(p, problems)

    bench = Bench(path=p, name=name, tpm=tpm, uicc=uicc, modem=modem, topology=topology, m2me=m2me,
                  gsmtap=gsmtap, labgrid=labgrid)
    if probe:
        absent = probe_devices(bench)
        if absent:
            raise BenchFileError(p, absent)
    return bench


def probe_devices(bench: Bench) -> list[str]:
    """One line per real device the bench names that is not there."""
    absent: list[str] = []
    if bench.tpm:
        absent += [f"tpm.ek_ca: {p} does not exist" for p in bench.tpm.ek_ca if not p.exists()]
    if bench.tpm and bench.tpm.tcti and bench.tpm.tcti.startswith("device:"):
        node = bench.tpm.tcti.split(":", 1)[1] or "/dev/tpmrm0"
        if not os.path.exists(node):
            absent.append(f"tpm.tcti: {node} does not exist")
    if bench.modem and bench.modem.port and "://" not in bench.modem.port:
        if not os.path.exists(bench.modem.port):
            absent.append(f"modem.port: {bench.modem.port} does not exist")
    if bench.uicc and bench.uicc.reader is not None and not bench.uicc.via_modem:
        names = _pcsc_readers()
        if names is None:
            absent.append("uicc.reader: cannot list PC/SC readers: is pcscd running? (start it with `sudo pcscd`)")
        elif not _reader_matches(bench.uicc.reader, names):
            present = ", ".join(repr(n) for n in names) or "none"
            absent.append(f"uicc.reader: no reader matches {bench.uicc.reader!r}; readers present: {present}")
    return absent


def _pcsc_readers() -> list[str] | None:
    try:
        from smartcard.System import readers
        return [str(r) for r in readers()]
    except Exception:  # pcscd absent or not answering
        return None


def _reader_matches(spec: str | int, names: list[str]) -> bool:
    if isinstance(spec, int):
        return 0 <= spec < len(names)
    if spec.startswith("re:"):
        return any(re.search(spec[3:], n) for n in names)
    return spec in names
