"""A labgrid place as a bench: acquire it, take its serial port as the modem, release it after.

labgrid is the lab engine (coordinator, exporters, places, reservations); this module only uses
its client API (``labgrid.remote.client.start_session``), as ``labgrid-client`` does. The place's
NetworkSerialPort (ser2net, RFC 2217) is the module's AT port; the card is reached through the
module's AT+CSIM (labgrid cannot tunnel a PC/SC reader's USB).

A place the caller already holds (``labgrid-client -p NAME acquire``, or ``-p +`` with the
reservation token in LG_TOKEN) is used and left acquired; a place the harness acquired itself
is released afterwards, also on a failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from . import LabError

DEFAULT_COORDINATOR_PORT = 20408   # labgrid's gRPC coordinator
_CONNECT_TIMEOUT_S = 10.0
_RESOURCE_TIMEOUT_S = 10.0         # ser2net starts only once the place is acquired
SERIAL_CLASSES = ("NetworkSerialPort",)


@dataclass(frozen=True)
class LabgridPlace:
    """What a bench file says: ``labgrid: {coordinator: HOST:PORT, place: NAME}``.

    ``place`` may be ``+`` (the place of the reservation in $LG_TOKEN) or ``+TOKEN``.
    ``serial``: which NetworkSerialPort of the place is the module's AT port, by resource name
    (needed only when the place has several).
    """

    coordinator: str
    place: str
    serial: str | None = None


def serial_url(params: dict[str, Any]) -> str:
    """The pyserial URL of a NetworkSerialPort: RFC 2217 through ser2net, ``ign_set_control``
    because pyserial 3.5 otherwise times out waiting for ser2net 4's answer to SET_CONTROL."""
    host, port = params.get("host"), params.get("port")
    if params.get("protocol", "rfc2217") == "raw":
        return f"socket://{host}:{port}"
    return f"rfc2217://{host}:{port}?ign_set_control"


class PlaceLease:
    """Holds a labgrid place while a run uses it. ``acquire()`` then ``release()`` (or ``with``)."""

    def __init__(self, spec: LabgridPlace, *, where: str = "labgrid") -> None:
        self.spec = spec
        self.where = where
        self.session: Any = None
        self.place_name: str | None = None
        self.acquired_here = False
        self.modem_url: str | None = None
        self.resources: list[dict[str, Any]] = []
        self._old_sigterm: Any = None
        self._quiet: logging.Handler | None = None

    # -- the client session -------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            from labgrid.remote.client import start_session
        except ImportError as exc:
            raise LabError(f"{self.where}: labgrid is not installed ({exc.name}); scripts/setup.sh installs it") from None
        root = logging.getLogger()
        if not root.handlers:
            # labgrid's client reports a lost coordinator with logging.error(), which would
            # configure the root logger of the whole run; our error says it in one line instead
            self._quiet = logging.NullHandler()
            root.addHandler(self._quiet)
        loop = asyncio.new_event_loop()   # our own: never the caller's (pytest, a notebook)
        box: dict[str, Any] = {}

        def connect() -> None:
            try:
                asyncio.set_event_loop(loop)
                box["session"] = start_session(self.spec.coordinator, loop=loop)
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc
        # start_session waits for the coordinator without a limit of its own
        worker = threading.Thread(target=connect, name="labgrid-connect", daemon=True)
        worker.start()
        worker.join(_CONNECT_TIMEOUT_S)
        if worker.is_alive() or "error" in box:
            why = f"no answer in {_CONNECT_TIMEOUT_S:.0f} s" if worker.is_alive() else _reason(box["error"])
            raise LabError(f"{self.where}: cannot reach the labgrid coordinator {self.spec.coordinator}: {why}")
        self.session = box["session"]

    def _call(self, coroutine_function: Any, place: str) -> None:
        """One labgrid-client action on ``place``; its printed chatter is kept off our output."""
        self.session.args = argparse.Namespace(place=place, allow_unmatched=False, kick=False)
        with contextlib.redirect_stdout(io.StringIO()):
            self.session.loop.run_until_complete(
                asyncio.wait_for(coroutine_function(), timeout=_CONNECT_TIMEOUT_S))

    def _sync(self) -> None:
        self.session.loop.run_until_complete(
            asyncio.wait_for(self.session.sync_with_coordinator(), timeout=_CONNECT_TIMEOUT_S))

    # -- acquire / release --------------------------------------------------------------------

    def acquire(self) -> PlaceLease:
        from labgrid.remote.client import Error as ClientError
        try:
            self._connect()
            try:
                place = self.session.get_place(self.spec.place)
            except ClientError as exc:
                raise LabError(f"{self.where}: place {self.spec.place!r} on {self.spec.coordinator}: {_reason(exc)}") from None
            self.place_name = place.name
            me = f"{self.session.gethostname()}/{self.session.getuser()}"
            if place.acquired and place.acquired != me and me not in place.allowed:
                raise LabError(f"{self.where}: place {place.name} on {self.spec.coordinator} is acquired by "
                               f"{place.acquired}")
            if not place.acquired:
                try:
                    self._call(self.session.acquire, place.name)
                except (ClientError, asyncio.TimeoutError) as exc:
                    raise LabError(f"{self.where}: cannot acquire place {place.name} on "
                                   f"{self.spec.coordinator}: {_reason(exc)}") from None
                self.acquired_here = True
                self._guard_sigterm()
            self._take_resources()
        except BaseException:
            self.release()
            raise
        return self

    def _take_resources(self) -> None:
        from labgrid.remote.client import Error as ClientError
        deadline = time.monotonic() + _RESOURCE_TIMEOUT_S
        while True:
            self._sync()
            place = self.session.get_place(self.place_name)
            try:
                found = self.session.get_target_resources(place)
            except ClientError as exc:
                raise LabError(f"{self.where}: place {self.place_name}: {exc}") from None
            serials = {name: entry for (name, cls), entry in found.items() if cls in SERIAL_CLASSES
                       and (self.spec.serial is None or name == self.spec.serial)}
            ready = {name: e for name, e in serials.items() if e.avail and e.args.get("port")}
            if len(serials) > 1 and self.spec.serial is None:
                raise LabError(f"{self.where}: place {self.place_name} has {len(serials)} serial ports "
                               f"({', '.join(sorted(serials))}): name the module's in labgrid.serial")
            if serials and len(ready) == len(serials):
                break
            if time.monotonic() > deadline:
                what = f"no NetworkSerialPort{' ' + repr(self.spec.serial) if self.spec.serial else ''}" \
                    if not serials else "its serial port did not become available"
                raise LabError(f"{self.where}: place {self.place_name} on {self.spec.coordinator}: {what}")
            time.sleep(0.1)
        (entry,) = ready.values()
        self.modem_url = serial_url(entry.args)
        self.resources = [{"name": name, "class": cls, "path": _path_of(place, name, cls),
                           "params": {k: v for k, v in sorted(e.args.items()) if k != "extra"}}
                          for (name, cls), e in sorted(found.items())]

    def release(self) -> None:
        """Release the place if the harness acquired it; close the client session either way."""
        if self.session is None:
            self._unquiet()
            return
        try:
            if self.acquired_here and self.place_name is not None:
                self._call(self.session.release, self.place_name)
                self.acquired_here = False
        finally:
            self._restore_sigterm()
            session, self.session = self.session, None
            loop = session.loop
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.wait_for(session.stop(), timeout=_CONNECT_TIMEOUT_S))
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.wait_for(session.close(), timeout=_CONNECT_TIMEOUT_S))
            loop.close()
            self._unquiet()

    def _unquiet(self) -> None:
        if self._quiet is not None:
            logging.getLogger().removeHandler(self._quiet)
            self._quiet = None

    def describe(self) -> dict[str, Any]:
        """For run.json and the JUnit properties: the place, who acquired it, its resources."""
        return {"coordinator": self.spec.coordinator, "place": self.place_name,
                "acquired_by": "harness" if self.acquired_here else "caller",
                "modem_port": self.modem_url, "resources": self.resources}

    # -- SIGTERM: a run that is told to stop still gives the place back ---------------------------

    def _guard_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._old_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    def __enter__(self) -> PlaceLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"PlaceLease({self.spec.place!r} on {self.spec.coordinator})"


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)   # unwinds the run: the place is released on the way out


def _path_of(place: Any, name: str, cls: str) -> str:
    for path in place.acquired_resources:
        exporter, group, rcls, rname = path
        if rcls == cls and (rname == name or (place.getmatch(path) and place.getmatch(path).rename == name)):
            return f"{exporter}/{group}/{rcls}/{rname}"
    return f"*/*/{cls}/{name}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first[len("Error: "):] if first.startswith("Error: ") else first


def coordinator_address(text: str) -> str:
    """HOST[:PORT] as labgrid takes it (the port defaults to labgrid's 20408)."""
    return text if ":" in text.rsplit("]", 1)[-1] else f"{text}:{DEFAULT_COORDINATOR_PORT}"

