"""A real CalDAV server for the calendar tests: Radicale, as a child process on a free port of 127.0.0.1.

Storage lives in the test's temporary folder; one user logs in with a plain-text htpasswd entry (and no
delay after a wrong password, so that the wrong-password test stays fast). ``make_calendar`` creates a
fresh calendar collection per test, read back with the ``caldav`` client itself.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from caldav.davclient import DAVClient

from tests.support.process import free_port

USER = "alice"
PASSWORD = "correct horse battery staple"


class Radicale:
    """``python -m radicale`` with a config file of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.user, self.password = USER, PASSWORD
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.root / "users").write_text(f"{self.user}:{self.password}\n")
        config = self.root / "config"
        config.write_text(
            "[server]\n"
            f"hosts = 127.0.0.1:{self.port}\n"
            "[auth]\n"
            "type = htpasswd\n"
            f"htpasswd_filename = {self.root / 'users'}\n"
            "htpasswd_encryption = plain\n"
            "delay = 0\n"
            "[rights]\n"
            "type = owner_only\n"
            "[storage]\n"
            f"filesystem_folder = {self.root / 'collections'}\n"
            "[web]\n"
            "type = none\n"
            "[logging]\n"
            "level = warning\n"
        )
        log = (self.root / "radicale.log").open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(config)],
                                        stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"radicale exited with {self.process.returncode}: "
                                   + (self.root / "radicale.log").read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("radicale did not start within 15 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def client(self, password: str | None = None) -> DAVClient:
        """A ``caldav`` client logged in as the test user (with ``password`` instead, when given)."""
        return DAVClient(url=self.url, username=self.user, password=password or self.password, timeout=10)

    def make_calendar(self, name: str | None = None) -> str:
        """Create a calendar collection; returns its display name (unique per call by default)."""
        name = name or f"cal-{uuid.uuid4().hex[:8]}"
        with self.client() as client:
            client.principal().make_calendar(name=name, cal_id=name)
        return name

    def events(self, calendar: str) -> list[dict[str, object]]:
        """The VEVENTs in calendar ``calendar``, read straight from the server: uid, summary, dtstart, dtend,
        location."""
        with self.client() as client:
            found = client.principal().calendar(name=calendar).events()
            rows: list[dict[str, object]] = []
            for resource in found:
                component = resource.get_icalendar_component()
                rows.append({"uid": str(component["uid"]), "summary": str(component["summary"]),
                             "dtstart": component["dtstart"].dt, "dtend": component["dtend"].dt,
                             "location": str(component["location"]) if "location" in component else None})
            return rows


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Radicale]:
    """A running Radicale server, stopped at the end of the module."""
    server = Radicale(tmp_path_factory.mktemp("radicale"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
