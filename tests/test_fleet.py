"""A fleet's mass change of SHO (issue 8): simulated TREs the PVA checks like a real TPM's, the IVF
taking the integrity validations off the PVA, tampered M2MEs refused, the same counts on a process
pool and on a Dask cluster, and `mcim-hil fleet` from the command line. Counts only, never timings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cryptography import x509

from mcim_hil.cli import main
from mcim_hil.fleet.population import FleetError, FleetSpec, SharedPki, configuration
from mcim_hil.fleet.runner import run_mode
from mcim_hil.fleet.simulated import SimulatedTre, SimulatedTreError
from mcim_hil.network import attestation, pki
from mcim_hil.network.attestation import Evidence, Measurement, PlatformValidator, ReferenceValues

N, T = 200, 5


@pytest.fixture(scope="module")
def shared() -> SharedPki:
    return SharedPki.create()


# -- a simulated TRE speaks TPM 2.0 and the PVA's own checks decide ----------------------------------

def evidence_of(tre: SimulatedTre, validator: PlatformValidator, ca: pki.CertificateAuthority,
                components) -> tuple[Evidence, bytes, bytes]:
    log = tre.boot(components)
    keys, ek = tre.keys(), tre.endorsement_key()
    challenge, secret = validator.credential_challenge(ek.public, keys.ak.public.marshal())
    nonce = validator.new_nonce()
    proof = tre.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
    quote, certified = tre.quote(nonce, [tre.pcr]), tre.certify_storage_key(nonce)
    authority = tre.certify_unseal_authority(nonce)
    pfc = pki.issue_platform_credential(ca, keys.ak.public_key, "sim-m2me-x", model=configuration(0)[0])
    from cryptography.hazmat.primitives.serialization import Encoding
    return Evidence("sim-m2me-x", ek.certificate or b"", ek.public, keys.ak.public.marshal(), proof,
                    quote.attest, quote.signature, quote.pcr_values,
                    [Measurement(m.name, m.pcr, m.digest) for m in log], pfc.public_bytes(Encoding.DER),
                    keys.storage_key.public.marshal(), certified.attest, certified.signature,
                    tre.unseal_authority_public(), authority.attest, authority.signature), nonce, secret


def test_a_simulated_tre_passes_every_check_of_the_pva_and_a_forgery_fails(shared: SharedPki) -> None:
    maker, ca = shared.maker(), shared.m2mes()
    model, components = configuration(0)
    reference = ReferenceValues({c.name: c.digest for c in components}, model=model).sign(ca)
    validator = PlatformValidator([maker.certificate], ca.certificate, pki.OcspResponder(ca).respond,
                                  [23], reference)
    tre = SimulatedTre(maker)
    evidence, nonce, secret = evidence_of(tre, validator, ca, components)
    result = validator.validate(evidence, nonce, secret)
    assert result.passed, result.summary()
    assert [c.name for c in result.checks] == list(attestation.CHECKS)
    quote = attestation.parse_attest(evidence.quote_attest)  # TPMS_ATTEST as a TPM marshals it
    assert quote.magic == attestation.TPM_GENERATED_VALUE and quote.type == attestation.TPM_ST_ATTEST_QUOTE
    # another TRE's AK signing this TRE's quote: the PVA's signature check refuses it
    other = SimulatedTre(maker)
    forged = dataclasses.replace(evidence, quote_signature=other._sign(evidence.quote_attest))
    again, nonce2, secret2 = evidence_of(tre, validator, ca, components)
    forged = dataclasses.replace(again, quote_signature=other._sign(again.quote_attest))
    assert [c.name for c in validator.validate(forged, nonce2, secret2).failed] == ["quote_signature"]


def test_a_simulated_tre_opens_only_a_credential_made_for_its_own_ak(shared: SharedPki) -> None:
    maker = shared.maker()
    tre, other = SimulatedTre(maker), SimulatedTre(maker)
    challenge, secret = attestation.make_credential_challenge(tre.endorsement_key().public,
                                                              tre.keys().ak.public.marshal())
    assert tre.activate_credential(challenge.credential_blob, challenge.encrypted_secret) == secret
    wrong_ak, _ = attestation.make_credential_challenge(tre.endorsement_key().public,
                                                       other.keys().ak.public.marshal())
    with pytest.raises(SimulatedTreError, match="integrity"):
        tre.activate_credential(wrong_ak.credential_blob, wrong_ak.encrypted_secret)


# -- the fleet's counts -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pool_runs(shared: SharedPki):
    spec = FleetSpec(devices=N, real=0, configurations=3, tampered=T)
    return spec, {ivf: run_mode(spec, ivf, shared, workers=2) for ivf in (True, False)}


def test_with_the_ivf_the_pva_validates_integrity_only_for_the_tampered(pool_runs) -> None:
    spec, runs = pool_runs
    ivf, no_ivf = runs[True], runs[False]
    for run in (ivf, no_ivf):
        assert run.changed == N - T and run.refused == T
        assert run.refused_tampered == T and run.tampered_accepted == 0
        assert run.refusals == {"reference_values": T}  # caught by their measurement, not by chance
    # with the IVF: authenticity for all, integrity only where the fresh quote differs from the IVF's digest
    assert ivf.pva_change["authenticity_checks"] == N + T
    assert ivf.pva_change["integrity_validations"] == T and ivf.fallbacks == T
    # without: every M2ME's integrity validated again
    assert no_ivf.pva_change["authenticity_checks"] == N
    assert no_ivf.pva_change["integrity_validations"] == N and no_ivf.fallbacks == 0
    # the PVA kept what it may: no OCSP or reference-values request during the change
    for run in (ivf, no_ivf):
        assert run.pva_change["ocsp_requests"] == 0 and run.pva_change["reference_values_requests"] == 0
    assert ivf.pva_provisioning["ivf_issues"] == N and no_ivf.pva_provisioning["ivf_issues"] == 0
    assert ivf.load and no_ivf.load and ivf.pva_change["cpu_s"] > 0


def test_a_dask_cluster_gives_the_process_pool_counts(pool_runs, shared: SharedPki) -> None:
    from distributed import Client, LocalCluster
    spec, runs = pool_runs
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        for ivf in (True, False):
            on_dask = run_mode(spec, ivf, shared, workers=2, client=client)
            assert on_dask.executor.startswith("dask ")
            assert on_dask.counts() == runs[ivf].counts()


# -- the command line ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, line", [
    (["--devices", "0"], "mcim-hil fleet: --devices must be at least 1, not 0"),
    (["--devices", "3", "--real", "4"], "mcim-hil fleet: --real 4 is more than --devices 3"),
    (["--devices", "4", "--real", "0", "--scheduler", "tcp://127.0.0.1:9"],
     "mcim-hil fleet: --scheduler tcp://127.0.0.1:9: cannot reach the Dask scheduler"),
])
def test_bad_input_is_one_clear_line(args: list[str], line: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(line) and "\n" not in err and "Traceback" not in err


def test_fleet_command_with_a_real_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fleet", "--devices", "12", "--real", "1", "--tampered", "2", "--configurations", "2",
                 "--workers", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PVA integrity validations" in out and "with IVF" in out and "without IVF" in out
    data = json.loads((tmp_path / "fleet.json").read_text())
    by_label = {r["label"]: r for r in data["runs"]}
    ivf, no_ivf = by_label["with IVF"], by_label["without IVF"]
    assert ivf["changed"] == no_ivf["changed"] == 10 and ivf["refused_tampered"] == 2
    # the real bench ran every step of change-sho, with the IVF's result the first time
    bench = ivf["real_benches"][0]
    assert bench["changed"] and bench["source"] == "pva authenticity + ivf integrity"
    assert no_ivf["real_benches"][0]["changed"] and no_ivf["real_benches"][0]["fallback"]
    assert (Path(bench["artifacts"]) / "run.json").exists()
    # simulated PVA work: 11 simulated + the bench's 1, integrity only for the 2 tampered with the IVF
    assert ivf["pva_change"]["integrity_validations"] == 2
    assert no_ivf["pva_change"]["integrity_validations"] == 12
    page = (tmp_path / "fleet.html").read_text()
    assert page.count("<polyline") == 2 and "SIMULATED" in page


def test_sigterm_stops_the_shards_and_exits_143_with_one_line(tmp_path: Path) -> None:
    """SIGTERM while the shards run: their processes end, pending shards are cancelled, one line,
    exit 143. The bound only tells "stopped" from "ran the fleet to its end" (minutes here)."""
    import os
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "mcim_hil", "fleet", "--devices", "20000", "--real", "0",
               "--workers", "2", "--out", str(tmp_path)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    assert proc.stderr is not None
    progress = []
    for line in proc.stderr:   # the shards report progress once they run
        progress.append(line)
        if "provisioning" in line and not line.rstrip().endswith(" 0/20000"):
            break
    children = _children(proc.pid)
    assert children, progress
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the shards too
        proc.wait()
        raise AssertionError("mcim-hil fleet still running 60 s after SIGTERM")
    assert proc.returncode == 143, err
    lines = [line for line in err.splitlines() if line.strip() and "provisioning" not in line]
    assert lines == ["mcim-hil fleet: terminated by SIGTERM; the bench was stopped"], err
    assert not [pid for pid in children if _alive(pid)]
    assert not (tmp_path / "fleet.json").exists()


def _children(pid: int) -> list[int]:
    """The processes ``pid``'s threads forked (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_fleet_spec_refuses_what_cannot_run() -> None:
    with pytest.raises(FleetError, match="--configurations"):
        FleetSpec(devices=3, real=0, configurations=0)
    assert len(FleetSpec(devices=100, real=1, tampered=7).tampered_indexes()) == 7


def test_fleet_command_on_a_dask_scheduler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        code = main(["fleet", "--devices", "30", "--real", "0", "--tampered", "3", "--ivf-only",
                     "--scheduler", cluster.scheduler_address, "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr()
    (run,) = json.loads((tmp_path / "fleet.json").read_text())["runs"]
    assert run["label"] == "with IVF" and run["executor"].startswith("dask ")
    assert run["changed"] == 27 and run["refused_tampered"] == 3
    assert run["pva_change"]["integrity_validations"] == 3


# -- what the network keeps in memory per M2ME (issue 8 §4: under 1 GiB per 10^5) -------------------

def test_the_store_keeps_in_memory_only_the_secret_columns_of_tables_that_have_them() -> None:
    from mcim_hil.network.store import Store

    with Store(":memory:") as store:
        db = store.entity("auc")
        db.define("subscribers", {"imsi": "TEXT", "k": "SECRET", "opc": "SECRET", "sqn": "INTEGER"}, "imsi")
        db.define("validations", {"nonce": "BLOB", "passed": "INTEGER"}, "nonce")
        for i in range(50):
            db.put("subscribers", imsi=f"00101{i:010d}", k=bytes(16), opc=bytes([i]) * 16, sqn=i)
            db.put("validations", nonce=i.to_bytes(32, "big"), passed=1)
        db.put("subscribers", imsi="001010000000007", sqn=99)  # a put without the secrets drops them
        # the rows of a table without SECRET columns are in SQLite only
        assert sum(len(rows) for rows in store._secrets.values()) == 50
        assert db.get("subscribers", imsi="001010000000003")["opc"] == bytes([3]) * 16
        assert db.get("subscribers", imsi="001010000000007")["k"] is None
        assert db.delete("subscribers", imsi="001010000000003")
        assert sum(len(rows) for rows in store._secrets.values()) == 49


def test_a_ca_keeps_the_serials_it_issued_not_the_certificates(shared: SharedPki) -> None:
    ca = pki.CertificateAuthority.create("M2MES CA", organization="M2MES")
    responder = pki.OcspResponder(ca)
    tre = SimulatedTre(shared.maker())
    pfc = pki.issue_platform_credential(ca, tre.keys().ak.public_key, "sim-kept", model=configuration(0)[0])
    assert ca.issued(pfc.serial_number) and not ca.issued(pfc.serial_number + 1)
    tables = [v for v in vars(ca).values() if isinstance(v, (set, dict))]
    assert tables and not any(isinstance(x, x509.Certificate)
                              for table in tables for x in (table.values() if isinstance(table, dict) else table))
    assert responder.status_of(pfc.serial_number).name == "GOOD"
    assert responder.status_of(pfc.serial_number + 1).name == "UNKNOWN"


def test_a_simulated_tre_marshals_what_tpm2_pytss_marshals(shared: SharedPki) -> None:
    """The simulated TRE packs fixed-width fields itself: byte for byte tpm2-pytss's marshal()."""
    import hashlib

    from tpm2_pytss.constants import TPM2_ALG, TPM2_GENERATED, TPM2_ST
    from tpm2_pytss.types import (TPM2B_DIGEST, TPM2B_PUBLIC, TPML_PCR_SELECTION, TPMS_ATTEST, TPMS_CERTIFY_INFO,
                                  TPMS_CLOCK_INFO, TPMS_PCR_SELECTION, TPMS_QUOTE_INFO, TPMS_SIGNATURE_ECC,
                                  TPMT_SIGNATURE, TPMU_ATTEST, TPMU_SIGNATURE)
    from mcim_hil.fleet import simulated
    from mcim_hil.fleet.simulated import SimulatedKey

    tre = SimulatedTre(shared.maker())
    tre.boot(configuration(1)[1])
    keys = tre.keys()
    for public in (tre.endorsement_key().public, keys.ak.public.marshal(), keys.storage_key.public.marshal()):
        area = TPM2B_PUBLIC.unmarshal(public)[0]
        assert area.marshal() == public                                   # a whole, well-formed TPM2B_PUBLIC
        assert area.publicArea.unique.ecc.x != bytes(32)                  # its own point, not the template's
    assert keys.ak.public_key.public_numbers().x.to_bytes(32, "big") == bytes(
        TPM2B_PUBLIC.unmarshal(keys.ak.public.marshal())[0].publicArea.unique.ecc.x)
    def key_of(public: bytes):
        return SimulatedKey(simulated.Marshalled(public)).public_key
    ek = tre.endorsement_key().public
    assert ek == simulated._ecc_public(key_of(ek), simulated.EK_ATTRIBUTES, symmetric=True,
                                       policy=simulated.EK_POLICY).marshal()
    assert keys.ak.public.marshal() == simulated._ecc_public(keys.ak.public_key, simulated.AK_ATTRIBUTES,
                                                             scheme=TPM2_ALG.ECDSA).marshal()
    assert keys.storage_key.public.marshal() == simulated._ecc_public(
        keys.storage_key.public_key, simulated.STORAGE_ATTRIBUTES, symmetric=True).marshal()
    ek_certificate = x509.load_der_x509_certificate(tre.endorsement_key().certificate)
    assert ek_certificate.public_key() == key_of(ek)
    ak_name = TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(keys.ak.public.marshal()[2:]).digest()
    assert keys.ak.name == ak_name

    nonce = bytes(range(32))
    quote = tre.quote(nonce, [tre.pcr])
    clock = TPMS_CLOCK_INFO(clock=tre._clock, resetCount=tre._reset_count, restartCount=0, safe=1)
    selection = TPML_PCR_SELECTION(pcrSelections=[TPMS_PCR_SELECTION(
        hash=TPM2_ALG.SHA256, sizeofSelect=3, pcrSelect=bytes([0, 0, 0x80]))])
    digest = hashlib.sha256(quote.pcr_values[tre.pcr]).digest()
    expected = TPMS_ATTEST(magic=TPM2_GENERATED.VALUE, type=TPM2_ST.ATTEST_QUOTE, qualifiedSigner=ak_name,
                           extraData=nonce, clockInfo=clock, firmwareVersion=simulated.FIRMWARE_VERSION,
                           attested=TPMU_ATTEST(quote=TPMS_QUOTE_INFO(pcrSelect=selection,
                                                                      pcrDigest=TPM2B_DIGEST(digest))))
    assert quote.attest == expected.marshal()
    signature = TPMT_SIGNATURE.unmarshal(quote.signature)[0]
    assert signature.marshal() == quote.signature
    assert quote.signature == TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA, signature=TPMU_SIGNATURE(ecdsa=TPMS_SIGNATURE_ECC(
        hash=TPM2_ALG.SHA256, signatureR=bytes(signature.signature.ecdsa.signatureR),
        signatureS=bytes(signature.signature.ecdsa.signatureS)))).marshal()

    certified = tre.certify_storage_key(nonce)
    name = keys.storage_key.name
    qualified = TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(b"\x40\x00\x00\x01" + name).digest()
    clock = TPMS_CLOCK_INFO(clock=tre._clock, resetCount=tre._reset_count, restartCount=0, safe=1)
    assert certified.attest == TPMS_ATTEST(
        magic=TPM2_GENERATED.VALUE, type=TPM2_ST.ATTEST_CERTIFY, qualifiedSigner=ak_name, extraData=nonce,
        clockInfo=clock, firmwareVersion=simulated.FIRMWARE_VERSION,
        attested=TPMU_ATTEST(certify=TPMS_CERTIFY_INFO(name=name, qualifiedName=qualified))).marshal()


def test_simulated_tres_each_have_their_own_keys(shared: SharedPki) -> None:
    maker = shared.maker()
    tres = [SimulatedTre(maker) for _ in range(3)]
    assert len({t.endorsement_key().public for t in tres}) == 3
    assert len({t.keys().ak.public.marshal() for t in tres}) == 3
    assert len({t.endorsement_key().certificate for t in tres}) == 3
