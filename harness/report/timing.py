"""When each step ran, so that every interval of time is counted once.

A step whose work happened inside another's (steps 2-5 of the initial procedure run inside
the module's attach, which step 6 stands for) is recorded after the fact: its events carry
the real times, its own start is when it was written down. Such a step's interval is the
span of its events; any other step's is its own start and duration. "Time in steps" is the
length of the union of those intervals, never more than the procedure took.
"""

from __future__ import annotations

from typing import Any, Iterable

Interval = tuple[float, float]

_SLACK_S = 1e-4   # an event starting this much before its step means the step was written afterwards


def event_interval(event: dict[str, Any]) -> Interval | None:
    """A message reply or error is recorded when it came back, its duration the round trip
    (network/bus.py); a device command when it was sent, its duration forward."""
    started = event.get("started")
    if not isinstance(started, (int, float)):
        return None
    duration = event.get("duration_s") or 0.0
    if event.get("type") == "message" and event.get("direction") in ("reply", "error"):
        return started - duration, started
    return started, started + duration


def _event_span(events: list[dict[str, Any]]) -> Interval | None:
    times = [t for t in (event_interval(e) for e in events) if t is not None]
    if not times:
        return None
    return min(t[0] for t in times), max(t[1] for t in times)


def step_interval(step: dict[str, Any]) -> Interval | None:
    """(start, end) of a step in epoch seconds, or None for a step that did not run."""
    span = _event_span(step.get("events") or [])
    started, duration = step.get("started"), step.get("duration_s")
    if span is not None and (started is None or span[0] < started - _SLACK_S):
        return span                        # recorded after the fact: its events tell when
    if started is None:
        return span
    return started, started + (duration or 0.0)


def union_length(intervals: Iterable[Interval | None]) -> float:
    """Seconds covered by at least one interval."""
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(i for i in intervals if i is not None):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


def time_in_steps(steps: list[dict[str, Any]]) -> float:
    return union_length(step_interval(s) for s in steps)


def enclosing_steps(steps: list[dict[str, Any]]) -> dict[str, str]:
    """Step number -> the number of the smallest other step whose interval holds it whole."""
    spans = {str(s["number"]): step_interval(s) for s in steps}
    found: dict[str, str] = {}
    for number, inner in spans.items():
        if inner is None or inner[1] - inner[0] <= 0 and not _has_events(steps, number):
            continue
        holders = [(outer[1] - outer[0], other) for other, outer in spans.items()
                   if other != number and outer is not None and outer[0] <= inner[0] and inner[1] <= outer[1]
                   and outer[1] - outer[0] > inner[1] - inner[0]]
        if holders:
            found[number] = min(holders)[1]
    return found


def _has_events(steps: list[dict[str, Any]], number: str) -> bool:
    return any(str(s["number"]) == number and s.get("events") for s in steps)


def is_seed_step(step: dict[str, Any]) -> bool:
    """A numbered step of the seed, not a check run around them ("after")."""
    number = step.get("number")
    return isinstance(number, int) or (isinstance(number, str) and number.isdecimal())
