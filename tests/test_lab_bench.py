"""The `labgrid:` key of a bench file: validated like the others, one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcim_hil.bench import BenchFileError, load_bench
from mcim_hil.lab.place import LabgridPlace, serial_url


def test_a_bench_on_a_labgrid_place_takes_its_modem_from_the_place(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("tpm: {emulator: swtpm}\nuicc: {via_modem: true}\n"
                    "labgrid: {coordinator: 'lab.example:20408', place: sja2-bench1}\n")
    bench = load_bench(path)
    assert bench.labgrid == LabgridPlace("lab.example:20408", "sja2-bench1")
    assert bench.modem is not None and bench.modem.port is None and bench.modem.emulator is None
    path.write_text("modem: {}\nlabgrid: {coordinator: lab.example, place: '+', serial: at}\n")
    assert load_bench(path).labgrid == LabgridPlace("lab.example:20408", "+", "at")   # labgrid's default port


def test_a_broken_labgrid_section_is_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("modem: {port: /dev/ttyUSB2}\nlabgrid: {coordinator: 'http://lab:20408', room: 3}\n")
    with pytest.raises(BenchFileError) as exc:
        load_bench(path, probe=False)
    assert exc.value.problems == [
        "modem: the labgrid place's serial port is the modem: give no port or emulator",
        "labgrid.place: missing",
        "labgrid.coordinator: 'http://lab:20408' is not HOST:PORT",
        "labgrid.room: unknown key",
    ]


def test_a_network_serial_port_is_opened_as_rfc2217_with_ign_set_control() -> None:
    assert serial_url({"host": "10.0.0.5", "port": 5001, "speed": 115200}) == \
        "rfc2217://10.0.0.5:5001?ign_set_control"
    assert serial_url({"host": "10.0.0.5", "port": 5001, "protocol": "raw"}) == "socket://10.0.0.5:5001"
