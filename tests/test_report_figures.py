"""report.html and run.json as a lab engineer checks them: the figures add up, the labels fit,
and the units the run was on are named. One `mcim-hil run` per air mode, through the real stacks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "mcim_hil"]
CHROMIUM = shutil.which("chromium")


def run_cli(out: Path, air: str) -> Path:
    done = subprocess.run(CLI + ["run", "--air", air, "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def module_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_cli(tmp_path_factory.mktemp("module"), "module")


def fact(page: str, name: str) -> str:
    found = re.search(rf"<dt>{re.escape(name)}</dt><dd[^>]*>([^<]*)</dd>", page)
    assert found, f"no {name!r} in the report's header"
    return found.group(1)


def ms(text: str) -> float:
    value, unit = text.split()
    return float(value) * (1000.0 if unit == "s" else 1.0)


def test_the_banner_counts_the_steps_the_title_counts(module_run: Path) -> None:
    page = (module_run / "report.html").read_text()
    titled = int(re.search(r"<h1>[^<]*\((\d+) steps\)</h1>", page).group(1))
    banner = re.search(r'class="verdict-detail">all (\d+) steps', page)
    assert banner and int(banner.group(1)) == titled
    assert re.search(rf'<li class="pass"><b>{titled}</b> passed</li>', page)


def test_time_in_steps_counts_each_interval_once(module_run: Path) -> None:
    page = (module_run / "report.html").read_text()
    assert ms(fact(page, "time in steps")) <= ms(fact(page, "procedure time"))
    # steps 2-5 happened inside the module's attach, which step 6 stands for
    for number in (2, 4, 5):
        row = re.search(rf'<tr class="pass" id="step-{number}">.*?</tr>', page, re.S).group(0)
        assert "within step 6" in row
    run = json.loads((module_run / "run.json").read_text())
    six = next(s for s in run["steps"] if s["number"] == 6)
    assert six["duration_s"] * 1000 <= ms(fact(page, "procedure time"))


def test_run_json_and_report_name_the_units_the_run_was_on(module_run: Path) -> None:
    run = json.loads((module_run / "run.json").read_text())
    units = run["meta"]["devices"]
    assert units["iccid"] == "8988211000000000017"          # lab_config/emulated.yaml
    assert units["imsi_before"] == run["meta"]["pcid"]
    after = next(s for s in run["steps"] if s["number"] == "after")
    assert units["imsi_after"] != units["imsi_before"] and units["imsi_after"] in after["detail"]
    assert units["imei"] == "356938035643809"
    assert (units["module_model"], units["module_firmware"]) == ("EMU-LTE", "EMU-LTE_1.0.0")
    assert units["tpm_manufacturer"] == "IBM" and units["tpm_firmware"]
    assert units["ek_certificate_issuer"] == "CN=swtpm-localca" and int(units["ek_certificate_serial"], 16) > 0  # RFC 5280 4.1.2.2: positive
    page = (module_run / "report.html").read_text()
    assert fact(page, "ICCID") == units["iccid"]
    assert fact(page, "IMSI before → after") == f"{units['imsi_before']} → {units['imsi_after']}"
    assert fact(page, "IMEI") == units["imei"]
    assert units["ek_certificate_serial"] in fact(page, "EK certificate")


PROBE = """<script>
(function () {
  const over = [];
  for (const head of document.querySelectorAll("svg.sequence g.head")) {
    const box = head.querySelector("rect").getBoundingClientRect();
    for (const text of head.querySelectorAll("text")) {
      const r = text.getBoundingClientRect();
      if (r.left < box.left + 3 || r.right > box.right - 3) over.push(text.textContent);   // 3 px clear of the border
    }
  }
  const heads = document.querySelectorAll("svg.sequence g.head").length;
  document.body.setAttribute("data-probe", JSON.stringify({heads: heads, over: over}));
})();
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
def test_every_lifeline_label_fits_its_box_in_chromium(module_run: Path, tmp_path: Path) -> None:
    probed = tmp_path / "probe.html"
    probed.write_text((module_run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,2000",
                           "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, done.stderr[-1000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["heads"] >= 9                  # M2ME, VNO, RO/ICF, CCIF, RO/DRF, RO/DPF, SHO, PVA, M2MES
    assert probe["over"] == []                  # each label clear of its box's border
