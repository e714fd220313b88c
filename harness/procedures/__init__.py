"""The seeds' procedures, as data the CLI and the pytest plugin run."""

from __future__ import annotations

from . import change_preprovisioned, change_sho, firmware_update, initial, initial_ivf, pristine, renew_access
from .base import Procedure, RunOutcome, StepRow, run_procedure

PROCEDURES: dict[str, Procedure] = {p.name: p for p in (initial.PROCEDURE, initial_ivf.PROCEDURE,
                                                        change_sho.PROCEDURE, pristine.PROCEDURE,
                                                        change_preprovisioned.PROCEDURE, renew_access.PROCEDURE,
                                                        firmware_update.PROCEDURE,
                                                        firmware_update.CHANGE_AFTER_UPDATE)}

__all__ = ["PROCEDURES", "Procedure", "RunOutcome", "StepRow", "run_procedure"]
