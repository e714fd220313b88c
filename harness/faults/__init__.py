"""The fault matrix: named fault points per seed step (bus, uicc, tpm), cases run on a bench
restored to a known state, and end-state checks done on the devices themselves."""

from .points import KINDS, FaultPoint, points_for
from .matrix import CaseResult, MatrixResult, run_matrix

__all__ = ["KINDS", "FaultPoint", "points_for", "CaseResult", "MatrixResult", "run_matrix"]
