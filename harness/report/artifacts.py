"""The artifacts of one run, written side by side into one folder.

run.json (the record), apdu.pcap (the UICC commands as GSMTAP), at.log (the module's AT
lines), tpm.log (the TPM operations), sequence.txt (the messages between the entities) and
report.html (the page that links them all). The CLI writes them into ``--out DIR``; the
pytest plugin into each test's folder.
"""

from __future__ import annotations

from pathlib import Path

from mcim_hil.record import RUN_FILE, Record

from .html import render_report
from .logs import at_log_text, sequence_text, tpm_log_text, write_text
from .pcap import write_pcap

PCAP_FILE = "apdu.pcap"
AT_LOG_FILE = "at.log"
TPM_LOG_FILE = "tpm.log"
SEQUENCE_FILE = "sequence.txt"
REPORT_FILE = "report.html"

ARTIFACT_FILES = (RUN_FILE, PCAP_FILE, AT_LOG_FILE, TPM_LOG_FILE, SEQUENCE_FILE, REPORT_FILE)


def write_artifacts(record: Record, out_dir: Path | str) -> dict[str, Path]:
    """Write every artifact of ``record`` into ``out_dir`` (created if needed).

    Returns file name -> path, in the order of ``ARTIFACT_FILES``. run.json goes first, so a
    run whose report cannot be drawn still leaves its record.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = {RUN_FILE: record.write(folder)}
    written[PCAP_FILE] = write_pcap(record, folder / PCAP_FILE)
    written[AT_LOG_FILE] = write_text(folder / AT_LOG_FILE, at_log_text(record))
    written[TPM_LOG_FILE] = write_text(folder / TPM_LOG_FILE, tpm_log_text(record))
    written[SEQUENCE_FILE] = write_text(folder / SEQUENCE_FILE, sequence_text(record))
    links = [name for name in ARTIFACT_FILES if name != REPORT_FILE]
    written[REPORT_FILE] = write_text(folder / REPORT_FILE, render_report(record, links))
    return written
