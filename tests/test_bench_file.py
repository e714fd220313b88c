"""Bench files: loading validates and reports every problem with the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcim_hil.bench import DEFAULT_BENCH, BenchFileError, SecretUnavailable, load_bench


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bench.yaml"
    p.write_text(text)
    return p


def problems(path: Path) -> list[str]:
    with pytest.raises(BenchFileError) as err:
        load_bench(path)
    assert all(str(path) in line for line in str(err.value).splitlines())
    return err.value.problems


def test_emulated_bench_is_the_default_and_loads() -> None:
    bench = load_bench(None)
    assert bench.path == DEFAULT_BENCH
    assert bench.devices() == ["tpm", "uicc", "modem"]
    assert bench.emulated
    assert bench.uicc.adm1.resolve_key() == b"77111606"
    assert bench.uicc.pin1.resolve_key() == b"1234\xff\xff\xff\xff"


def test_bench_env_variable_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "name: from-env\ntpm: {tcti: 'swtpm:host=127.0.0.1,port=2321'}\n")
    monkeypatch.setenv("MCIM_HIL_BENCH", str(p))
    assert load_bench(None).name == "from-env"


def test_every_problem_reported_once_with_its_key(tmp_path: Path) -> None:
    p = write(tmp_path, """
tpm: {tcti: 'bogus:/dev/x', colour: red}
uicc: {emulator: vuicc, reader: 3}
modem: {baudrate: fast}
extra: 1
""")
    got = problems(p)
    assert "tpm.tcti: 'bogus:/dev/x': TCTI name must be one of device, swtpm, mssim, tabrmd" in got
    assert "tpm.colour: unknown key" in got
    assert "uicc: give reader or emulator, not both" in got
    assert "modem.baudrate: expected int, got str ('fast')" in got
    assert "modem: give either port (a real device) or emulator" in got
    assert "extra: unknown key" in got


def test_inline_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    p = write(tmp_path, "uicc: {emulator: vuicc, secrets: {adm1: '93845173'}}\n")
    with pytest.raises(BenchFileError) as err:
        load_bench(p)
    assert "uicc.secrets.adm1: secrets are given by reference" in str(err.value)
    assert "93845173" not in str(err.value)


def test_secret_from_env_and_missing_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "uicc: {emulator: vuicc, secrets: {adm1: {env: TEST_ADM1}}}\n")
    bench = load_bench(p)
    monkeypatch.delenv("TEST_ADM1", raising=False)
    with pytest.raises(SecretUnavailable, match="uicc.secrets.adm1: environment variable TEST_ADM1 is not set"):
        bench.uicc.adm1.resolve_key()
    monkeypatch.setenv("TEST_ADM1", "0102030405060708")
    assert bench.uicc.adm1.resolve_key() == bytes.fromhex("0102030405060708")
    assert "0102030405060708" not in repr(bench.uicc)


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    p = write(tmp_path, "tpm:\n  tcti: [unclosed\n")
    (line,) = problems(p)
    assert line.startswith("not valid YAML at line")


def test_real_devices_that_are_not_there(tmp_path: Path) -> None:
    p = write(tmp_path, """
tpm: {tcti: 'device:/dev/no-such-tpm'}
uicc: {reader: 'No Such Reader 00 00'}
modem: {port: /dev/ttyNOPE9}
""")
    got = problems(p)
    assert "tpm.tcti: /dev/no-such-tpm does not exist" in got
    assert "modem.port: /dev/ttyNOPE9 does not exist" in got
    (reader,) = [g for g in got if g.startswith("uicc.reader")]
    assert "no reader matches 'No Such Reader 00 00'; readers present: " in reader
    assert "Virtual PCD 00 00" in reader  # the readers present are listed


def test_example_real_bench_is_well_formed() -> None:
    bench = load_bench(DEFAULT_BENCH.parent / "sysmo-sja2-quectel.yaml", probe=False)
    assert bench.tpm.tcti == "device:/dev/tpmrm0"
    assert bench.modem.port == "/dev/ttyUSB2"
    assert bench.uicc.adm1.env == "SJA2_ADM1"
    assert bench.topology.ro_colocated_with_vno
