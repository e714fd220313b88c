"""The pytest plugin, run as a lab engineer runs it: small test files through pytest (pytester)
against the emulated bench (swtpm, the virtual card behind pcscd/vpcd, the AT modem on a pty).

Each inner run brings its own bench up and down; the vpcd slot is claimed like any bench's.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from mcim_hil.bench import DEFAULT_BENCH
# Imported here so pytester's in-process runs find them loaded: it drops the modules a run
# imported, and cryptography's compiled core cannot be imported twice.
from mcim_hil import session as _session  # noqa: F401

pytest_plugins = ["pytester"]

ADM1 = (DEFAULT_BENCH.parent / "emulated-secrets" / "adm1").read_text().strip()

# An inner helper: the module's AT port opened raw (no driver), as a terminal would.
RAW_AT = '''
import time
import serial

def raw_at(port, line):
    """One command on the raw port; everything the module sent back, echo included."""
    with serial.serial_for_url(port, baudrate=115200, timeout=0.1) as s:
        s.reset_input_buffer()
        s.write(line.encode("ascii") + b"\\r")
        data = b""
        deadline = time.monotonic() + 5
        while not (data.endswith(b"OK\\r\\n") or b"ERROR" in data) and time.monotonic() < deadline:
            data += s.read(256)
    return data
'''


def _lines(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines)


def test_fixtures_give_working_devices(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab='''
        def test_identities(tpm, uicc, modem, bench):
            assert tpm.info().manufacturer == "IBM"          # swtpm is IBM's TPM 2.0
            assert uicc.read_iccid() == "8988211000000000017"
            assert modem.identity().model == "EMU-LTE"
            assert bench.bench.name == "emulated"
            assert bench.endpoints.modem_port == modem.port
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_teardown_leaves_card_tpm_and_modem_as_found(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab=RAW_AT + '''
from mcim_hil.drivers.sja2 import Sja2

FOUND = {}
NEW_IMSI = "001019999999999"
HANDLE = 0x81000123


def test_a_changes_the_devices(tpm, uicc, modem, bench):
    adm1 = bench.bench.uicc.adm1.resolve_key()
    card = Sja2(uicc)
    FOUND["imsi"] = uicc.read_imsi()
    FOUND["keys"] = card.read_keys(adm1=adm1)
    FOUND["persistent"] = tpm.list_persistent()
    assert HANDLE not in FOUND["persistent"]

    card.program(NEW_IMSI, bytes(range(16)), bytes(range(16, 32)), adm1=adm1)
    assert uicc.read_imsi() == NEW_IMSI
    key = tpm.create_storage_key()
    tpm.persist(key, HANDLE)
    tpm.flush(key)
    assert HANDLE in tpm.list_persistent()
    modem.echo_on()
    modem.set_error_mode(0)
    modem.set_registration_reporting(2)
    modem.command("AT+CFUN=4")          # TS 27.007 8.2: radio off


def test_b_finds_them_as_they_were(tpm, uicc, bench):
    assert uicc.read_imsi() == FOUND["imsi"]
    assert Sja2(uicc).read_keys(adm1=bench.bench.uicc.adm1.resolve_key()) == FOUND["keys"]
    assert tpm.list_persistent() == FOUND["persistent"]
    port = bench.endpoints.modem_port
    # the drivers are closed: the module has the echo (E1) and +CMEE=0 it was found with
    assert raw_at(port, "AT").startswith(b"AT\\r")
    assert b"+CMEE: 0" in raw_at(port, "AT+CMEE?")
    assert b"+CEREG: 0," in raw_at(port, "AT+CEREG?")
    assert b"+CFUN: 1" in raw_at(port, "AT+CFUN?")
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error::UserWarning")
    result.assert_outcomes(passed=2)


def test_a_card_reached_through_the_module_is_restored_too(pytester: pytest.Pytester) -> None:
    secrets = DEFAULT_BENCH.parent / "emulated-secrets"
    pytester.makefile(".yaml", via_modem=f"""
name: via-modem
tpm: {{emulator: swtpm}}
uicc:
  emulator: vuicc
  via_modem: true
  secrets:
    adm1: {{file: {secrets / 'adm1'}}}
modem: {{emulator: at-pty}}
""")
    pytester.makepyfile(test_lab='''
from mcim_hil.drivers.sja2 import Sja2

FOUND = {}


def test_a_changes_the_imsi(uicc, bench):
    assert uicc.name.startswith("AT+CSIM via ")
    FOUND["imsi"] = uicc.read_imsi()
    Sja2(uicc).program("001019999999999", bytes(16), bytes(16), adm1=bench.bench.uicc.adm1.resolve_key())
    assert uicc.read_imsi() == "001019999999999"


def test_b_finds_it_as_it_was(uicc):
    assert uicc.read_imsi() == FOUND["imsi"]
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--bench", "via_modem.yaml", "--junitxml=out.xml")
    result.assert_outcomes(passed=2)
    props = {p.get("name"): p.get("value")
             for p in ET.parse(pytester.path / "out.xml").getroot().iterfind("testsuite/properties/property")}
    assert props["uicc_iccid"] == "8988211000000000017"      # read through AT+CSIM
    assert props["modem_model"] == "EMU-LTE"


def test_a_test_without_plugin_fixtures_starts_nothing(pytester: pytest.Pytester) -> None:
    # the bench file does not even exist: nothing loads it unless a test asks for the bench
    pytester.makepyfile(test_plain='''
        def test_plain(tmp_path):
            assert tmp_path.exists()
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--bench", "no/such/bench.yaml")
    result.assert_outcomes(passed=1)


def test_a_broken_bench_file_fails_the_tests_that_need_it(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", broken="name: broken\ntpm: {emulator: qemu}\n")
    pytester.makepyfile(test_lab='''
        def test_tpm(tpm):
            pass

        def test_plain():
            pass
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--bench", "broken.yaml")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*tpm.emulator: 'qemu' is not one of swtpm*"])


TPM_ONLY_BENCH = "name: tpm-only\ntpm:\n  emulator: swtpm\n"


def test_bench_requires_skips_naming_the_missing_device(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", tpm_only=TPM_ONLY_BENCH)
    pytester.makepyfile(test_lab='''
        import pytest

        @pytest.mark.bench_requires("modem")
        def test_needs_a_modem():
            pass

        def test_modem_fixture(modem):
            pass

        def test_m2me_fixture(m2me):
            pass

        @pytest.mark.bench_requires("tpm")
        def test_tpm(tpm):
            assert tpm.info().manufacturer == "IBM"
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "--bench", "tpm_only.yaml")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines([
        "SKIPPED [[]1[]] test_lab.py:*: bench tpm-only has no modem",
        "SKIPPED [[]1[]] test_lab.py:*: bench tpm-only has no modem",
        "SKIPPED [[]1[]] test_lab.py:*: bench tpm-only has no uicc",
    ], consecutive=False)


def test_the_bench_file_comes_from_the_environment_too(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bench = pytester.makefile(".yaml", tpm_only=TPM_ONLY_BENCH)
    monkeypatch.setenv("MCIM_HIL_BENCH", str(bench))
    pytester.makepyfile(test_lab='''
        import pytest

        @pytest.mark.bench_requires("uicc")
        def test_needs_a_card():
            pass
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*bench tpm-only has no uicc"])
    assert f"mcim-hil bench: {bench}" in _lines(result)


def test_bench_requires_refuses_an_unknown_device(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab='''
        import pytest

        @pytest.mark.bench_requires("gps")
        def test_gps():
            pass
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*bench_requires: unknown device gps (one of tpm, uicc, modem)*"])


DESTRUCTIVE = '''
    import pytest

    @pytest.mark.destructive
    def test_spends_card_retries():
        pass

    def test_harmless():
        pass
'''


def test_destructive_tests_are_skipped_without_the_flag(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab=DESTRUCTIVE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *test_lab.py:*: destructive test * run with --allow-destructive"])


def test_destructive_tests_run_with_the_flag(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab=DESTRUCTIVE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--allow-destructive")
    result.assert_outcomes(passed=2)
    assert "destructive tests allowed" in _lines(result)


def test_junit_xml_holds_the_bench_provenance(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab='''
        def test_uses_the_bench(bench):
            assert bench.endpoints.tpm_tcti
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    suite = ET.parse(pytester.path / "out.xml").getroot().find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iterfind("properties/property")}
    assert props["bench_file"] == str(DEFAULT_BENCH)
    assert props["bench_name"] == "emulated"
    assert props["tpm_manufacturer"] == "IBM"
    assert props["tpm_vendor"].startswith("SW")
    assert props["tpm_firmware"]
    assert props["uicc_atr"] == "3B9F96801F878031E073FE211B674A4C753034054BA9"   # an SJA2 ATR (facts/sysmo.md)
    assert props["uicc_iccid"] == "8988211000000000017"
    assert props["modem_model"] == "EMU-LTE"
    assert props["modem_revision"] == "EMU-LTE_1.0.0"


def test_artifacts_are_written_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab='''
        import pytest

        def test_reads_identities(tpm, modem, record):
            tpm.info()
            modem.identity()

        @pytest.mark.parametrize("n", [1])
        def test_reads_the_card(uicc, n):
            uicc.read_imsi()

        def test_fails(tpm):
            tpm.info()
            assert False, "on purpose"
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--artifacts", "arts")
    result.assert_outcomes(passed=2, failed=1)
    arts = pytester.path / "arts"
    assert sorted(p.name for p in arts.iterdir()) == [
        "test_lab.py_test_fails", "test_lab.py_test_reads_identities", "test_lab.py_test_reads_the_card_1"]

    run = json.loads((arts / "test_lab.py_test_reads_identities" / "run.json").read_text())
    commands = [e["command"] for e in run["outside"]]
    assert "TPM2_GetCapability" in commands and "AT+CGMI" in commands
    assert run["meta"]["test"] == "test_lab.py::test_reads_identities"
    assert run["meta"]["outcome"] == "passed"
    assert run["meta"]["provenance"]["uicc_iccid"] == "8988211000000000017"

    card = json.loads((arts / "test_lab.py_test_reads_the_card_1" / "run.json").read_text())
    card_commands = [e["command"] for e in card["outside"]]
    assert "READ BINARY ADF.USIM/EF.IMSI" in card_commands
    # the plugin's own snapshot and restore (through ADM1) are not the test's commands
    assert not any(c.startswith("VERIFY ADM1") for c in card_commands)

    failed = json.loads((arts / "test_lab.py_test_fails" / "run.json").read_text())
    assert failed["meta"]["outcome"] == "failed"

    for path in arts.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert ADM1.encode() not in data and ADM1.encode().hex().encode() not in data.lower(), path


def test_m2me_runs_the_initial_procedure_and_leaves_the_bench_pristine(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab='''
from mcim_hil.m2me.tre import MCIM_HANDLE
from mcim_hil.procedures import PROCEDURES, run_procedure

FOUND = {}


def test_a_found(uicc, tpm):
    FOUND["imsi"] = uicc.read_imsi()
    FOUND["persistent"] = tpm.list_persistent()


def test_b_initial_provisioning(m2me, record):
    outcome = run_procedure(PROCEDURES["initial"], m2me, record)
    assert outcome.passed, outcome.failed_step
    assert m2me.tre.has_mcim()
    assert m2me.devices.uicc.read_imsi() != FOUND["imsi"]        # the MCIM's IMSI is on the card


def test_c_back_to_pristine(uicc, tpm, modem):
    assert uicc.read_imsi() == FOUND["imsi"]
    assert MCIM_HANDLE not in tpm.list_persistent()
    assert tpm.list_persistent() == FOUND["persistent"]
    assert not modem.attached()
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error::UserWarning")
    result.assert_outcomes(passed=3)


# The emulated module's SIM reconnects after a card reset without powering the card off.
def test_m2me_runs_again_in_the_same_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lab='''
import pytest
from mcim_hil.procedures import PROCEDURES, run_procedure


@pytest.mark.parametrize("run", [1, 2])
def test_initial_provisioning(m2me, record, run):
    outcome = run_procedure(PROCEDURES["initial"], m2me, record)
    assert outcome.passed, outcome.failed_step
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error::UserWarning")
    result.assert_outcomes(passed=2)
