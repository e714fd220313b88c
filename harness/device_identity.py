"""Which units a run ran on: the identities a lab engineer files with a result.

ICCID, IMSI before and after the procedure, IMEI, module maker/model/firmware, TPM
manufacturer/vendor/firmware and the EK certificate's subject, issuer and serial. These
name a unit and are no secrets; no key, PIN or ADM value is read here. A device that does
not answer gets ``unavailable (<why>)``: identities never stop a run.
"""

from __future__ import annotations

from typing import Any, Callable

UNAVAILABLE = "unavailable"


def _try(found: dict[str, str], keys: tuple[str, ...], read: Callable[[], dict[str, str]]) -> None:
    try:
        found.update(read())
    except Exception as exc:   # an identity is information, never a reason to stop
        for key in keys:
            found.setdefault(key, f"{UNAVAILABLE} ({type(exc).__name__}: {exc})")


def read_identities(devices: Any, ek_certificate: bytes | None) -> dict[str, str]:
    """The identities of the open devices (mcim_hil.devices.Devices) and of the EK certificate (DER)."""
    found: dict[str, str] = {}
    if devices.uicc is not None:
        _try(found, ("iccid",), lambda: {"iccid": devices.uicc.read_iccid()})
        _try(found, ("imsi_before",), lambda: {"imsi_before": devices.uicc.read_imsi()})
    if devices.modem is not None:
        def module() -> dict[str, str]:
            identity = devices.modem.identity()
            return {"imei": identity.imei, "module_manufacturer": identity.manufacturer,
                    "module_model": identity.model, "module_firmware": identity.revision}
        _try(found, ("imei", "module_model", "module_firmware"), module)
    if devices.tpm is not None:
        def tpm() -> dict[str, str]:
            info = devices.tpm.info()
            return {"tpm_manufacturer": info.manufacturer, "tpm_vendor": info.vendor,
                    "tpm_firmware": f"{info.firmware_version_text} (0x{info.firmware_version:016x})"}
        _try(found, ("tpm_manufacturer", "tpm_vendor", "tpm_firmware"), tpm)
    if ek_certificate:
        _try(found, ("ek_certificate_subject", "ek_certificate_serial"), lambda: certificate_identity(ek_certificate))
    return found


def read_imsi_after(devices: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    if devices is not None and devices.uicc is not None:
        _try(found, ("imsi_after",), lambda: {"imsi_after": devices.uicc.read_imsi()})
    return found


def certificate_identity(der: bytes) -> dict[str, str]:
    from cryptography import x509
    cert = x509.load_der_x509_certificate(der)
    return {"ek_certificate_subject": cert.subject.rfc4514_string() or "(empty: the TPM is named in the SAN)",
            "ek_certificate_issuer": cert.issuer.rfc4514_string(),
            "ek_certificate_serial": f"{cert.serial_number:x}"}
