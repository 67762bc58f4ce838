"""Be the eavesdropper: a TCP tap between a client and a server that records every byte.

    >>> from tlslab import CertificateAuthority, TLSServer, connect
    >>> ca = CertificateAuthority()
    >>> with TLSServer(ca.issue_server_cert("localhost")) as server, Tap(server) as tap:
    ...     report = connect(tap, trust=ca, send="password=hunter2")
    >>> tap.capture.contains(b"hunter2")          # over TLS: only ciphertext crossed the wire
    False
    >>> print(tap.capture.hex("client→server", limit=32))   # doctest: +SKIP
    00000000  16 03 01 02 00 01 00 01  fc 03 03 6a 1e 8e 94 c1  |...........j....|
    00000010  2f 0b 9a 7c 51 3c 02 65  5e 22 a8 0b 10 7e 5b 1d  |/..|Q<.e^"...~[.|
    … 485 more bytes (hex(limit=None) shows them all)

How it works. The tap listens on the loopback (port 0: the OS picks one). For each client that
connects, it opens its own connection to the target and relays bytes both ways, one thread per
direction, each reading a chunk from one side, recording it and writing it, unchanged, to the
other side. It passes on what TCP says, not only the bytes:

* a half-close (one side shuts down its write side) becomes a half-close on the other side, and
  the other direction keeps flowing until it closes too;
* a reset (one side aborts) becomes a reset on the other side (a close with ``SO_LINGER`` 0), so
  the peer sees ``ConnectionResetError``, not a clean end;
* a target that refuses the connection resets the client's connection (a refusal *is* a reset).

It never prints: what happened to each connection lands in ``tap.connections`` (``closed_by``:
``"client"``, ``"server"``, ``"reset"``, ``"refused"``, ``"stopped"``, ``"error"``).

Read ``tap.capture`` after the ``with`` block (or after ``tap.wait_idle()``): the last bytes of a
conversation may still be on their way through the tap when the client's call returns. Leaving
the ``with`` block stops the tap, which first forwards what it has already received.

Later chapters tamper with the traffic: every chunk passes through :meth:`Tap._forward` on its way.
"""

from __future__ import annotations

import atexit
import html
import ipaddress
import itertools
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, replace
from typing import Iterable, NamedTuple, Union

from . import servers as _servers
from .servers import LOOPBACK_HOSTS

__all__ = [
    "CLIENT_TO_SERVER",
    "SERVER_TO_CLIENT",
    "Capture",
    "Chunk",
    "Match",
    "Tap",
    "TapConnection",
    "hexdump",
    "running_taps",
    "stop_all_taps",
]

CLIENT_TO_SERVER = "client→server"
SERVER_TO_CLIENT = "server→client"
DIRECTIONS = (CLIENT_TO_SERVER, SERVER_TO_CLIENT)

# "→" is hard to type: these spellings mean the same direction.
_DIRECTION_NAMES = {
    CLIENT_TO_SERVER: CLIENT_TO_SERVER,
    "client->server": CLIENT_TO_SERVER,
    "client": CLIENT_TO_SERVER,
    SERVER_TO_CLIENT: SERVER_TO_CLIENT,
    "server->client": SERVER_TO_CLIENT,
    "server": SERVER_TO_CLIENT,
}

_CHUNK_SIZE = 65536

Needle = Union[bytes, bytearray, memoryview, str]


def _direction(direction: str) -> str:
    try:
        return _DIRECTION_NAMES[direction]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown direction {direction!r}; use CLIENT_TO_SERVER ('client→server' or 'client->server') "
            "or SERVER_TO_CLIENT ('server→client' or 'server->client')"
        ) from None


def _arrow(direction: str) -> str:
    return "→" if direction == CLIENT_TO_SERVER else "←"


# --- what the tap records ------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One piece of data as the tap read it from one side, before passing it on.

    ``time``: seconds since the tap started. ``connection``: 0 for the tap's first connection.
    Chunk boundaries are where TCP happened to deliver the bytes, not where the sender's
    writes began or ended.
    """

    direction: str
    data: bytes
    time: float
    connection: int

    def __repr__(self) -> str:
        head = self.data[:8].hex(" ") + (" …" if len(self.data) > 8 else "")
        return (
            f"<Chunk #{self.connection} {self.direction} {len(self.data):,} bytes "
            f"at {self.time * 1000:.1f} ms: {head}>"
        )


@dataclass
class TapConnection:
    """One client connection, as the tap saw it.

    ``closed_by`` says how it ended: ``"client"`` or ``"server"`` (that side closed first,
    cleanly), ``"reset"`` (``reset_by`` says which side aborted), ``"refused"`` (the tap could not
    reach the target), ``"stopped"`` (the tap was stopped) or ``"error"`` (see ``error``).
    ``None`` while the connection is open. Times are seconds since the tap started.
    """

    index: int
    client: tuple[str, int]
    opened: float
    target: tuple[str, int] | None = None
    closed: float | None = None
    closed_by: str | None = None
    reset_by: str | None = None
    error: str | None = None

    @property
    def open(self) -> bool:
        return self.closed_by is None

    def __repr__(self) -> str:
        if self.closed_by is None:
            state = "open"
        else:
            state = {
                "client": "closed by the client",
                "server": "closed by the server",
                "reset": f"reset by the {self.reset_by}",
                "refused": "refused: the target could not be reached",
                "stopped": "ended when the tap stopped",
            }.get(self.closed_by, "failed")
            if self.closed is not None:
                state += f" after {(self.closed - self.opened) * 1000:.1f} ms"
        return f"<TapConnection #{self.index} from {self.client[0]}:{self.client[1]} {state}>"


class Match(NamedTuple):
    """Where :meth:`Capture.find` found its needle.

    ``offset`` counts from the start of that connection's bytes in that direction:
    ``capture.for_connection(m.connection).data(m.direction)[m.offset:]`` starts with the needle.
    """

    direction: str
    offset: int
    connection: int


def hexdump(data: bytes, limit: int | None = 256) -> str:
    """A classic hex dump: offset, 16 bytes in hex, the same bytes as ASCII ('.' if unprintable).

    >>> print(hexdump(b"GET / HTTP/1.1\\r\\n"))
    00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|
    """
    shown = data if limit is None else data[:limit]
    lines = []
    for offset in range(0, len(shown), 16):
        row = shown[offset : offset + 16]
        hex_part = " ".join(f"{b:02x}" for b in row[:8]) + "  " + " ".join(f"{b:02x}" for b in row[8:])
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{offset:08x}  {hex_part:<48}  |{text}|")
    if len(data) > len(shown):
        lines.append(f"… {len(data) - len(shown):,} more bytes (hex(limit=None) shows them all)")
    return "\n".join(lines)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


class Capture:
    """What crossed the wire: the chunks in the order the tap read them, and the connections.

    A capture is a snapshot: it does not change when more traffic flows. ``client_bytes`` and
    ``server_bytes`` join all chunks of one direction (of all connections, in arrival order);
    :meth:`for_connection` picks out one connection's conversation.
    """

    def __init__(self, chunks: Iterable[Chunk] = (), connections: Iterable[TapConnection] = ()) -> None:
        self.chunks: list[Chunk] = list(chunks)
        self.connections: list[TapConnection] = list(connections)

    # The bytes
    def data(self, direction: str) -> bytes:
        """All bytes that went in ``direction`` (``"client→server"`` or ``"server→client"``)."""
        direction = _direction(direction)
        return b"".join(c.data for c in self.chunks if c.direction == direction)

    @property
    def client_bytes(self) -> bytes:
        """Everything the client sent (client→server)."""
        return self.data(CLIENT_TO_SERVER)

    @property
    def server_bytes(self) -> bytes:
        """Everything the server sent (server→client)."""
        return self.data(SERVER_TO_CLIENT)

    def _indexes(self) -> list[int]:
        seen = {c.index for c in self.connections} | {c.connection for c in self.chunks}
        return sorted(seen)

    def _streams(self) -> Iterable[tuple[int, str, bytes]]:
        """Each connection's bytes in each direction, never glued to another connection's."""
        for index in self._indexes():
            for direction in DIRECTIONS:
                data = b"".join(c.data for c in self.chunks if c.connection == index and c.direction == direction)
                if data:
                    yield index, direction, data

    # Looking for something
    def find(self, needle: Needle) -> Match | None:
        """Where ``needle`` first appears: connection by connection, client→server first; or None."""
        wanted = _needle(needle)
        for index, direction, data in self._streams():
            offset = data.find(wanted)
            if offset >= 0:
                return Match(direction, offset, index)
        return None

    def contains(self, needle: Needle) -> bool:
        """Did ``needle`` (bytes, or text as UTF-8) cross the wire, readable as is, either way?"""
        return self.find(needle) is not None

    def for_connection(self, index: int) -> "Capture":
        """Only connection ``index`` (0 is the tap's first connection)."""
        if index not in self._indexes():
            known = ", ".join(map(str, self._indexes())) or "none"
            raise IndexError(f"this capture has no connection {index} (it has: {known})")
        return Capture(
            (c for c in self.chunks if c.connection == index),
            (c for c in self.connections if c.index == index),
        )

    @property
    def errors(self) -> list[str]:
        """What went wrong, one line per connection that ended badly."""
        return [f"connection {c.index}: {c.error}" for c in self.connections if c.error]

    # Showing it
    def hex(self, direction: str | None = None, limit: int | None = 256) -> str:
        """A hex dump of the first ``limit`` bytes of each direction (``None``: both; every byte
        with ``limit=None``). With several connections or both directions, each part gets a title."""
        directions = DIRECTIONS if direction is None else (_direction(direction),)
        parts = [(i, d, data) for i, d, data in self._streams() if d in directions]
        if not parts:
            return "(nothing captured)"
        if len(parts) == 1:
            return hexdump(parts[0][2], limit)
        several = len({i for i, _, _ in parts}) > 1
        sections = []
        for index, d, data in parts:
            title = f"connection {index}, " if several else ""
            sections.append(f"{title}{d}: {_plural(len(data), 'byte')}\n{hexdump(data, limit)}")
        return "\n\n".join(sections)

    def __repr__(self) -> str:
        return (
            f"<Capture: {_plural(len(self._indexes()), 'connection')}, "
            f"{len(self.client_bytes):,} bytes {CLIENT_TO_SERVER}, {len(self.server_bytes):,} bytes {SERVER_TO_CLIENT}>"
        )

    def _repr_html_(self, max_rows: int = 40) -> str:
        rows = []
        for n, chunk in enumerate(self.chunks[:max_rows]):
            first = chunk.data[:16].hex(" ") + (" …" if len(chunk.data) > 16 else "")
            rows.append(
                f"<tr><td>{n}</td><td>{chunk.connection}</td>"
                f"<td title='{chunk.direction}'>client {_arrow(chunk.direction)} server</td>"
                f"<td style='text-align:right'>{chunk.time * 1000:.1f} ms</td>"
                f"<td style='text-align:right'>{len(chunk.data):,}</td>"
                f"<td style='font-family:monospace;text-align:left'>{html.escape(first)}</td></tr>"
            )
        if len(self.chunks) > max_rows:
            rows.append(f"<tr><td colspan='6'>… {len(self.chunks) - max_rows:,} more chunks</td></tr>")
        indexes = self._indexes()
        if len(indexes) > 1:
            dump = self.for_connection(indexes[0]).hex()
            note = f"<p>Hex dump of connection {indexes[0]}; <code>capture.for_connection(i).hex()</code> shows the others.</p>"
        else:
            dump, note = self.hex(), ""
        errors = "".join(f"<li>{html.escape(e)}</li>" for e in self.errors)
        return (
            "<div class='tlslab-capture'>"
            f"<b>{html.escape(repr(self)[1:-1])}</b>"
            "<table><tr><th>#</th><th>connection</th><th>direction</th><th>time</th><th>bytes</th>"
            "<th style='text-align:left'>first bytes</th></tr>"
            + "".join(rows)
            + "</table>"
            + (f"<ul>{errors}</ul>" if errors else "")
            + note
            + f"<pre style='font-size:11px'>{html.escape(dump)}</pre></div>"
        )


def _needle(needle: Needle) -> bytes:
    if isinstance(needle, str):
        needle = needle.encode("utf-8")
    if not isinstance(needle, (bytes, bytearray, memoryview)):
        raise TypeError(f"look for bytes or text, not {type(needle).__name__}")
    if len(needle) == 0:
        raise ValueError("look for at least one byte: an empty needle is found everywhere")
    return bytes(needle)


# --- the registry: taps, like servers, stop at exit and when a cell re-runs -----------------

_taps: dict[str, "Tap"] = {}
_taps_lock = threading.Lock()
_tap_names = itertools.count(1)


def stop_all_taps() -> None:
    """Stop every tap this process started."""
    with _taps_lock:
        taps = list(_taps.values())
    for tap in taps:
        tap.stop()


def running_taps() -> list[str]:
    """Names of the taps running now."""
    with _taps_lock:
        return sorted(name for name, tap in _taps.items() if tap.running)


atexit.register(stop_all_taps)
# servers.stop_all() stops taps too, once servers offers a hook for modules above it.
if hasattr(_servers, "_stop_hooks"):
    _servers._stop_hooks.append(stop_all_taps)


# --- socket helpers ------------------------------------------------------------------------


def _check_loopback(host: str) -> None:
    try:
        loopback = host in LOOPBACK_HOSTS or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"a tap relays on the loopback only (127.0.0.1 or ::1), not to {host!r}: "
            "the course never sends anything to the network."
        )


def _has_address(target: object) -> bool:
    try:
        return hasattr(target, "address")
    except RuntimeError:  # a server that is not running (yet): it has an address when it runs
        return True


def _shutdown(sock: socket.socket | None, how: int) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(how)
    except OSError:
        pass  # already closed, or never connected: nothing to pass on


def _abort(sock: socket.socket | None) -> None:
    """Make the next close a reset (RST), not a clean end (FIN): SO_LINGER on, 0 seconds."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class _Relay:
    """The live part of one connection: its two sockets and what its two pump threads share.

    The sockets are set before the pumps start; every other field is read and written under
    the tap's lock.
    """

    def __init__(self, info: TapConnection, client: socket.socket) -> None:
        self.info = info
        self.client = client
        self.server: socket.socket | None = None
        self.pumps = 0  # pump threads still running
        self.clean_ends: list[str] = []  # sides that closed cleanly, in order
        self.resetting = False  # a reset is being passed on: the EOFs and errors that follow are ours
        self.stopping = False  # the tap is stopping: likewise
        self.finished = False


# --- the tap -------------------------------------------------------------------------------


class Tap:
    """A TCP relay on the loopback that records everything passing between a client and ``target``.

    ``target``: anything with an ``.address`` (a server of ours, another tap) or a
    ``(host, port)`` pair on the loopback; its address is read for each new connection.
    Connect to ``tap.address`` instead of the target (``connect(tap, ...)`` does). ``name``: a
    tap started under the name of a running one replaces it. ``connect_timeout``: how long to
    wait for the target to accept each connection.
    """

    def __init__(
        self,
        target: object,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 2.0,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"a tap listens on the loopback only (127.0.0.1 or ::1), not {host!r}: "
                "the course never exposes anything to the network."
            )
        if isinstance(target, (tuple, list)):
            if not (len(target) == 2 and isinstance(target[1], int)):
                raise TypeError(f"target must be a (host, port) pair or have an .address, not {target!r}")
            _check_loopback(str(target[0]))
        elif not _has_address(target):
            raise TypeError(f"target must have an .address or be a (host, port) pair, not {target!r}")
        self.target = target
        self.name = name or f"tap-{next(_tap_names)}"
        self.host = "127.0.0.1" if host == "localhost" else host
        self.requested_port = port
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when a connection finishes
        self._chunks: list[Chunk] = []
        self._relays: list[_Relay] = []
        self._live = 0  # connections not finished yet
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._t0: float | None = None

    # What the tap saw
    @property
    def capture(self) -> Capture:
        """Everything recorded so far, as a snapshot (it will not change under you)."""
        with self._lock:
            return Capture(list(self._chunks), [replace(r.info) for r in self._relays])

    @property
    def connections(self) -> list[TapConnection]:
        """What happened to each connection so far (copies)."""
        return self.capture.connections

    @property
    def errors(self) -> list[str]:
        """One line per connection that was reset, refused or failed."""
        return self.capture.errors

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Wait until every connection the tap accepted has finished; False if ``timeout`` ran out."""
        with self._changed:
            return self._changed.wait_for(lambda: self._live == 0, timeout=timeout)

    # The extension point
    def _forward(self, connection: int, direction: str, data: bytes) -> bytes:
        """Every chunk passes through here, after it is recorded and before it is sent on.

        Return the bytes to send (``b""`` sends nothing). This tap changes nothing; a tampering
        tap overrides this method. It runs in the thread of that direction of that connection,
        so it may wait (``self._stopping.wait(seconds)``, which a stop interrupts) without
        holding up the other direction or other connections; an exception it raises ends the
        connection with ``closed_by="error"``.
        """
        return data

    # Lifecycle
    @property
    def running(self) -> bool:
        return self._accept_thread is not None and self._accept_thread.is_alive()

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError(f"tap {self.name!r} is not running; call start() or use 'with'")
        return self._listener.getsockname()[:2]

    @property
    def port(self) -> int:
        return self.address[1]

    def start(self) -> "Tap":
        if self.running:
            return self
        with _taps_lock:
            previous = _taps.get(self.name)
        if previous is not None and previous is not self:
            previous.stop()  # a re-run cell replaces its old tap
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.requested_port))
            listener.listen(256)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        if self._t0 is None:
            self._t0 = time.monotonic()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"tlslab-{self.name}", daemon=True)
        self._accept_thread.start()
        with _taps_lock:
            _taps[self.name] = self
        return self

    def stop(self) -> None:
        """Stop accepting, end open connections, free the port; returns within about a second.

        Bytes the tap has already received are still recorded and passed on before the
        connections close, so the capture is complete for every exchange that completed.
        """
        if self._accept_thread is None:
            return
        self._stopping.set()
        try:
            assert self._wake_w is not None
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._accept_thread.join(timeout=1.0)
        deadline = time.monotonic() + 1.0
        # Connections that are already closing (both ends hung up) get a moment to finish on
        # their own, so the record says who closed them rather than "stopped".
        with self._changed:
            self._changed.wait_for(lambda: self._live == 0, timeout=0.1)
        # Shutting down the read side wakes each pump: it reads what is already queued, passes
        # it on, then sees an end of stream. That is how the last bytes get into the capture.
        with self._lock:
            live = [r for r in self._relays if not r.finished]
            for relay in live:
                relay.stopping = True
                _shutdown(relay.client, socket.SHUT_RD)
                _shutdown(relay.server, socket.SHUT_RD)
        with self._changed:
            self._changed.wait_for(lambda: self._live == 0, timeout=0.4)
            # A pump still running is stuck writing to a peer that does not read: end it by force.
            for relay in live:
                if not relay.finished:
                    _shutdown(relay.client, socket.SHUT_RDWR)
                    _shutdown(relay.server, socket.SHUT_RDWR)
        while time.monotonic() < deadline:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                break
            threads[0].join(timeout=max(0.0, deadline - time.monotonic()))
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._listener = self._wake_r = self._wake_w = None
        self._accept_thread = None
        with _taps_lock:
            if _taps.get(self.name) is self:
                del _taps[self.name]

    def __enter__(self) -> "Tap":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.stop()
        except Exception:
            pass

    def __repr__(self) -> str:
        if self.running:
            try:
                target = "{}:{}".format(*self._target_address())
            except Exception:
                target = "(target not running)"
            state = f"on {self.host}:{self.port} → {target}"
        else:
            state = "stopped"
        with self._lock:
            count = len(self._relays)
        return f"<Tap {self.name!r} {state}, {_plural(count, 'connection')}>"

    def _repr_html_(self) -> str:
        return f"<p><code>{html.escape(repr(self))}</code></p>" + self.capture._repr_html_()

    # The threads
    def _now(self) -> float:
        assert self._t0 is not None
        return time.monotonic() - self._t0

    def _target_address(self) -> tuple[str, int]:
        # Read for each connection: a server that restarted on another port is still found.
        address = self.target if isinstance(self.target, (tuple, list)) else self.target.address  # type: ignore[attr-defined]
        host, port = str(address[0]), int(address[1])  # type: ignore[index]
        _check_loopback(host)
        return host, port

    def _spawn(self, target, *args: object, name: str) -> None:
        """Start a thread the tap keeps track of (stop() waits for it). Call with the lock held."""

        def run() -> None:
            try:
                target(*args)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.add(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r or self._stopping.is_set():
                        return
                    try:
                        sock, addr = self._listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return
                    sock.setblocking(True)
                    # A relay must not hold back small writes (Nagle): it would add its own delays.
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with self._lock:
                        info = TapConnection(index=len(self._relays), client=(addr[0], addr[1]), opened=self._now())
                        relay = _Relay(info, sock)
                        self._relays.append(relay)
                        self._live += 1
                        relay.pumps = 1
                        self._spawn(self._relay, relay, name=f"tlslab-{self.name}-{info.index}{_arrow(CLIENT_TO_SERVER)}")

    def _relay(self, relay: _Relay) -> None:
        """Connect to the target, then pump client→server here and server→client in a second thread."""
        try:
            address = self._target_address()
            with self._lock:
                relay.info.target = address
            upstream = socket.create_connection(address, timeout=self.connect_timeout)
        except (OSError, RuntimeError, ValueError) as exc:
            with self._lock:
                relay.info.closed_by = "refused"
                relay.info.error = f"could not reach the target: {type(exc).__name__}: {exc}"
                _abort(relay.client)  # the client learns it the way it would have: a reset
                relay.pumps = 0
                self._finish(relay)
            return
        try:
            upstream.settimeout(None)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the target already hung up: the pumps will find out and pass it on
        with self._lock:
            relay.server = upstream
            if relay.stopping or self._stopping.is_set():
                relay.stopping = True
                relay.pumps = 0
                self._finish(relay)
                return
            relay.pumps = 2
            self._spawn(
                self._pump, relay, SERVER_TO_CLIENT, name=f"tlslab-{self.name}-{relay.info.index}{_arrow(SERVER_TO_CLIENT)}"
            )
        self._pump(relay, CLIENT_TO_SERVER)

    def _pump(self, relay: _Relay, direction: str) -> None:
        """Read from one side, record, forward, write to the other side; until that side ends."""
        assert relay.server is not None
        if direction == CLIENT_TO_SERVER:
            src, dst, src_side, dst_side = relay.client, relay.server, "client", "server"
        else:
            src, dst, src_side, dst_side = relay.server, relay.client, "server", "client"
        try:
            while True:
                try:
                    data = src.recv(_CHUNK_SIZE)
                except OSError as exc:
                    self._pass_on_reset(relay, src_side, exc)
                    return
                if not data:
                    self._pass_on_end(relay, src_side, dst)
                    return
                with self._lock:
                    self._chunks.append(Chunk(direction, data, self._now(), relay.info.index))
                data = self._forward(relay.info.index, direction, data)
                if data:
                    try:
                        dst.sendall(data)
                    except OSError as exc:
                        self._pass_on_reset(relay, dst_side, exc)
                        return
        except Exception as exc:  # a bug or a hook's error: recorded, never printed or raised
            with self._lock:
                if relay.info.error is None:
                    relay.info.error = f"the tap failed: {type(exc).__name__}: {exc}"
            self._pass_on_reset(relay, None, exc)
        finally:
            with self._lock:
                relay.pumps -= 1
                if relay.pumps == 0:
                    self._finish(relay)

    def _pass_on_end(self, relay: _Relay, side: str, dst: socket.socket) -> None:
        """``side`` closed its write side: close ours toward the other side (a half-close)."""
        with self._lock:
            if relay.resetting:
                return  # this end of stream is our own wake-up call, not the peer's
            if not relay.stopping:
                relay.clean_ends.append(side)
            _shutdown(dst, socket.SHUT_WR)

    def _pass_on_reset(self, relay: _Relay, culprit: str | None, exc: BaseException) -> None:
        """``culprit`` aborted (or the tap failed): abort the other side too, and wake its pump."""
        with self._lock:
            if relay.resetting or relay.stopping:
                return  # we are already tearing this connection down: the error is our own doing
            relay.resetting = True
            if culprit is not None:
                relay.info.reset_by = culprit
                relay.info.error = f"the {culprit} reset the connection ({type(exc).__name__}: {exc})"
            if culprit != "client":
                _abort(relay.client)
            if culprit != "server":
                _abort(relay.server)
            # Shutting down the read sides wakes the other pump without sending anything (no FIN
            # that would arrive before our reset).
            _shutdown(relay.client, socket.SHUT_RD)
            _shutdown(relay.server, socket.SHUT_RD)

    def _finish(self, relay: _Relay) -> None:
        """Both pumps are done: close both sockets and say how the connection ended. Lock held."""
        for sock in (relay.client, relay.server):
            if sock is not None:
                sock.close()
        info = relay.info
        info.closed = self._now()
        if info.closed_by is None:
            if relay.resetting:
                info.closed_by = "error" if info.reset_by is None else "reset"
            elif relay.stopping and len(relay.clean_ends) < 2:
                info.closed_by = "stopped"
            elif relay.clean_ends:
                info.closed_by = relay.clean_ends[0]
            else:
                info.closed_by = "stopped"
        relay.finished = True
        self._live -= 1
        self._changed.notify_all()
