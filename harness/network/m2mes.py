"""The M2MES, the equipment supplier: personalises pristine M2MEs and vouches for their platform.

It runs a CA that issues each platform's PfC over its TPM attestation key, publishes the
reference values of the components it ships, answers OCSP for its PfCs (and can revoke one),
and gets each pristine M2ME's temporary-access credential (PCID, K, OPc) from the CCIF when it
personalises it.

A remote SW/FW update (5.1.3.6.8: "In case remote update of the M2M equipment's SW/FW requires a
new PfC, the PVA must be able to obtain the new PfC"): it signs the update package, offers it to
the M2ME, and once the M2ME reports it runs it, publishes the reference values of the platform's
new state and issues a new PfC over the same AK asserting that state (NOTE 2); it revokes the old
PfC (superseded) and pushes the new one to its PVAs, or answers a PVA that fetches it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from mcim_hil.network.attestation import ReferenceValues
from mcim_hil.network.bus import Bus, Entity
from mcim_hil.network.messages import (
    CredentialIssued,
    CredentialIssueRequest,
    Message,
    OcspRequest,
    OcspResponse,
    ReferenceValuesRequest,
    ReferenceValuesResponse,
    SupplierNotice,
    SupplierNoticeAck,
)
from mcim_hil.network.messages_update import (
    FirmwareUpdateOffer,
    FirmwareUpdateReceipt,
    FirmwareUpdateReport,
    PlatformCredentialFetch,
    PlatformCredentialFetchResponse,
    PlatformCredentialNotice,
    PlatformCredentialNoticeAck,
    PlatformCredentialUpdate,
    StateReferenceValuesRequest,
    UpdatePackage,
    expected_state,
)
from mcim_hil.network.pki import (
    CertificateAuthority,
    OcspResponder,
    issue_platform_credential,
    platform_identity,
)
from mcim_hil.network.store import Store


@dataclass(frozen=True)
class Personalisation:
    """What the factory writes into a pristine M2ME: the PCID credential for its UICC, the PfC for its TRE."""

    platform_id: str
    pcid: str
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    amf: bytes
    pfc: x509.Certificate
    not_after: float | None = None   # end of the PCID credential's lifetime (CCIF)

    @property
    def pfc_der(self) -> bytes:
        return self.pfc.public_bytes(serialization.Encoding.DER)


class M2mes(Entity):
    """Equipment supplier: CA and OCSP responder for PfCs, reference values, personalisation."""

    def __init__(self, bus: Bus, store: Store, *, address: str, ccif_address: str,
                 name: str = "mcim-hil M2M equipment supplier", model: str = "mcim-hil-m2me",
                 ca: CertificateAuthority | None = None) -> None:
        super().__init__(bus, address)
        self.ccif_address = ccif_address
        self.model = model
        self.ca = ca or CertificateAuthority.create(f"{name} PfC CA", organization=name)
        self.ocsp = OcspResponder(self.ca)
        self.notify: list[str] = []  # PVAs told of revocations and new reference values
        self.db = store.entity("m2mes")
        self.db.define("platforms", {"platform_id": "TEXT", "pcid": "TEXT", "model": "TEXT", "serial": "TEXT",
                                     "pfc": "BLOB", "revoked": "INTEGER", "personalised_at": "REAL"},
                       "platform_id")
        self.db.define("reference_values", {"model": "TEXT", "component": "TEXT", "digest": "BLOB"},
                       ("model", "component"))
        # an updated platform's expected state (5.1.3.6.8 NOTE 2): its reference values, by state
        self.db.define("states", {"model": "TEXT", "state": "TEXT", "components": "JSON"}, ("model", "state"))
        self.db.define("updates", {"platform_id": "TEXT", "component": "TEXT", "version": "TEXT",
                                   "image_digest": "BLOB", "status": "TEXT", "state": "TEXT",
                                   "superseded_serial": "TEXT", "issued_at": "REAL", "reason": "TEXT"},
                       "platform_id")
        self.push_new_pfcs = True  # off: a PVA learns a new PfC only by fetching it (5.1.3.6.8 NOTE 2)
        self.on(OcspRequest, self._ocsp)
        self.on(ReferenceValuesRequest, self._reference_values)
        self.on(FirmwareUpdateReport, self._update_report)
        self.on(PlatformCredentialFetch, self._pfc_fetch)
        self.on(StateReferenceValuesRequest, self._state_reference_values)

    @property
    def certificate(self) -> x509.Certificate:
        """The PfC CA certificate: the PVA's trust anchor for PfCs."""
        return self.ca.certificate

    # -- manufacturing ------------------------------------------------------------------------
    def personalise(self, platform_id: str, ak_public_key: CertificatePublicKeyTypes, *,
                    model: str | None = None) -> Personalisation:
        """Personalise a pristine M2ME: a PCID credential from the CCIF and a PfC over its AK."""
        issued = self.request(CredentialIssueRequest(sender=self.address, recipient=self.ccif_address,
                                                     platform_id=platform_id), CredentialIssued)
        pfc = self.issue_pfc(platform_id, ak_public_key, model=model, pcid=issued.pcid)
        return Personalisation(platform_id=platform_id, pcid=issued.pcid, k=issued.k, opc=issued.opc,
                               amf=issued.amf, pfc=pfc, not_after=issued.not_after)

    def issue_pfc(self, platform_id: str, ak_public_key: CertificatePublicKeyTypes, *,
                  model: str | None = None, pcid: str | None = None, state: str | None = None) -> x509.Certificate:
        """A PfC over ``ak_public_key`` (also for a platform whose PCID credential is already on its card);
        ``state``: the expected system state it asserts (an updated platform's)."""
        pfc = issue_platform_credential(self.ca, ak_public_key, platform_id, model=model or self.model,
                                        version=state)
        self.db.put("platforms", platform_id=platform_id, pcid=pcid, model=model or self.model,
                    serial=str(pfc.serial_number), pfc=pfc.public_bytes(serialization.Encoding.DER),
                    revoked=False, personalised_at=time.time())
        return pfc

    def revoke(self, platform_id: str, reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise) -> None:
        """Revoke a platform's PfC: the OCSP responder answers ``revoked`` from now on."""
        row = self.db.get("platforms", platform_id=platform_id)
        if row is None:
            raise KeyError(f"{self.address}: no PfC issued for platform {platform_id!r}")
        self.ocsp.revoke(int(row["serial"]), reason)
        self.db.update("platforms", {"platform_id": platform_id}, revoked=True)
        self._tell(revoked_serial=int(row["serial"]))

    # -- reference values --------------------------------------------------------------------
    def publish_reference_values(self, values: dict[str, bytes], *, model: str | None = None) -> None:
        """Publish component -> expected digest for ``model`` (replacing earlier values of those components)."""
        for component, digest in values.items():
            self.db.put("reference_values", model=model or self.model, component=component, digest=bytes(digest))
        self._tell(model=model or self.model)

    def _tell(self, **change: object) -> None:
        """Tell the PVAs that rely on this supplier what changed, so none keeps a stale answer."""
        for address in self.notify:
            self.request(SupplierNotice(sender=self.address, recipient=address, **change),  # type: ignore[arg-type]
                         SupplierNoticeAck)

    def reference_values(self, model: str | None = None) -> dict[str, bytes]:
        """The published component -> digest of ``model`` (this supplier's default model if None)."""
        rows = self.db.select("reference_values", model=model or self.model)
        return {row["component"]: row["digest"] for row in rows}

    # -- remote SW/FW update (5.1.3.6.8) -------------------------------------------------------
    def sign_update(self, component: str, version: str, image: bytes, *, model: str | None = None) -> UpdatePackage:
        """The update package of ``component`` at ``version``, its manifest signed with the CA's key
        (the one the M2ME was given at manufacture)."""
        package = UpdatePackage(model or self.model, component, version, bytes(image))
        return replace(package, signature=self.ca.sign(package.manifest_bytes()))

    def offer_update(self, platform_id: str, m2me_address: str, package: UpdatePackage) -> FirmwareUpdateReceipt:
        """Send the package to the M2ME; its receipt says whether it installed it for its next boot."""
        receipt = self.request(FirmwareUpdateOffer(sender=self.address, recipient=m2me_address,
                                                   platform_id=platform_id, package=package), FirmwareUpdateReceipt)
        self.db.put("updates", platform_id=platform_id, component=package.component, version=package.version,
                    image_digest=package.image_digest, status="installed" if receipt.installed else "refused",
                    reason=receipt.reason)
        return receipt

    def platform(self, platform_id: str) -> dict | None:
        """The platform's row: its current PfC (DER) and serial, model, revocation."""
        return self.db.get("platforms", platform_id=platform_id)

    def update_of(self, platform_id: str) -> dict | None:
        """The platform's latest update: component, version, status, the state of its new PfC."""
        return self.db.get("updates", platform_id=platform_id)

    def expected_values(self, pfc: x509.Certificate) -> dict[str, bytes]:
        """The reference values of the state a PfC asserts (its model's when it asserts none)."""
        identity = platform_identity(pfc)
        if identity.version is None:
            return self.reference_values(identity.model)
        row = self.db.get("states", model=identity.model, state=identity.version)
        return {name: bytes.fromhex(digest) for name, digest in (row["components"] if row else {}).items()}

    def _update_report(self, msg: FirmwareUpdateReport) -> Message:
        """The M2ME restarted with the update: publish the new state's reference values (what this
        supplier signed, not what the M2ME measured) and issue a new PfC over the same AK."""
        def refuse(reason: str) -> Message:
            return PlatformCredentialUpdate(sender=self.address, recipient=msg.sender, platform_id=msg.platform_id,
                                            reason=reason)
        update, row = self.update_of(msg.platform_id), self.platform(msg.platform_id)
        if update is None or row is None or update["status"] != "installed":
            return refuse("no update of this platform is installed")
        if (update["component"], update["version"]) != (msg.component, msg.version):
            return refuse(f"the update installed is {update['component']} {update['version']}")
        old = x509.load_der_x509_certificate(row["pfc"])
        values = dict(self.expected_values(old))
        values[update["component"]] = bytes(update["image_digest"])
        model = row["model"]
        state = expected_state(values, model)
        self.db.put("states", model=model, state=state, components={k: v.hex() for k, v in values.items()})
        pfc = self.issue_pfc(msg.platform_id, old.public_key(), model=model, pcid=row["pcid"], state=state)
        self.db.update("updates", {"platform_id": msg.platform_id}, status="pfc issued", state=state,
                       superseded_serial=str(old.serial_number), issued_at=time.time(),
                       reason=f"firmware update of {update['component']} to {update['version']}")
        return PlatformCredentialUpdate(sender=self.address, recipient=msg.sender, platform_id=msg.platform_id,
                                        pfc=pfc.public_bytes(serialization.Encoding.DER))

    def revoke_superseded(self, platform_id: str) -> int:
        """Revoke the PfC the update's new one superseded (OCSP: revoked, superseded); its serial."""
        update = self.update_of(platform_id)
        if update is None or not update["superseded_serial"]:
            raise KeyError(f"{self.address}: no PfC of platform {platform_id!r} was superseded")
        serial = int(update["superseded_serial"])
        self.ocsp.revoke(serial, x509.ReasonFlags.superseded)
        self._tell(revoked_serial=serial)
        return serial

    def push_pfc(self, platform_id: str) -> list[str]:
        """Push the platform's new PfC to the PVAs (NOTE 2: obtained in advance); the PVAs told."""
        if not self.push_new_pfcs:
            return []
        notice = self._pfc_notice(platform_id)
        for address in self.notify:
            self.request(PlatformCredentialNotice(sender=self.address, recipient=address, **notice),
                         PlatformCredentialNoticeAck)
        return list(self.notify)

    def _pfc_notice(self, platform_id: str) -> dict:
        row, update = self.platform(platform_id), self.update_of(platform_id)
        if row is None:
            return {"platform_id": platform_id, "pfc": b"", "superseded_serial": None, "issued_at": 0.0,
                    "reason": "no PfC issued for this platform"}
        updated = update is not None and update["status"] == "pfc issued"
        return {"platform_id": platform_id, "pfc": bytes(row["pfc"]),
                "superseded_serial": int(update["superseded_serial"]) if updated else None,
                "issued_at": update["issued_at"] if updated else row["personalised_at"],
                "reason": update["reason"] if updated else "personalisation"}

    def _pfc_fetch(self, msg: PlatformCredentialFetch) -> Message:
        return PlatformCredentialFetchResponse(sender=self.address, recipient=msg.sender,
                                               **self._pfc_notice(msg.platform_id))

    def _state_reference_values(self, msg: StateReferenceValuesRequest) -> Message:
        row = self.db.get("states", model=msg.model, state=msg.state)
        values = {name: bytes.fromhex(d) for name, d in (row["components"] if row else {}).items()}
        signed = ReferenceValues(values, msg.model).sign(self.ca)
        return ReferenceValuesResponse(sender=self.address, recipient=msg.sender, model=msg.model,
                                       components=dict(signed.components), signature=signed.signature)

    # -- handlers -------------------------------------------------------------------------------
    def _ocsp(self, msg: OcspRequest) -> Message:
        return OcspResponse(sender=self.address, recipient=msg.sender,
                            response_der=self.ocsp.respond(msg.request_der))

    def _reference_values(self, msg: ReferenceValuesRequest) -> Message:
        model = msg.model or self.model
        signed = ReferenceValues(self.reference_values(model), model).sign(self.ca)
        return ReferenceValuesResponse(sender=self.address, recipient=msg.sender, model=model,
                                       components=dict(signed.components), signature=signed.signature)
