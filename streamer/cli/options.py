"""Option types that refuse a bad value at parse time, and a parser whose refusal is one line.

argparse calls each type with the text given; a :class:`argparse.ArgumentTypeError` becomes the
parser's error, which :class:`OneLineParser` prints as one line naming the command and the
option, then exits 2 (a usage error), before anything is read or written.
"""

from __future__ import annotations

import argparse
import errno
import math
import socket
import sys
from typing import NoReturn
from urllib.parse import urlsplit

from triplegain_core.errors import UserMistake

MAX_PORT = 65535


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (the usage stays in --help)."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: <message> (see <prog> --help)`` and exit 2."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: any free port)."""
    value = _integer(text)
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"port {value} is out of range: a port is 0 to {MAX_PORT}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: give 0 or more")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive: give 1 or more")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative: give 0 or more")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive: give a number above 0")
    return value


def websocket_url(text: str) -> str:
    """A ``ws://`` or ``wss://`` URL with a host."""
    return _url(text, ("ws", "wss"))


def http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host."""
    return _url(text, ("http", "https"))


def check_port_free(host: str, port_number: int, option: str) -> None:
    """Raise :class:`UserMistake` when ``host:port_number`` cannot be listened on (in use, not
    an address of this machine, unknown host); port 0 checks the host alone."""
    try:
        infos = socket.getaddrinfo(host, port_number, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserMistake(f"{option}: host {host!r} is unknown ({exc.strerror}): give an address"
                          " of this machine, e.g. 127.0.0.1") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As the servers themselves do (asyncio sets it on Unix): a port left in TIME_WAIT is free.
        if sys.platform != "win32":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserMistake(f"{option} {port_number}: the port is already in use on {host}: stop"
                                  f" what listens there or choose another {option}") from exc
            raise UserMistake(f"{option} {port_number}: cannot listen on {host} ({exc.strerror}):"
                              f" choose another {option} or --host") from exc


def _url(text: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(text)
    if parts.scheme not in schemes or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a {' or '.join(f'{scheme}://' for scheme in schemes)} URL with a host")
    return text


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value
