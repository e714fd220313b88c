"""The sysmoISIM-SJA2 programmable profile: write a subscription (IMSI, K, OPc, Milenage
constants, MNC length) through ADM1, read it back, snapshot and restore it.

Programming is transactional: every file is read before anything is written, and when a
write fails the files already written get their old contents back before the error is
raised, so a card is never left half-provisioned. EF.ICCID is factory data and is never
written. Keys leave the card only through ``read_keys()``.
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Final

from mcim_hil.drivers.errors import CardError, SafetyRefused
from mcim_hil.drivers.uicc import FileNotFound, SecurityStatusNotSatisfied, Uicc
from mcim_hil.drivers.uicc_files import (
    EF_AD, EF_IMSI, EF_IMSI_GSM, EF_MILENAGE_CFG, EF_SIM_AUTH_KEY, EF_USIM_AUTH_KEY, EF_USIM_SQN,
    MILENAGE_C_DEFAULT, MILENAGE_OPC, MILENAGE_R_DEFAULT, AuthConfig, AuthKey, EfDecl, MilenageConfig,
    decode_ad, decode_usim_sqn, encode_ad, encode_auth_key, encode_imsi, encode_milenage_cfg,
    encode_usim_sqn,
)

# facts/sysmo.md: the ATRs pySim knows for sysmoISIM-SJA2
SJA2_ATRS: Final = (
    bytes.fromhex("3b9f96801f878031e073fe211b674a4c753034054ba9"),
    bytes.fromhex("3b9f96801f878031e073fe211b674a4c7531330251b2"),
    bytes.fromhex("3b9f96801f878031e073fe211b674a4c5275310451d5"),
)

# Every file program() may write; snapshot() keeps them all. EF.ICCID is not among them.
PROFILE_FILES: Final[tuple[EfDecl[Any], ...]] = (
    EF_USIM_AUTH_KEY, EF_SIM_AUTH_KEY, EF_MILENAGE_CFG, EF_USIM_SQN, EF_IMSI, EF_IMSI_GSM, EF_AD,
)


class ProvisioningFailed(CardError):
    """program() or restore() failed. ``restored`` lists the files given back their old
    contents; ``not_restored`` the files that could not be (the card IS half-provisioned
    when it is not empty)."""

    def __init__(self, device: str, command: str, message: str, sw: int | None = None,
                 restored: tuple[str, ...] = (), not_restored: tuple[str, ...] = ()) -> None:
        self.restored = restored
        self.not_restored = not_restored
        super().__init__(device, command, message, sw)


@dataclass(frozen=True)
class Sja2Profile:
    """What the card is programmed with, keys left out. A field is None when the card
    would not show it (no such file, or ADM1 not verified for the key files' config byte)."""

    iccid: str
    imsi: str
    imsi_gsm: str | None
    mnc_len: int | None
    usim_auth: AuthConfig | None
    sim_auth: AuthConfig | None
    milenage: MilenageConfig | None


@dataclass(frozen=True)
class Sja2Keys:
    usim: AuthKey   # ADF.USIM/EF.USIM_AUTH_KEY
    sim: AuthKey | None  # DF.SYSTEM/EF.SIM_AUTH_KEY (2G)


@dataclass(frozen=True)
class Sja2Snapshot:
    """Raw contents of the profile files, for restore(). Holds keys: repr names files only, and
    equality goes by a digest, so a failed comparison (pytest's diff) never shows key bytes."""

    contents: tuple[tuple[EfDecl[Any], bytes], ...] = field(repr=False, compare=False)
    digest: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        h = hashlib.sha256()
        for ef, data in self.contents:
            h.update(ef.where.encode() + b"\0" + len(data).to_bytes(2, "big") + data)
        object.__setattr__(self, "digest", h.hexdigest())

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(ef.where for ef, _ in self.contents)

    def __repr__(self) -> str:
        return f"Sja2Snapshot(files={self.files})"

    def content(self, ef: EfDecl[Any]) -> bytes:
        for decl, data in self.contents:
            if decl == ef:
                return data
        raise KeyError(ef.where)


Change = Callable[[bytes], bytes]  # old file content -> new file content


class Sja2:
    """A sysmoISIM-SJA2 (or a card with its file layout) behind a Uicc driver."""

    def __init__(self, uicc: Uicc) -> None:
        self.uicc = uicc

    def __repr__(self) -> str:
        return f"<Sja2 {self.uicc.name!r}>"

    @staticmethod
    def matches(atr: bytes) -> bool:
        """True for the three ATRs of sysmoISIM-SJA2 (facts/sysmo.md)."""
        return bytes(atr) in SJA2_ATRS

    # ----------------------------------------------------------------------- program

    def program(self, imsi: str, k: bytes, opc: bytes, *, adm1: bytes,
                milenage_r: tuple[int, ...] | None = None, milenage_c: tuple[bytes, ...] | None = None,
                mnc_len: int | None = None, reset_sqn: bool = False) -> None:
        """Write a Milenage/OPc subscription (cfg 0x14) into ADF.USIM and DF.SYSTEM, the IMSI
        into ADF.USIM and DF.GSM, optionally the Milenage constants, the MNC length in EF.AD,
        and the SQN freshness array reset to 0 (``reset_sqn``, for a new subscription).

        ADM1 is verified through the guard (never the last try). All or nothing: on a failed
        write the old contents are put back, then ProvisioningFailed is raised.
        """
        changes = self._plan(imsi, k, opc, milenage_r, milenage_c, mnc_len, reset_sqn)  # inputs checked first
        self.uicc.verify_adm(adm1)
        old = {ef: self.uicc.read_ef_raw(ef) for ef, _ in changes}
        writes = [(ef, change(old[ef])) for ef, change in changes]
        self._write_all(writes, old, "program", adm1)

    def _plan(self, imsi: str, k: bytes, opc: bytes, milenage_r: tuple[int, ...] | None,
              milenage_c: tuple[bytes, ...] | None, mnc_len: int | None,
              reset_sqn: bool) -> list[tuple[EfDecl[Any], Change]]:
        imsi_file = encode_imsi(imsi)
        key_file = encode_auth_key(AuthKey(MILENAGE_OPC, bytes(k), bytes(opc)))  # checks 16 + 16 bytes
        changes: list[tuple[EfDecl[Any], Change]] = [
            (EF_USIM_AUTH_KEY, _replace_head(key_file)),
            (EF_SIM_AUTH_KEY, _replace_head(key_file)),
        ]
        if milenage_r is not None or milenage_c is not None:
            cfg = MilenageConfig(tuple(milenage_r or MILENAGE_R_DEFAULT), tuple(milenage_c or MILENAGE_C_DEFAULT))
            changes.append((EF_MILENAGE_CFG, _replace_head(encode_milenage_cfg(cfg))))
        if reset_sqn:
            changes.append((EF_USIM_SQN, lambda old: encode_usim_sqn(decode_usim_sqn(old).reset())))
        changes += [(EF_IMSI, _replace_head(imsi_file)), (EF_IMSI_GSM, _replace_head(imsi_file))]
        if mnc_len is not None:
            if mnc_len not in (2, 3):
                raise ValueError(f"MNC length must be 2 or 3, got {mnc_len}")
            changes.append((EF_AD, lambda old: _with_mnc_len(old, mnc_len)))
        return changes

    def _write_all(self, writes: list[tuple[EfDecl[Any], bytes]], old: dict[EfDecl[Any], bytes],
                   what: str, adm1: bytes | None) -> None:
        factory = [ef.where for ef, _ in writes if ef.factory]
        if factory:
            raise SafetyRefused(self.uicc.name, f"SJA2 {what}",
                                f"factory data is never rewritten: {', '.join(factory)}")
        written: list[EfDecl[Any]] = []
        for ef, data in writes:
            if data == old.get(ef):
                continue  # unchanged: spare the card a write
            try:
                self.uicc.select_ef(ef)
                written.append(ef)  # from here a failed write may have changed part of the file
                self.uicc.update_binary(data, secret=ef.secret)
            except BaseException as exc:
                restored, not_restored = self._roll_back(written, old, adm1)
                if not isinstance(exc, Exception):
                    raise  # Ctrl-C: rolled back, now let it stop the run
                state = ("the card is back as it was" if not not_restored
                         else f"HALF-PROVISIONED, not restored: {', '.join(not_restored)}")
                detail = exc.message if isinstance(exc, CardError) else type(exc).__name__
                raise ProvisioningFailed(
                    self.uicc.name, f"SJA2 {what}", f"writing {ef.where} failed ({detail}); {state}",
                    getattr(exc, "sw", None), restored, not_restored) from exc

    def _roll_back(self, written: list[EfDecl[Any]], old: dict[EfDecl[Any], bytes], adm1: bytes | None
                   ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        restored: list[str] = []
        not_restored: list[str] = []
        if adm1 is not None and written:
            try:
                self.uicc.verify_adm(adm1)  # the failure may have reset the card; no-op when still verified
            except Exception:
                pass  # the writes below then fail and are reported as not restored
        for ef in reversed(written):
            try:
                self.uicc.update_ef_raw(ef, old[ef])
                restored.append(ef.where)
            except Exception:
                not_restored.append(ef.where)
        return tuple(restored), tuple(not_restored)

    # ----------------------------------------------------------------------- read back

    def read_back(self) -> Sja2Profile:
        """What is programmed, without keys: the key files give only their config byte
        (readable once ADM1 is verified; None otherwise)."""
        u = self.uicc
        return Sja2Profile(
            iccid=u.read_iccid(),
            imsi=u.read_imsi(),
            imsi_gsm=self._optional(lambda: u.read_ef(EF_IMSI_GSM)),
            mnc_len=u.read_ad().mnc_len,
            usim_auth=self._optional(lambda: self._auth_config(EF_USIM_AUTH_KEY)),
            sim_auth=self._optional(lambda: self._auth_config(EF_SIM_AUTH_KEY)),
            milenage=self._optional(lambda: u.read_ef(EF_MILENAGE_CFG)),
        )

    def _auth_config(self, ef: EfDecl[AuthKey]) -> AuthConfig:
        self.uicc.select_ef(ef)
        return AuthConfig.from_byte(self.uicc.read_binary(1)[0])  # the config byte only, no key bytes

    @staticmethod
    def _optional(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except (FileNotFound, SecurityStatusNotSatisfied):
            return None

    def read_keys(self, *, adm1: bytes | None = None) -> Sja2Keys:
        """The key files (K, OP/OPc). Needs ADM1: give ``adm1`` or verify it beforehand."""
        if adm1 is not None:
            self.uicc.verify_adm(adm1)
        usim = self.uicc.read_ef(EF_USIM_AUTH_KEY)
        sim = self._optional(lambda: self.uicc.read_ef(EF_SIM_AUTH_KEY))
        return Sja2Keys(usim, sim)

    # ----------------------------------------------------------------------- snapshot / restore

    def snapshot(self, *, adm1: bytes | None = None) -> Sja2Snapshot:
        """The raw contents of every profile file present (needs ADM1 for the key files)."""
        if adm1 is not None:
            self.uicc.verify_adm(adm1)
        contents = []
        for ef in PROFILE_FILES:
            try:
                contents.append((ef, self.uicc.read_ef_raw(ef)))
            except FileNotFound:
                continue
        return Sja2Snapshot(tuple(contents))

    def restore(self, snapshot: Sja2Snapshot, *, adm1: bytes | None = None) -> None:
        """Write a snapshot back (files that differ only), all or nothing like program()."""
        if adm1 is not None:
            self.uicc.verify_adm(adm1)
        old = {ef: self.uicc.read_ef_raw(ef) for ef, _ in snapshot.contents}
        self._write_all(list(snapshot.contents), old, "restore", adm1)


def _replace_head(new: bytes) -> Change:
    """New content over the start of the file, the rest of the old content kept."""
    return lambda old: new + old[len(new):]


def _with_mnc_len(old: bytes, mnc_len: int) -> bytes:
    new = encode_ad(replace(decode_ad(old), mnc_len=mnc_len))
    return new + old[len(new):]

