"""Key templates and symmetric definitions the TPM driver creates its keys and sessions with."""

from __future__ import annotations

from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC, TPMA_OBJECT
from tpm2_pytss.types import (
    TPM2B_PUBLIC,
    TPMS_ECC_PARMS,
    TPMS_ECC_POINT,
    TPMS_SCHEME_HASH,
    TPMT_ECC_SCHEME,
    TPMT_KDF_SCHEME,
    TPMT_PUBLIC,
    TPMT_SYM_DEF,
    TPMT_SYM_DEF_OBJECT,
    TPMU_ASYM_SCHEME,
    TPMU_PUBLIC_ID,
    TPMU_PUBLIC_PARMS,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)

_SESSION_AES128_CFB = TPMT_SYM_DEF(
    algorithm=TPM2_ALG.AES,
    keyBits=TPMU_SYM_KEY_BITS(aes=128),
    mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
)
_AES128_CFB = TPMT_SYM_DEF_OBJECT(
    algorithm=TPM2_ALG.AES,
    keyBits=TPMU_SYM_KEY_BITS(aes=128),
    mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
)


def _ak_template() -> TPM2B_PUBLIC:
    """Restricted ECC P-256 ECDSA-SHA256 signing key (an attestation key)."""
    return TPM2B_PUBLIC(publicArea=TPMT_PUBLIC(
        type=TPM2_ALG.ECC,
        nameAlg=TPM2_ALG.SHA256,
        objectAttributes=(TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT
                          | TPMA_OBJECT.SENSITIVEDATAORIGIN | TPMA_OBJECT.USERWITHAUTH
                          | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT),
        parameters=TPMU_PUBLIC_PARMS(eccDetail=TPMS_ECC_PARMS(
            symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
            scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.ECDSA,
                                   details=TPMU_ASYM_SCHEME(
                                       ecdsa=TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256))),
            curveID=TPM2_ECC.NIST_P256,
            kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
        )),
    ))


def _storage_key_template() -> TPM2B_PUBLIC:
    """TCG TPM v2.0 Provisioning Guidance 7.5.1: the ECC P-256 SRK template (unique zeroed)."""
    return TPM2B_PUBLIC(publicArea=TPMT_PUBLIC(
        type=TPM2_ALG.ECC,
        nameAlg=TPM2_ALG.SHA256,
        objectAttributes=(TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT
                          | TPMA_OBJECT.SENSITIVEDATAORIGIN | TPMA_OBJECT.USERWITHAUTH
                          | TPMA_OBJECT.NODA | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT),
        parameters=TPMU_PUBLIC_PARMS(eccDetail=TPMS_ECC_PARMS(
            symmetric=_AES128_CFB,
            scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.NULL),
            curveID=TPM2_ECC.NIST_P256,
            kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
        )),
        unique=TPMU_PUBLIC_ID(ecc=TPMS_ECC_POINT(x=b"\x00" * 32, y=b"\x00" * 32)),
    ))
