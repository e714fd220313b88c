"""Bench files: loading validates and reports every problem with the file and the key."""

from __future__ import annotations

import os
import subprocess
import sys
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


# -- files that are not bench files (issue 9): one line naming the file, never a traceback ------

def test_a_device_node_is_refused_without_reading_it() -> None:
    (line,) = problems(Path("/dev/zero"))
    assert line == "not a bench file: a device"


def test_an_endless_pipe_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    writer = subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE)
    try:
        (line,) = problems(Path(f"/proc/{os.getpid()}/fd/{writer.stdout.fileno()}"))
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert line == "larger than 1024 KiB: not a bench file"


def test_a_fifo_nobody_writes_to_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "bench.fifo"
    os.mkfifo(fifo)
    assert problems(fifo) == ["the bench names no device (tpm, uicc, modem)"]


def test_a_folder_is_one_problem(tmp_path: Path) -> None:
    assert problems(tmp_path) == ["cannot read bench file: Is a directory"]


def test_a_big_file_is_refused_by_its_size(tmp_path: Path) -> None:
    p = write(tmp_path, "# padding\n" * 200_000)
    (line,) = problems(p)
    assert "larger than 1024 KiB" in line


@pytest.mark.parametrize("content,expected", [
    (bytes(range(0x80, 0x100)) * 4, "not UTF-8 text (byte 0x80 at offset 0)"),
    ("name: x\n".encode("utf-32"), "holds NUL bytes: not a UTF-8 text file (binary, UTF-16 or UTF-32?)"),
    ("name: caf\u00e9\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 9)"),
], ids=["random-bytes", "utf-32", "latin-1"])
def test_a_file_that_is_not_utf8_text_is_one_problem(tmp_path: Path, content: bytes, expected: str) -> None:
    p = tmp_path / "bench.yaml"
    p.write_bytes(content)
    assert problems(p) == [expected]


@pytest.mark.parametrize("text,expected", [
    ("name: x\nwhen: 2001-13-45\n", "not valid YAML: 'month must be in 1..12'"),
    ("[" * 5000 + "]" * 5000, "not a bench file: YAML nested too deeply"),
], ids=["timestamp-month-13", "deep-nesting"])
def test_yaml_that_the_parser_cannot_build_is_one_problem(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(write(tmp_path, text)) == [expected]


def test_a_file_with_thousands_of_problems_shows_the_first_twenty_and_a_count(tmp_path: Path) -> None:
    p = write(tmp_path, "".join(f"key{i}: 1\n" for i in range(50_000)))
    with pytest.raises(BenchFileError) as err:
        load_bench(p)
    lines = str(err.value).splitlines()
    assert len(lines) == 21
    assert lines[0] == f"{p}: key0: unknown key"
    assert lines[-1] == f"{p}: ... and 49981 more problems"     # 50000 unknown keys + "names no device"


def test_a_huge_value_is_not_echoed_whole(tmp_path: Path) -> None:
    p = write(tmp_path, "tpm: {tcti: [" + ", ".join(["123456789"] * 50_000) + "]}\n")
    got = problems(p)
    assert got[0].startswith("tpm.tcti: expected str, got list ([123456789, ")
    assert len(got[0]) < 200


def test_a_modem_timeout_out_of_range_is_a_problem(tmp_path: Path) -> None:
    p = write(tmp_path, "modem: {emulator: at-pty, timeout: " + "9" * 400 + "}\n")
    (line,) = problems(p)
    assert line.startswith("modem.timeout: ") and "is not between 0 and 3600 seconds" in line


def test_a_billion_laughs_of_yaml_aliases_is_refused_quickly(tmp_path: Path) -> None:
    # 9 levels of 9 aliases: 387 million strings if anything walks or prints it whole
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    levels += ["tpm: {tcti: *i, ek_ca: *i}", "uicc: {emulator: *i, secrets: {adm1: {env: *i}, pin1: {file: *i}}}",
               "modem: {port: *i, timeout: *i}", "r: &r [*r]", "name: *r"]
    p = write(tmp_path, "\n".join(levels) + "\n")
    probe = ("import sys\nfrom mcim_hil.bench import load_bench, BenchFileError\n"
             "try:\n    load_bench(sys.argv[1], probe=False)\nexcept BenchFileError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(p)], capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert f"{p}: uicc.secrets.adm1: env must be a non-empty string" in lines
    assert f"{p}: uicc.secrets.pin1: file must be a non-empty string" in lines
    assert f"{p}: name: expected str, got list ([[...]])" in lines
    assert all(len(line) < 200 for line in lines), lines
