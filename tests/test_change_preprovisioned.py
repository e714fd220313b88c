"""The variant at the end of TR 33.812 5.1.3.8.4.2 on the emulated bench: the old and the new SHO's
MCIMs both in the TRE before the card is switched, each under a sealing parent of its own SHO, so
the TPM, not Python, keeps them apart."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization

from mcim_hil.drivers.errors import TpmError
from mcim_hil.m2me.tre import MCIM_HANDLE, PREPROVISIONED_HANDLE
from mcim_hil.network import m2msimmobj
from mcim_hil.procedures import PROCEDURES, run_procedure
from mcim_hil.session import Session

VARIANT = PROCEDURES["change-sho-preprovisioned"]
RELAYED = pytest.mark.session_options(air="relayed")
SPARE_HANDLE = 0x81000A13


def _object(sho, imsi: str):
    document = sho.db.get("subscribers", imsi=imsi)["m2msimmobj"]
    return m2msimmobj.parse(document, serialization.load_der_public_key(sho.verify_key))


@RELAYED
def test_both_mcims_sit_in_the_tre_apart_and_the_change_switches_the_card(m2me: Session) -> None:
    s = m2me
    seen: dict[str, object] = {}

    def after_7(s: Session) -> None:
        seen["handles"] = set(s.devices.tpm.list_persistent())
        seen["card"] = s.m2me.identity_on_card()

    outcome = run_procedure(VARIANT.after_step(7, after_7), s, s.record)
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    net, pcid = s.network, s.m2me.pcid
    old_imsi, new_imsi = net.sho.imsi_of(pcid), net.nsho.imsi_of(pcid)
    assert {MCIM_HANDLE, PREPROVISIONED_HANDLE} <= seen["handles"] and seen["card"] == old_imsi
    assert s.m2me.identity_on_card() == new_imsi and s.m2me.attached_as == new_imsi
    assert net.sho.subscriber(old_imsi)["state"] == "discarded"
    assert net.nsho.subscriber(new_imsi)["state"] == "active"
    # the two SHOs' objects were wrapped for different parents
    old_obj, new_obj = _object(net.sho, old_imsi), _object(net.nsho, new_imsi)
    assert old_obj.sealed.storage_key_name != new_obj.sealed.storage_key_name


@RELAYED
def test_the_tpm_refuses_each_shos_object_under_the_other_shos_parent(m2me: Session) -> None:
    s = m2me
    outcome = run_procedure(VARIANT, s, s.record)
    assert outcome.passed
    net, pcid = s.network, s.m2me.pcid
    old = _object(net.sho, net.sho.imsi_of(pcid)).sealed
    new = _object(net.nsho, net.nsho.imsi_of(pcid)).sealed
    # the old SHO's object under the new SHO's parent
    with pytest.raises(TpmError, match="TPM2_Import"):
        s.tre.install_sealed_under(net.addresses.nsho.encode(), SPARE_HANDLE, old.public, old.duplicate, old.seed,
                                   old.encryption_key, old.pcr_selection)
    # the new SHO's object under the old SHO's parent (the storage key the old SHO validated)
    with pytest.raises(TpmError, match="TPM2_Import"):
        s.tre.install_sealed(new.public, new.duplicate, new.seed, new.encryption_key, new.pcr_selection)
    # ... and under a parent made for the old SHO's address, too
    with pytest.raises(TpmError, match="TPM2_Import"):
        s.tre.install_sealed_under(net.addresses.sho.encode(), SPARE_HANDLE, new.public, new.duplicate, new.seed,
                                   new.encryption_key, new.pcr_selection)
    assert SPARE_HANDLE not in s.devices.tpm.list_persistent()
    # its own parent still takes it (the new one is persisted already: a fresh copy at the spare handle)
    assert s.tre.install_sealed_under(net.addresses.nsho.encode(), SPARE_HANDLE, new.public, new.duplicate,
                                      new.seed, new.encryption_key, new.pcr_selection)


@RELAYED
def test_neither_shos_messages_carry_the_others_credential(m2me: Session) -> None:
    s = m2me
    assert run_procedure(VARIANT, s, s.record).passed
    net, pcid = s.network, s.m2me.pcid
    old_imsi, new_imsi = net.sho.imsi_of(pcid), net.nsho.imsi_of(pcid)
    new_doc = net.nsho.db.get("subscribers", imsi=new_imsi)["m2msimmobj"].hex()
    old_doc = net.sho.db.get("subscribers", imsi=old_imsi)["m2msimmobj"].hex()
    checked = 0
    for message in s.record.messages():
        checked += 1
        ends = {message["sender"], message["recipient"]}
        text = json.dumps(message["fields"])
        if net.addresses.sho in ends:
            assert new_imsi not in text and new_doc not in text, message["kind"]
        if net.addresses.nsho in ends:
            assert old_imsi not in text and old_doc not in text, message["kind"]
    assert checked > 50
    # and neither SHO holds a subscription of the other's
    assert net.sho.subscriber(new_imsi) is None and net.nsho.subscriber(old_imsi) is None


# -- from the command line, as the issue asks: --procedure change-sho --variant preprovisioned ------------

def test_the_variant_runs_from_the_command_line(tmp_path) -> None:
    from pathlib import Path

    from mcim_hil.cli import main
    bench = Path(__file__).resolve().parent.parent / "lab_config" / "emulated.yaml"
    code = main(["run", "--bench", str(bench), "--procedure", "change-sho", "--variant", "preprovisioned",
                 "--air", "relayed", "--out", str(tmp_path)])
    run = json.loads((tmp_path / "run.json").read_text())
    assert code == 0 and run["meta"]["procedure"] == "change-sho-preprovisioned"
    assert [s["verdict"] for s in run["steps"] if not str(s["number"]).startswith("before.")] \
        and all(s["verdict"] == "passed" for s in run["steps"])


def test_a_variant_of_another_procedure_is_refused_in_one_line(capsys) -> None:
    from mcim_hil.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--procedure", "pristine", "--variant", "preprovisioned"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--variant preprovisioned applies to --procedure change-sho only, not pristine")
