"""Procedures are the seeds' step lists: data the CLI and the pytest plugin both run.

A step is one function, named and numbered as in the seed. Some network operations carry
several seed steps at once (the VNO's attach is steps 1-6: one AT+CGATT=1, or one relayed
AKA); the step that starts such an operation is the group's leader, and the messages and
device commands recorded while it ran are handed to the seed step they belong to, by message
kind, in order. Each step then judges its own part, so a failure shows at the right step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from mcim_hil.record import FAILED, PASSED, SKIPPED, Record


class StepFailed(Exception):
    """A step's own check failed; the message says what the user would look at."""


@dataclass(frozen=True)
class SeedStep:
    number: int | str
    title: str
    entities: tuple[str, ...]
    action: Callable[[Any], str]
    kinds: tuple[str, ...] = ()        # message kinds / device commands that belong to this step
    leads: int = 0                     # a leader: how many following steps share its operation
    after_failure: bool = False        # runs even when an earlier step failed (status reports)


@dataclass(frozen=True)
class Procedure:
    name: str
    seed: str
    title: str
    steps: tuple[SeedStep, ...]

    def step(self, number: int | str) -> SeedStep:
        return next(s for s in self.steps if s.number == number)

    def after_step(self, number: int | str, then: Callable[[Any], None]) -> Procedure:
        """This procedure with ``then(ctx)`` run once step ``number`` has done its own work:
        a test's way to change the world between two seed steps (tamper, revoke, unplug)."""
        def wrapped(step: SeedStep) -> SeedStep:
            def action(ctx: Any) -> str:
                line = step.action(ctx)
                then(ctx)
                return line
            return replace(step, action=action)
        return replace(self, steps=tuple(wrapped(st) if st.number == number else st for st in self.steps))


@dataclass(frozen=True)
class StepRow:
    number: int | str
    entities: tuple[str, ...]
    title: str
    detail: str
    duration_s: float
    verdict: str


@dataclass
class RunOutcome:
    procedure: Procedure
    rows: list[StepRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.verdict == PASSED for r in self.rows)

    @property
    def failed_step(self) -> StepRow | None:
        return next((r for r in self.rows if r.verdict == FAILED), None)


def _event_key(event: dict) -> str:
    return event.get("kind") or event.get("command") or ""


def _span(events: Sequence[dict]) -> float:
    # a reply is recorded when it came back, its duration the round trip (network/bus.py)
    back = [e.get("type") == "message" and e.get("direction") in ("reply", "error") for e in events]
    starts = [e["started"] - (e.get("duration_s") or 0.0) * b for e, b in zip(events, back) if e.get("started")]
    ends = [e["started"] + (e.get("duration_s") or 0.0) * (not b) for e, b in zip(events, back) if e.get("started")]
    return max(ends) - min(starts) if starts else 0.0


def _split(events: list[dict], steps: Sequence[SeedStep]) -> dict[int | str, list[dict]]:
    """Hand each event to the latest step of the group whose kinds it matches (phases only go
    forward: a reply after the AKA began stays with the AKA)."""
    parts: dict[int | str, list[dict]] = {s.number: [] for s in steps}
    phase = 0
    for event in events:
        key = _event_key(event)
        for i, step in enumerate(steps):
            if i >= phase and any(key == k or key.startswith(k + "+") for k in step.kinds):
                phase = i
                break
        parts[steps[phase].number].append(event)
    return parts


def run_procedure(procedure: Procedure, ctx: Any, record: Record,
                  on_row: Callable[[StepRow], None] = lambda row: None) -> RunOutcome:
    """Run every step in order; after a failure only ``after_failure`` steps run, the rest are
    recorded as skipped. Returns the rows (also handed to ``on_row`` as they come)."""
    outcome = RunOutcome(procedure)
    for key, value in (("procedure", procedure.name), ("title", procedure.title), ("seed", procedure.seed)):
        record.meta.setdefault(key, value)   # reports name the procedure, whoever ran it
    failed = False
    steps = list(procedure.steps)
    shared: dict[int | str, list[dict]] = {}   # events handed down by a group leader
    i = 0
    while i < len(steps):
        step = steps[i]
        # a follower of a group that ran still judges its own part (the PVA's FAIL result went back)
        if failed and not step.after_failure and step.number not in shared:
            detail = "not run: an earlier step failed"
            record.skip_step(step.number, step.title, step.entities, "an earlier step failed", detail=detail)
            row = StepRow(step.number, step.entities, step.title, detail, 0.0, SKIPPED)
            outcome.rows.append(row)
            on_row(row)
            i += 1
            continue
        detail = ""
        handed = shared.pop(step.number, None)
        try:
            with record.step(step.number, step.title, step.entities) as rec:
                if handed is not None:
                    rec.events.extend(handed)
                detail = step.action(ctx)
                if step.leads:  # only a leader that ran hands its events down
                    group = steps[i:i + 1 + step.leads]
                    whole = list(rec.events)
                    parts = _split(whole, group)
                    state = getattr(ctx, "state", None)
                    if isinstance(state, dict):   # a follower may judge what another part carried
                        state["group_events"] = whole
                    rec.events[:] = parts[step.number]
                    shared.update({s.number: parts[s.number] for s in group[1:]})
        except Exception as exc:  # the step's verdict is recorded; the run goes on to report
            failed = True
            detail = str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
        if handed is not None or step.leads:
            rec.duration_s = _span(rec.events) if rec.events else rec.duration_s
        rec.detail = detail or ""  # the reports show what happened, as the row does
        row = StepRow(step.number, step.entities, step.title, detail or "", rec.duration_s or 0.0,
                      rec.verdict or FAILED)
        outcome.rows.append(row)
        on_row(row)
        i += 1
    return outcome


def describe_checks(checks: Iterable[Any]) -> str:
    failed = [c for c in checks if not c.passed]
    return "; ".join(f"{c.name}: {c.detail}" for c in failed)
