"""The settings of one ``gliorad serve`` instance (standard library only: the command line checks
them before anything heavy is imported)."""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from gliorad.errors import GlioradInputError

__all__ = ["ServeSettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Is ``host`` a loopback address (127.0.0.0/8, ::1) or ``localhost``?"""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    """What ``gliorad serve`` was told (see the command's help for each option).

    ``data`` None: a temporary folder, removed when the service stops. ``token`` None on a
    loopback address: no token; on any other address :meth:`checked` makes one.
    """

    bundle: Path
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data: Path | None = None
    token: str | None = None
    max_upload_mb: float = 1024.0
    max_unzipped_mb: float = 4096.0
    max_files: int = 10_000
    time_limit_s: float = 1800.0
    keep_hours: float = 24.0
    max_queue: int = 32
    threads: int | None = None

    @property
    def token_required(self) -> bool:
        return self.token is not None

    @property
    def threads_per_worker(self) -> int:
        """Torch threads of each prediction process (default: the cores shared out)."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)

    def checked(self) -> ServeSettings:
        """The settings validated (:class:`GlioradInputError` naming each bad option), with a
        generated token when the address is not a loopback one and none was given."""
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"--port {self.port}: expected a port number 1-65535")
        for name, value, lo in (("--workers", self.workers, 1), ("--max-files", self.max_files, 1),
                                ("--max-queue", self.max_queue, 1)):
            if value < lo:
                problems.append(f"{name} {value}: expected at least {lo}")
        for name, value in (("--max-upload-mb", self.max_upload_mb),
                            ("--max-unzipped-mb", self.max_unzipped_mb),
                            ("--time-limit", self.time_limit_s), ("--keep-hours", self.keep_hours)):
            if not value > 0:
                problems.append(f"{name} {value:g}: expected a positive number")
        if self.threads is not None and self.threads < 1:
            problems.append(f"--threads {self.threads}: expected at least 1")
        if self.token is not None and len(self.token) < 16:
            problems.append("--token: too short; expected at least 16 characters (or leave it "
                            "out and use the generated one)")
        if self.data is not None and self.data.exists() and not self.data.is_dir():
            problems.append(f"--data {self.data}: exists and is not a folder")
        if problems:
            raise GlioradInputError(problems)
        if self.token is None and not is_loopback(self.host):
            return replace(self, token=secrets.token_urlsafe(24))
        return self
