"""`mcim-hil bench up` keeps a bench running for other tools; the bench file it writes lets
`mcim-hil run` reuse that bench, in both air modes, from another process (as a lab engineer
does: one terminal holds the bench, another runs procedures, pySim and tpm2-tools).
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
import yaml

CLI = [sys.executable, "-m", "mcim_hil"]


@pytest.fixture
def running_bench(tmp_path: Path) -> Iterator[dict[str, list[str]]]:
    errors = (tmp_path / "bench-up.stderr").open("w+")
    up = subprocess.Popen(CLI + ["bench", "up"], stdout=subprocess.PIPE, stderr=errors, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in up.stdout or []:
            lines.put(line)
        lines.put("")                       # the end of its output

    threading.Thread(target=pump, daemon=True).start()
    printed: dict[str, list[str]] = {}
    try:
        while True:
            try:
                line = lines.get(timeout=120)
            except queue.Empty:
                line = None
            if not line:
                errors.seek(0)
                pytest.fail("bench up did not come up: " + errors.read()[-2000:])
            if line.startswith("# reuse it"):
                break
            if "=" in line and not line.startswith("#"):
                key, value = line.rstrip("\n").split("=", 1)
                printed.setdefault(key, []).append(value)
        yield printed
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        errors.close()


@pytest.mark.parametrize("air", ["relayed", "module"])
def test_the_bench_file_bench_up_writes_reuses_the_running_bench(
        running_bench: dict[str, list[str]], air: str, tmp_path: Path) -> None:
    assert len(running_bench["ek_ca"]) == 2 and all(Path(p).is_file() for p in running_bench["ek_ca"])
    (bench_file,) = running_bench["bench_file"]
    data = yaml.safe_load(Path(bench_file).read_text())
    assert data["tpm"]["ek_ca"] == running_bench["ek_ca"]
    assert data["tpm"]["tcti"] == running_bench["tpm_tcti"][0]
    assert data["uicc"]["reader"] == running_bench["uicc_reader"][0]
    assert data["modem"]["port"] == running_bench["modem_port"][0]
    assert not any(key in data[s] for s in ("tpm", "uicc", "modem") for key in ("emulator",))
    done = subprocess.run(CLI + ["run", "--bench", bench_file, "--air", air, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "initial: PASSED" in done.stdout
    assert f"air interface: {air}" in done.stdout
