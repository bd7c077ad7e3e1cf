"""What ``serve`` checks before it builds anything, so a refusal leaves nothing behind.

A busy port is found by binding it the way the server will (``SO_REUSEADDR``, every address
the host resolves to) and letting go at once; otherwise the telemetry store, spool folders
and managed vLLM servers would start up first and the bind error would come last, buried
in their output. A data directory is claimed with an advisory lock (``gateway.lock``, held
for the life of the process, released by the kernel when it exits), so a second gateway on
the same directory is refused with one line instead of chDB's "Cannot lock file …/status"
and a spool shared by two writers. The lock file also records the address the gateway serves
(``holder_url``), so commands on this machine find it whatever port ``serve --port`` chose.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

LOCK_NAME = "gateway.lock"
_held: list[int] = []  # lock descriptors this process keeps open until it exits


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails because something already listens there."""
    if port == 0:
        return False
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # the server's own bind reports an unknown host
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def claim_data_dir(path: Path, chdb_dir: str | None = None, url: str | None = None) -> str | None:
    """Take ``path``'s lock for this process; ``None`` when it is ours, else why not.

    ``chdb_dir``: the embedded store inside it, also refused while another process (a
    ``query`` or ``demo`` that took no lock) has it open. ``url``: where this process serves,
    recorded for ``holder_url``."""
    import fcntl

    lock = path / LOCK_NAME
    if path.is_dir():
        if lock.exists():
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                os.close(fd)
                return (f"the data directory {path} is in use by another gateway"
                        + (f" (pid {holder})" if holder else "") + "; stop it, or give this one --data-dir")
            os.close(fd)
        if chdb_dir is not None:
            from gateway.telemetry.clickhouse import chdb_dir_in_use

            if chdb_dir_in_use(chdb_dir):
                return (f"the embedded store {chdb_dir} is open in another process; stop it, "
                        "or give this gateway --data-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # under a file, unwritable, /proc …: one line, not a traceback
        return f"cannot use the data directory {path}: {exc.strerror or exc}"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # lost a race with another gateway starting at the same moment
        os.close(fd)
        return f"the data directory {path} is in use by another gateway; stop it, or give this one --data-dir"
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n{url or ''}\n".encode())
    _held.append(fd)
    return None


def holder_url(path: Path) -> str | None:
    """The address the gateway that holds ``path`` serves (as it recorded it); ``None`` when no
    running process holds it or it recorded none."""
    import fcntl

    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held: a gateway is running
            lines = _read_lines(fd)
            return lines[1] if len(lines) > 1 and lines[1] else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # a stale file: its gateway has exited
    finally:
        os.close(fd)


def _read_lines(fd: int) -> list[str]:
    try:
        return [line.strip() for line in os.pread(fd, 4096, 0).decode(errors="replace").splitlines()]
    except OSError:
        return []


def _read_pid(fd: int) -> str:
    lines = _read_lines(fd)
    return lines[0] if lines else ""
