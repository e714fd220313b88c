"""Messages of a remote SW/FW update of the M2ME (TR 33.812 5.1.3.6.8 as changed by seed 004:
"In case remote update of the M2M equipment's SW/FW requires a new PfC, the PVA must be able to
obtain the new PfC"; NOTE 2: the PfC asserts the expected system state of the M2ME).

The seed numbers no steps for the update; the procedure's own names (U1..) are in
harness/procedures/firmware_update.py.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from .messages import Message

__all__ = ["UpdatePackage", "FirmwareUpdateOffer", "FirmwareUpdateReceipt", "FirmwareUpdateReport",
           "PlatformCredentialUpdate", "PlatformCredentialNotice", "PlatformCredentialNoticeAck",
           "PlatformCredentialFetch", "PlatformCredentialFetchResponse", "StateReferenceValuesRequest",
           "IntegrityResultSupersede", "IntegrityResultSupersedeAck", "expected_state"]

_U16 = struct.Struct(">H")


@dataclass(frozen=True)
class UpdatePackage:
    """One component's image at a version, for a model, signed by the M2MES over its manifest
    (``manifest_bytes``: model, component, version and the image's SHA-256)."""

    model: str
    component: str
    version: str
    image: bytes
    signature: bytes = b""

    @property
    def image_digest(self) -> bytes:
        """What the M2ME measures at its next boot, and the new reference value."""
        return hashlib.sha256(self.image).digest()

    def manifest_bytes(self, image_digest: bytes | None = None) -> bytes:
        out = bytearray(b"mcim-hil firmware update v1\0")
        for part in (self.model.encode(), self.component.encode(), self.version.encode(),
                     image_digest if image_digest is not None else self.image_digest):
            out += _U16.pack(len(part)) + part
        return bytes(out)

    def to_dict(self) -> dict[str, object]:   # the record shows the manifest, not the image
        return {"model": self.model, "component": self.component, "version": self.version,
                "image_bytes": len(self.image), "image_sha256": self.image_digest.hex(),
                "signature": self.signature.hex()}


@dataclass(frozen=True, kw_only=True, repr=False)
class FirmwareUpdateOffer(Message):
    """M2MES -> M2ME: a signed update of one component."""

    platform_id: str
    package: UpdatePackage


@dataclass(frozen=True, kw_only=True, repr=False)
class FirmwareUpdateReceipt(Message):
    """M2ME -> M2MES: installed (for the next boot), or refused and why."""

    platform_id: str
    installed: bool
    component: str = ""
    version: str = ""
    previous_version: str = ""
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class FirmwareUpdateReport(Message):
    """M2ME -> M2MES: restarted with the update measured; asks for the PfC of the new state."""

    platform_id: str
    component: str
    version: str


@dataclass(frozen=True, kw_only=True, repr=False)
class PlatformCredentialUpdate(Message):
    """M2MES -> M2ME: the new PfC over the same AK, asserting the new expected state (or a refusal)."""

    platform_id: str
    pfc: bytes = b""
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class PlatformCredentialNotice(Message):
    """M2MES -> PVA: a platform's new PfC, pushed in advance (5.1.3.6.8 NOTE 2), and the serial
    of the one it supersedes (revoked)."""

    platform_id: str
    pfc: bytes
    superseded_serial: int | None
    issued_at: float
    reason: str


@dataclass(frozen=True, kw_only=True, repr=False)
class PlatformCredentialNoticeAck(Message):
    """PVA -> M2MES."""

    platform_id: str


@dataclass(frozen=True, kw_only=True, repr=False)
class PlatformCredentialFetch(Message):
    """PVA -> M2MES: the current PfC of a platform (the PVA saw another one than it holds)."""

    platform_id: str


@dataclass(frozen=True, kw_only=True, repr=False)
class PlatformCredentialFetchResponse(Message):
    """M2MES -> PVA: the current PfC (empty if none), when it was issued and why."""

    platform_id: str
    pfc: bytes = b""
    superseded_serial: int | None = None
    issued_at: float = 0.0
    reason: str = ""


@dataclass(frozen=True, kw_only=True, repr=False)
class StateReferenceValuesRequest(Message):
    """PVA -> M2MES: the reference values of the expected state a PfC asserts (answered with a
    ReferenceValuesResponse for the model, signed; the PVA checks them against the state)."""

    model: str
    state: str


@dataclass(frozen=True, kw_only=True, repr=False)
class IntegrityResultSupersede(Message):
    """PVA -> IVF: the platform's published integrity result no longer describes it (its
    components changed: 004 c4 s3 NOTE); results validated before ``before`` stop standing."""

    platform_id: str
    before: float
    reason: str


@dataclass(frozen=True, kw_only=True, repr=False)
class IntegrityResultSupersedeAck(Message):
    """IVF -> PVA."""

    platform_id: str
    superseded: bool


def expected_state(components: dict[str, bytes], model: str | None) -> str:
    """The expected system state a PfC asserts (5.1.3.6.8 NOTE 2): the SHA-256 of the reference
    values of that state, in their signed encoding, so a PVA can tell the values belong to it."""
    from .evidence import ReferenceValues   # the encoding the M2MES signs
    return "sha256:" + hashlib.sha256(ReferenceValues(dict(components), model).canonical_bytes()).hexdigest()
