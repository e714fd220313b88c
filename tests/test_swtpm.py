"""The swtpm emulator through real swtpm processes: lifecycle, side by side, kept identity, power cycle."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mcim_hil.drivers.tpm import Tpm
from mcim_hil.emulators.swtpm import Swtpm, SwtpmError

PCR_DEBUG = 16  # resettable debug PCR, free for tests


def _all_swtpm_children() -> set[str]:
    done = subprocess.run(["pgrep", "-a", "-P", str(os.getpid()), "-x", "swtpm"],
                          capture_output=True, text=True)
    return set(done.stdout.split("\n")) - {""}


# swtpm children that were there before this module (the pytest plugin's session bench)
_BEFORE: set[str] = set()


def _swtpm_children() -> list[str]:
    return sorted(_all_swtpm_children() - _BEFORE)


@pytest.fixture(autouse=True, scope="module")
def no_swtpm_left_behind() -> Iterator[None]:
    _BEFORE.update(_all_swtpm_children())
    yield
    assert _swtpm_children() == []


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ek_der(tpm: Tpm) -> bytes:
    ek = tpm.ek()
    try:
        assert ek.certificate is not None
        return ek.certificate.public_bytes(serialization.Encoding.DER)
    finally:
        tpm.flush(ek)


def test_start_then_stop_leaves_nothing() -> None:
    swtpm = Swtpm()
    swtpm.start()
    port, ctrl, state = swtpm.port, swtpm.ctrl_port, swtpm.state_dir
    assert ctrl == port + 1
    assert swtpm.tcti == f"swtpm:host=127.0.0.1,port={port}"
    assert _swtpm_children(), "swtpm should be our child process"
    with Tpm.open(swtpm.tcti) as tpm:
        assert tpm.info().manufacturer == "IBM"  # libtpms reports IBM
    swtpm.stop()
    assert not swtpm.running
    assert not _port_open(port) and not _port_open(ctrl)
    assert not state.exists(), "a temp state dir is removed on stop"
    assert _swtpm_children() == []
    swtpm.stop()  # a second stop is harmless


def test_two_benches_side_by_side_are_two_tpms() -> None:
    with Swtpm() as first, Swtpm() as second:
        assert {first.port, first.ctrl_port}.isdisjoint({second.port, second.ctrl_port})
        with Tpm.open(first.tcti) as a, Tpm.open(second.tcti) as b:
            before = b.pcr_read([PCR_DEBUG])[PCR_DEBUG]
            a.measure(PCR_DEBUG, b"only on the first TPM")
            assert b.pcr_read([PCR_DEBUG])[PCR_DEBUG] == before
            assert a.pcr_read([PCR_DEBUG])[PCR_DEBUG] != before
            assert _ek_der(a) != _ek_der(b), "each swtpm_setup makes its own EK"
        assert first.ek_ca_certificates()[0].read_bytes() != second.ek_ca_certificates()[0].read_bytes()


def test_kept_state_dir_keeps_the_ek_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "bench-tpm"
    with Swtpm(state) as swtpm:
        with Tpm.open(swtpm.tcti) as tpm:
            first_ek = _ek_der(tpm)
        ca_chain = [p.read_bytes() for p in swtpm.ek_ca_certificates()]
    assert (state / "tpm").is_dir(), "a given state dir is kept"
    setup_log = (state / "swtpm_setup.log").stat().st_mtime_ns

    with Swtpm(state) as swtpm:
        with Tpm.open(swtpm.tcti) as tpm:
            assert _ek_der(tpm) == first_ek
        assert [p.read_bytes() for p in swtpm.ek_ca_certificates()] == ca_chain
    assert (state / "swtpm_setup.log").stat().st_mtime_ns == setup_log, "no second swtpm_setup"


def test_local_ca_lives_in_the_state_dir(tmp_path: Path) -> None:
    with Swtpm(tmp_path / "tpm-a") as swtpm:
        chain = swtpm.ek_ca_certificates()
        assert all(p.is_relative_to(swtpm.state_dir) for p in chain)
        conf = (swtpm.state_dir / "swtpm-localca.conf").read_text()
        assert "/var/lib/swtpm-localca" not in conf


def test_power_cycle_resets_pcrs_and_keeps_persistent_objects() -> None:
    with Swtpm(shared_identity=True) as swtpm:
        with Tpm.open(swtpm.tcti) as tpm:
            tpm.measure(PCR_DEBUG, b"boot component")
            assert tpm.pcr_read([PCR_DEBUG])[PCR_DEBUG] != bytes(32)
            ak = tpm.create_ak()
            tpm.persist(ak, 0x81000042)
            tpm.flush(ak)

        swtpm.power_cycle()

        with Tpm.open(swtpm.tcti) as tpm:
            assert tpm.pcr_read([PCR_DEBUG])[PCR_DEBUG] == bytes(32)
            assert 0x81000042 in tpm.list_persistent()
            # usable again: a quote by the persisted AK
            ak_public = tpm.read_public(0x81000042)
            ak = tpm.create_ak()  # same template, same endorsement seed: the same key
            assert ak.public.publicArea.marshal() == ak_public.publicArea.marshal()
            quote = tpm.quote(ak, b"after power cycle", [PCR_DEBUG])
            assert quote.pcr_values[PCR_DEBUG] == bytes(32)
            tpm.flush(ak)
            tpm.evict(0x81000042)


def test_shared_identity_copies_one_provisioned_tpm() -> None:
    with Swtpm(shared_identity=True) as first, Swtpm(shared_identity=True) as second:
        assert first.state_dir != second.state_dir
        with Tpm.open(first.tcti) as a, Tpm.open(second.tcti) as b:
            assert _ek_der(a) == _ek_der(b)
            a.measure(PCR_DEBUG, b"first only")
            assert b.pcr_read([PCR_DEBUG])[PCR_DEBUG] == bytes(32)
        # the copy's CA config points at its own CA, not the template's
        conf = (second.state_dir / "swtpm-localca.conf").read_text()
        assert str(second.state_dir / "ca") in conf


def test_shared_identity_is_for_temp_dirs_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Swtpm(tmp_path, shared_identity=True)


def test_a_broken_state_names_swtpm_and_shows_its_stderr(tmp_path: Path) -> None:
    state = tmp_path / "broken"
    with Swtpm(state):
        pass
    permall = state / "tpm" / "tpm2-00.permall"
    permall.write_bytes(hashlib.sha256(b"not a TPM state").digest() * 8)
    swtpm = Swtpm(state)
    with pytest.raises(SwtpmError) as failure:
        swtpm.start(timeout=3.0)
    assert failure.value.command == "swtpm socket"
    assert failure.value.stderr_tail, "the error carries swtpm's own words"
    assert "swtpm socket" in str(failure.value)
    swtpm.stop()
    assert _swtpm_children() == []


def test_a_failed_setup_names_swtpm_setup_and_leaves_no_half_tpm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mcim_hil.emulators.swtpm as emulator
    monkeypatch.setattr(emulator, "SWTPM_LOCALCA", str(tmp_path / "no-such-localca"))
    state = tmp_path / "bench-tpm"
    with pytest.raises(SwtpmError) as failure:
        Swtpm(state).start()
    assert failure.value.command == "swtpm_setup"
    assert "no-such-localca" in failure.value.stderr_tail
    assert not (state / "tpm").exists()
    monkeypatch.undo()
    with Swtpm(state) as swtpm:  # the next start manufactures it properly
        assert swtpm.ek_ca_certificates()


def test_a_tpm_state_we_did_not_manufacture_is_never_overwritten(tmp_path: Path) -> None:
    state = tmp_path / "someone-elses"
    (state / "tpm").mkdir(parents=True)
    foreign = b"a TPM state we must not destroy"
    (state / "tpm" / "tpm2-00.permall").write_bytes(foreign)
    with pytest.raises(SwtpmError) as refusal:
        Swtpm(state).start()
    assert refusal.value.command == "swtpm_setup"
    assert (state / "tpm" / "tpm2-00.permall").read_bytes() == foreign


def _quote_clock(tpm: Tpm) -> object:
    from tpm2_pytss.types import TPMS_ATTEST
    ak = tpm.create_ak()
    try:
        quote = tpm.quote(ak, b"clock", [PCR_DEBUG])
    finally:
        tpm.flush(ak)
    return TPMS_ATTEST.unmarshal(quote.attest)[0].clockInfo


def test_a_kept_tpm_restarted_quotes_with_safe_clock(tmp_path: Path) -> None:
    # a planned stop sends TPM2_Shutdown(CLEAR): the next start is no power loss
    state = tmp_path / "bench-tpm"
    with Swtpm(state) as swtpm:
        with Tpm.open(swtpm.tcti) as tpm:
            assert _quote_clock(tpm).safe == 1
    with Swtpm(state) as swtpm:
        with Tpm.open(swtpm.tcti) as tpm:
            assert _quote_clock(tpm).safe == 1


def test_power_cycle_is_orderly_and_power_loss_is_not() -> None:
    with Swtpm(shared_identity=True) as swtpm:
        swtpm.power_cycle()
        with Tpm.open(swtpm.tcti) as tpm:
            before = _quote_clock(tpm)
            assert before.safe == 1
        swtpm.power_loss()
        with Tpm.open(swtpm.tcti) as tpm:
            after = _quote_clock(tpm)
        assert after.safe == 0, "a power loss must show in the clock"
        assert after.resetCount == before.resetCount + 1


def test_a_bench_keeping_its_tpm_provisions_twice_in_a_row(tmp_path: Path) -> None:
    # the second run finds a safe clock (orderly stop) and the first run's MCIM object at its
    # persistent handle, with every object slot in use when it replaces it
    import shutil

    from mcim_hil.bench import load_bench
    from mcim_hil.m2me.tre import MCIM_HANDLE
    from mcim_hil.procedures import PROCEDURES, run_procedure
    from mcim_hil.session import Session, SessionOptions

    lab = Path(__file__).resolve().parent.parent / "lab_config"
    shutil.copytree(lab / "emulated-secrets", tmp_path / "emulated-secrets")
    text = (lab / "emulated.yaml").read_text()
    bench_file = tmp_path / "kept.yaml"
    bench_file.write_text(text.replace("  # state_dir: ~/.cache/mcim-hil/tpm",
                                       f"  state_dir: {tmp_path / 'tpm'}  #"))
    bench = load_bench(str(bench_file))
    assert bench.tpm.state_dir == tmp_path / "tpm"
    from mcim_hil.drivers.tpm import object_name

    sealed_names = []
    for _ in range(2):
        with Session(bench, SessionOptions(air="relayed")) as session:
            outcome = run_procedure(PROCEDURES["initial"], session, session.record)
            assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
            sealed_names.append(object_name(session.devices.tpm.read_public(MCIM_HANDLE)))
    assert sealed_names[0] != sealed_names[1], "the second run replaced the first MCIM object"


def test_a_kept_tpm_left_unsafe_starts_with_a_safe_clock(tmp_path: Path) -> None:
    # a state dir that lost its power last time (an older mcim-hil, a crash) is settled on start
    state = tmp_path / "bench-tpm"
    with Swtpm(state) as swtpm:
        swtpm.power_loss()
        with Tpm.open(swtpm.tcti) as tpm:
            assert _quote_clock(tpm).safe == 0
    with Swtpm(state) as swtpm:
        with Tpm.open(swtpm.tcti) as tpm:
            clock = _quote_clock(tpm)
    assert clock.safe == 1
