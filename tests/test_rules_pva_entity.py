"""The PVA entity's own rules: the SHO's request must name the platform and PfC of the evidence
it forwards, and only a validation that checked integrity is issued to the IVF (seed 004 c3 s10)."""

from __future__ import annotations

import dataclasses

from mcim_hil.network.attestation import Evidence, ValidationResult
from mcim_hil.network.messages import ValidationRequest
from mcim_hil.network.pva import _with_request_check
from test_network_provisioning import Bench, bench, change_of_sho, initial_provisioning  # noqa: F401 (fixture)

EVIDENCE = Evidence(platform_id="m2me-1", ek_certificate=b"", ek_public=b"", ak_public=b"", activation_proof=b"",
                    quote_attest=b"", quote_signature=b"", pcr_values={}, measurements=[], pfc=b"pfc-1",
                    storage_key_public=b"", certify_attest=b"", certify_signature=b"")
PASSED = ValidationResult(passed=True, checks=[], validated_components=[], platform_id="m2me-1", pcr_digest=None,
                          storage_key_public=None)


def request(**changes: object) -> ValidationRequest:
    fields = {"pfc": b"pfc-1", "m2me_identity": "m2me-1", "pcid": "001020000000001", "evidence": EVIDENCE,
              "nonce": bytes(32), **changes}
    return ValidationRequest(sender="sho", recipient="pva", **fields)


def test_a_request_that_names_the_evidence_platform_and_pfc_keeps_the_verdict() -> None:
    result = _with_request_check(PASSED, request())
    check = result.checks[-1]
    assert (result.passed, check.name, check.passed) == (True, "request_matches_evidence", True)
    assert check.detail == "request and evidence name the same platform and PfC"


def test_a_request_about_another_pfc_or_platform_fails_with_both_reasons() -> None:
    result = _with_request_check(PASSED, request(pfc=b"pfc-2"))
    assert not result.passed
    assert result.checks[-1].detail == "the PfC in the request differs from the one in the evidence"
    result = _with_request_check(PASSED, request(m2me_identity="m2me-2"))
    assert not result.passed and result.checks[-1].detail == "request names 'm2me-2', evidence 'm2me-1'"
    both = _with_request_check(PASSED, request(pfc=b"pfc-2", m2me_identity="m2me-2"))
    assert both.checks[-1].detail == ("the PfC in the request differs from the one in the evidence; "
                                      "request names 'm2me-2', evidence 'm2me-1'")
    failed = dataclasses.replace(PASSED, passed=False)
    assert not _with_request_check(failed, request()).passed


def test_only_a_validation_that_checked_integrity_goes_to_the_ivf(bench: Bench) -> None:  # noqa: F811
    old_imsi = initial_provisioning(bench)
    issued = [m for m in bench.record.messages() if m["kind"] == "IntegrityResultIssue"]
    assert len(issued) == 1  # the initial provisioning validated integrity
    change_of_sho(bench, old_imsi)  # the new SHO's PVA round checks authenticity only
    assert [v["integrity_checked"] for v in bench.net.pva.validations("m2me-traffic-light-0001")][-1] == 0
    issued = [m for m in bench.record.messages() if m["kind"] == "IntegrityResultIssue"]
    assert len(issued) == 1
