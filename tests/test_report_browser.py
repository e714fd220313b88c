"""report.html as a lab engineer sees it: opened from disk in (headless) Chromium, offline.

Chromium takes a screenshot into the run's artifact folder (report.png, for a human to look
at) and dumps the DOM it built. A copy of the page with a small probe script appended measures
what was laid out: the steps table rows and the sequence diagram's arrows must all have a size
on screen, one arrow per message. The report itself carries no script.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from report_support import ArtifactRun, run_and_write

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="chromium is not installed (scripts/setup.sh installs it)")

WINDOW = (1400, 2000)

PROBE = """<script>
(function () {
  const svg = document.querySelector("svg.sequence");
  const box = svg.getBoundingClientRect();
  const shown = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const arrows = [...svg.querySelectorAll("g.msg")].filter(shown).length;
  const rows = [...document.querySelectorAll("table.steps tbody tr")].filter(shown).length;
  const verdict = document.querySelector(".verdict");
  document.body.setAttribute("data-probe", JSON.stringify({
    svgWidth: box.width, svgHeight: box.height, arrows: arrows, rows: rows,
    verdictColour: getComputedStyle(verdict).color, verdict: verdict.textContent}));
})();
</script>"""


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class _Dom(HTMLParser):
    """Counts what the report is made of, in the DOM Chromium built."""

    def __init__(self) -> None:
        super().__init__()
        self.step_rows: list[str] = []
        self.arrows: list[str] = []
        self.probe: str | None = None
        self._in_steps = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.probe = a.get("data-probe")
        if tag == "table" and "steps" in (a.get("class") or "").split():
            self._in_steps = True
        if tag == "tr" and self._in_steps and (a.get("id") or "").startswith("step-"):
            self.step_rows.append(a["id"][len("step-"):])
        if tag == "g" and "msg" in (a.get("class") or "").split():
            self.arrows.append(a.get("data-kind") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_steps = False


@pytest.fixture(scope="module")
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ArtifactRun:
    # into the session's artifacts (the plugin's --artifacts), so the screenshot is kept
    from mcim_hil.fixtures.plugin import artifacts_root
    root = artifacts_root(request.config)
    out = root / "report-in-chromium" if root is not None else tmp_path_factory.mktemp("report")
    return run_and_write(out, air="relayed")


def test_chromium_renders_the_report_with_every_step_and_every_arrow(run: ArtifactRun, tmp_path: Path) -> None:
    report = run.files["report.html"]
    steps = json.loads(run.files["run.json"].read_text())["steps"]
    kinds = [m["kind"] for m in sorted(run.run_json_messages(), key=lambda m: m["seq"])]

    # the screenshot lands beside the other artifacts
    screenshot = run.out_dir / "report.png"
    chromium(tmp_path / "profile-shot", f"--screenshot={screenshot}", report.as_uri())
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == WINDOW          # IHDR: width, height

    # the DOM Chromium built from the file as it is
    dom = _Dom()
    dom.feed(chromium(tmp_path / "profile-dom", "--dump-dom", report.as_uri()).stdout)
    assert dom.step_rows == [str(s["number"]) for s in steps]
    assert dom.arrows == kinds

    # what was laid out: measured by a probe in a copy of the page
    probed = tmp_path / "report-probe.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = _Dom()
    dom.feed(chromium(tmp_path / "profile-probe", "--dump-dom", probed.as_uri()).stdout)
    assert dom.probe, "the probe did not run"
    probe = json.loads(dom.probe)
    assert probe["rows"] == len(steps)
    assert probe["arrows"] == len(kinds)
    assert probe["svgWidth"] > 1000 and probe["svgHeight"] > 40 * len(steps)
    assert probe["verdict"] == "PASSED" and probe["verdictColour"] == "rgb(26, 127, 55)"   # the green


def test_the_report_needs_nothing_from_the_network(run: ArtifactRun) -> None:
    page = run.files["report.html"].read_text()
    urls = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\"' )]*", page)
    assert urls == ["http://www.w3.org/2000/svg"]             # the SVG namespace name, never fetched
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", page)
