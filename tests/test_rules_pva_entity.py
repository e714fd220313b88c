"""The PVA entity's own rules: the SHO's request must name the platform and PfC of the evidence
it forwards; only a validation that checked integrity is issued to the IVF (seed 004 c3 s10), and
only when the PVA has one; only the M2MES's notices change what the PVA keeps; its counters are
what run.json shows."""

from __future__ import annotations

import dataclasses

from cryptography import x509

from mcim_hil.network.attestation import Evidence, ValidationResult
from mcim_hil.network.messages import ChallengeRequest, SupplierNotice, SupplierNoticeAck, ValidationRequest
from mcim_hil.network.pki import platform_identity
from mcim_hil.network.pva import _with_request_check
from test_network_provisioning import Bench, bench, change_of_sho, initial_provisioning  # noqa: F401 (fixture)
from test_pva import PLATFORM, Lab, lab  # noqa: F401 (fixture)

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


def test_a_pva_without_an_ivf_validates_integrity_and_issues_nothing(lab: Lab) -> None:  # noqa: F811
    lab.net.pva.ivf_address = None  # a PVA built without an IVF (Pva's ivf_address defaults to None)
    assert lab.validate(issue_to_ivf=True).passed
    assert "IntegrityResultIssue" not in lab.kinds() and lab.net.pva.counters()["ivf_issues"] == 0


def test_an_authenticity_only_validation_is_not_issued_to_the_ivf_even_when_asked(lab: Lab) -> None:  # noqa: F811
    sho = lab.net.sho
    sho.retrieve_platform_credential(lab.m2me.pcid)
    platform = sho.db.get("platforms", pcid=lab.m2me.pcid)
    # the SHO never asks this; the PVA refuses it anyway: the IVF keeps integrity results only
    _, result = sho._validate_once(lab.m2me.pcid, platform, check_integrity=False, issue_to_ivf=True)
    assert result.passed and not result.integrity_checked
    assert "IntegrityResultIssue" not in lab.kinds() and lab.net.ivf.result(PLATFORM) is None


def _notice(lab: Lab, sender: str, **change: object) -> None:
    reply = lab.net.bus.request(SupplierNotice(sender=sender, recipient=lab.net.pva.address, **change))
    assert isinstance(reply, SupplierNoticeAck)


def test_only_the_m2mes_notices_make_the_pva_ask_again(lab: Lab) -> None:  # noqa: F811
    pfc = x509.load_der_x509_certificate(lab.m2me.pfc)
    change = {"revoked_serial": pfc.serial_number, "model": platform_identity(pfc).model}
    assert lab.validate().passed and lab.validate().passed       # OCSP and reference values kept
    _notice(lab, "m2mes.impostor.example", **change)             # anyone may send; only the M2MES counts
    assert lab.validate().passed
    assert (lab.kinds().count("OcspRequest"), lab.kinds().count("ReferenceValuesRequest")) == (1, 1)
    _notice(lab, lab.net.pva.m2mes_address, revoked_serial=change["revoked_serial"])
    assert lab.validate().passed
    assert (lab.kinds().count("OcspRequest"), lab.kinds().count("ReferenceValuesRequest")) == (2, 1)
    _notice(lab, lab.net.pva.m2mes_address, model=change["model"])
    assert lab.validate().passed
    assert (lab.kinds().count("OcspRequest"), lab.kinds().count("ReferenceValuesRequest")) == (2, 2)


def test_the_counters_in_run_json_follow_each_challenge_and_validation(lab: Lab) -> None:  # noqa: F811
    sho = lab.net.sho
    sho.retrieve_platform_credential(lab.m2me.pcid)
    platform = sho.db.get("platforms", pcid=lab.m2me.pcid)
    lab.net.bus.request(ChallengeRequest(sender=sho.address, recipient=lab.net.pva.address,
                                         platform_id=platform["platform_id"], ek_public=platform["ek_public"],
                                         ak_public=platform["ak_public"]))
    assert lab.record.meta["pva"]["challenges"] == 1 and lab.record.meta["pva"]["authenticity_checks"] == 0
    assert lab.validate().passed  # no IVF issue: only the validation's own accounting publishes
    assert lab.record.meta["pva"] == lab.net.pva.counters()
    assert lab.record.meta["pva"]["authenticity_checks"] == 1


def test_a_full_validation_naming_a_pfc_that_does_not_parse_is_answered_with_its_reasons(lab: Lab) -> None:  # noqa: F811
    """The PVA fetches reference values by the PfC's model: a PfC that is no certificate has none,
    and the validation is still answered (failed, saying why), never an error of the PVA."""
    sho = lab.net.sho
    sho.retrieve_platform_credential(lab.m2me.pcid)
    platform = dict(sho.db.get("platforms", pcid=lab.m2me.pcid))
    platform["pfc"] = b"not a certificate"
    _, result = sho._validate_once(lab.m2me.pcid, platform, check_integrity=True)
    assert not result.passed
    assert result.check("request_matches_evidence").detail == \
        "the PfC in the request differs from the one in the evidence"
