"""Run artifacts for lab engineers (pcap, AT and TPM logs, message sequence, HTML report) and
the progress display of a run. Reports only read records."""

from __future__ import annotations

from .artifacts import ARTIFACT_FILES, write_artifacts
from .progress import StepProgress

__all__ = ["ARTIFACT_FILES", "StepProgress", "write_artifacts"]
