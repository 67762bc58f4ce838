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

Be the attacker on the path, too: ``Tap(target, tamper=[...])`` changes the traffic in flight.

    >>> flip = FlipBit("client→server", record=3, byte=10, bit=0)   # TLS 1.3: the message's record
    >>> with TLSServer(cred) as server, Tap(server, tamper=[flip]) as tap:     # doctest: +SKIP
    ...     report = connect(tap, trust=ca, send="pay alice $10")
    >>> report.diagnosis.key, tap.tampering                          # doctest: +SKIP
    ('bad_record_mac', [<TamperEvent #0 client→server: flipped bit 0 of byte 10 of record 3 …>])

The actions (:class:`FlipBit`, :class:`FlipBits`, :class:`Drop`, :class:`Replay`,
:class:`Truncate`, :class:`Delay`, :class:`Inject`) each name a direction and where to act:

* by **TLS record** (``record=3``: the fourth record in that direction, counting from 0). The tap
  then cuts that direction's stream into records by their 5-byte headers (type, version,
  length), holds a partial record until the rest arrives, and passes on whole records only;
* by **byte offset** (``offset=12``) in that direction's stream, across chunk boundaries: for
  plaintext, where there are no records.

Every action applies to each connection through the tap, counting from that connection's first
byte. What the tap did lands, in order, in ``tap.tampering`` (:class:`TamperEvent`: what, where,
the bytes before and after); it never prints. ``tap.capture`` keeps recording what the tap
*received*; :meth:`Tap.sent_bytes` gives what it passed on. Which record is which?
:func:`tls_records` lists a stream's records with what the wire reveals of each (TLS 1.3 hides
the real type of every encrypted record behind "application_data").

A tap without actions relays exactly as before. Subclasses may still override
:meth:`Tap._forward`, which every chunk passes through on its way (before the tampering).
"""

from __future__ import annotations

import atexit
import html
import ipaddress
import itertools
import math
import queue
import socket
import struct
import threading
import time
from dataclasses import KW_ONLY, dataclass, field, fields, replace
from typing import Iterable, Iterator, NamedTuple, Sequence, Union

from . import servers as _servers
from .servers import LOOPBACK_HOSTS, accept_clients, open_listener

__all__ = [
    "CLIENT_TO_SERVER",
    "SERVER_TO_CLIENT",
    "Capture",
    "Chunk",
    "Delay",
    "Drop",
    "FlipBit",
    "FlipBits",
    "Inject",
    "Match",
    "Replay",
    "Tap",
    "TapConnection",
    "TamperAction",
    "TamperEvent",
    "Truncate",
    "WireRecord",
    "hexdump",
    "running_taps",
    "stop_all_taps",
    "tls_records",
    "xor_mask",
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


# --- tampering: the attacker's actions -------------------------------------------------------

#: Outer record types (the first byte of each record's header).
CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data", 24: "heartbeat"}
_MAX_FRAGMENT = 2**14 + 2048  # the largest record fragment any TLS version allows
_MAX_DELAY = 60.0


def _whole(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _payload(name: str, value: object) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError(f"{name} must be bytes (or text), not {type(value).__name__}")
    if len(value) == 0:
        raise ValueError(f"{name} is empty: give at least one byte")
    return bytes(value)


def xor_mask(original: bytes | str, wanted: bytes | str) -> bytes:
    """The bits to flip to turn ``original`` into ``wanted``: their XOR, byte by byte.

    >>> xor_mask(b"$10", b"$90").hex(" ")
    '00 08 00'

    Without integrity protection, an attacker who knows (or guesses) what a message says can
    change it to anything of the same length this way, without reading or decrypting anything:
    XOR is how stream ciphers encrypt, too.
    """
    a = original.encode("utf-8") if isinstance(original, str) else bytes(original)
    b = wanted.encode("utf-8") if isinstance(wanted, str) else bytes(wanted)
    if len(a) != len(b):
        raise ValueError(f"a bit-flip keeps the length: {len(a)} bytes cannot become {len(b)} bytes")
    return bytes(x ^ y for x, y in zip(a, b))


class TamperAction:
    """What every action has: a ``direction``, and where it acts: a TLS record, a byte offset, or
    (a :class:`Delay` without either) every chunk."""

    direction: str

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def _check(self, record_name: str, offset_name: str, *, required: bool = True) -> None:
        self._set("direction", _direction(self.direction))
        record, offset = getattr(self, record_name), getattr(self, offset_name)
        if record is not None and offset is not None:
            raise ValueError(
                f"{type(self).__name__}: give {record_name}= (a TLS record) or {offset_name}= (a byte offset "
                "in the stream), not both"
            )
        if required and record is None and offset is None:
            raise ValueError(
                f"{type(self).__name__}: say where: {record_name}= (the record's index in that direction, "
                f"0 for the first) or {offset_name}= (a byte offset in that direction's stream)"
            )
        if record is not None:
            _whole(record_name, record)
        if offset is not None:
            _whole(offset_name, offset)

    @property
    def addressing(self) -> str | None:
        """``"record"``, ``"offset"``, or ``None`` (every chunk: a :class:`Delay` with no address)."""
        raise NotImplementedError

    def describe(self) -> str:
        """The action in words."""
        raise NotImplementedError

    def __repr__(self) -> str:
        parts = [repr(self.direction)]
        for f in fields(self)[1:]:  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(frozen=True, repr=False)
class FlipBit(TamperAction):
    """Flip one bit: bit ``bit`` (0 is the least significant) of byte ``byte`` of record ``record``
    (bytes 0–4 are the record header), or of the byte at stream offset ``offset``.

    >>> FlipBit("client→server", record=3, byte=10, bit=0)
    FlipBit('client→server', record=3, byte=10, bit=0)
    """

    direction: str
    _: KW_ONLY
    record: int | None = None
    byte: int | None = None
    bit: int = 0
    offset: int | None = None

    def __post_init__(self) -> None:
        self._check("record", "offset")
        if self.record is not None:
            if self.byte is None:
                raise ValueError("FlipBit: say which byte of the record: byte= (0–4 are the record header, 5 on its fragment)")
            _whole("byte", self.byte)
        elif self.byte is not None:
            raise ValueError("FlipBit: byte= counts inside a record; with offset= there is no record, so leave byte= out")
        if _whole("bit", self.bit) > 7:
            raise ValueError(f"bit must be 0–7 (a byte has 8 bits), not {self.bit}")

    @property
    def addressing(self) -> str:
        return "record" if self.record is not None else "offset"

    @property
    def mask(self) -> bytes:
        return bytes([1 << self.bit])

    @property
    def start(self) -> int:
        return self.byte if self.record is not None else self.offset  # type: ignore[return-value]

    def describe(self) -> str:
        where = f"byte {self.byte}{_header_field(self.byte)} of record {self.record}" if self.record is not None else f"the byte at offset {self.offset}"
        return f"flip bit {self.bit} of {where}, {self.direction}"


@dataclass(frozen=True, repr=False)
class FlipBits(TamperAction):
    """XOR ``mask`` into the bytes starting at byte ``byte`` of record ``record``, or at stream
    offset ``offset``: every 1 bit of the mask flips a bit. :func:`xor_mask` computes a mask.

    >>> FlipBits("client→server", offset=11, mask=xor_mask("1", "9"))
    FlipBits('client→server', mask=b'\\x08', offset=11)
    """

    direction: str
    _: KW_ONLY
    mask: bytes = b""
    record: int | None = None
    byte: int | None = None
    offset: int | None = None

    def __post_init__(self) -> None:
        self._check("record", "offset")
        if not isinstance(self.mask, (bytes, bytearray, memoryview)):
            raise ValueError(f"mask must be bytes, not {type(self.mask).__name__} (xor_mask(original, wanted) makes one)")
        self._set("mask", bytes(self.mask))
        if not any(self.mask):
            raise ValueError("mask has no 1 bits, so it flips nothing: xor_mask(original, wanted) makes one")
        if self.record is not None:
            if self.byte is None:
                raise ValueError("FlipBits: say where in the record the mask starts: byte= (0–4 are the record header)")
            _whole("byte", self.byte)
        elif self.byte is not None:
            raise ValueError("FlipBits: byte= counts inside a record; with offset= there is no record, so leave byte= out")

    @property
    def addressing(self) -> str:
        return "record" if self.record is not None else "offset"

    @property
    def start(self) -> int:
        return self.byte if self.record is not None else self.offset  # type: ignore[return-value]

    def describe(self) -> str:
        where = f"byte {self.byte} of record {self.record}" if self.record is not None else f"offset {self.offset}"
        return f"XOR the mask {self.mask.hex(' ')} into {len(self.mask)} byte(s) at {where}, {self.direction}"


@dataclass(frozen=True, repr=False)
class Drop(TamperAction):
    """Remove record ``record``, or ``length`` bytes at stream offset ``offset``, from the stream."""

    direction: str
    _: KW_ONLY
    record: int | None = None
    offset: int | None = None
    length: int | None = None

    def __post_init__(self) -> None:
        self._check("record", "offset")
        _span_length(self)

    @property
    def addressing(self) -> str:
        return "record" if self.record is not None else "offset"

    def describe(self) -> str:
        what = f"record {self.record}" if self.record is not None else f"{self.length} byte(s) at offset {self.offset}"
        return f"drop {what}, {self.direction}"


@dataclass(frozen=True, repr=False)
class Replay(TamperAction):
    """Send record ``record`` (or the ``length`` bytes at ``offset``) again, ``times`` more times,
    right after itself: as it went out, so after any flips."""

    direction: str
    _: KW_ONLY
    record: int | None = None
    offset: int | None = None
    length: int | None = None
    times: int = 1

    def __post_init__(self) -> None:
        self._check("record", "offset")
        _span_length(self)
        if _whole("times", self.times, 1) > 1000:
            raise ValueError(f"times must be at most 1000, not {self.times}")

    @property
    def addressing(self) -> str:
        return "record" if self.record is not None else "offset"

    def describe(self) -> str:
        what = f"record {self.record}" if self.record is not None else f"the {self.length} byte(s) at offset {self.offset}"
        again = "once more" if self.times == 1 else f"{self.times} more times"
        return f"replay {what} {again}, {self.direction}"


def _header_field(byte: int | None) -> str:
    """Bytes 0–4 of a record are its header: name the field an attacker would change."""
    if byte is None or byte > 4:
        return ""
    return (" (the header's content type)", " (the header's version)", " (the header's version)",
            " (the header's length)", " (the header's length)")[byte]


def _span_length(action: "Drop | Replay") -> None:
    if action.offset is not None:
        if action.length is None:
            raise ValueError(f"{type(action).__name__}: with offset= say how many bytes: length=")
        _whole("length", action.length, 1)
    elif action.length is not None:
        raise ValueError(f"{type(action).__name__}: length= goes with offset=; record= always means the whole record")


@dataclass(frozen=True, repr=False)
class Truncate(TamperAction):
    """Cut the stream: pass on records up to and including ``after_record`` (or the bytes before
    ``at_offset``), then send nothing more that way, and end it (a TCP FIN). That is a
    truncation attack: it removes, among the rest, the sender's close_notify."""

    direction: str
    _: KW_ONLY
    after_record: int | None = None
    at_offset: int | None = None

    def __post_init__(self) -> None:
        self._check("after_record", "at_offset")

    @property
    def addressing(self) -> str:
        return "record" if self.after_record is not None else "offset"

    def describe(self) -> str:
        where = f"after record {self.after_record}" if self.after_record is not None else f"at offset {self.at_offset}"
        return f"cut the stream {where}, {self.direction} (no more bytes, then a FIN)"


@dataclass(frozen=True, repr=False)
class Delay(TamperAction):
    """Hold the stream for ``seconds``: before record ``record``, before the byte at ``offset``,
    or, with neither, every chunk (each is passed on ``seconds`` after it arrived: added latency)."""

    direction: str
    seconds: float
    _: KW_ONLY
    record: int | None = None
    offset: int | None = None

    def __post_init__(self) -> None:
        self._check("record", "offset", required=False)
        seconds = self.seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise ValueError(f"seconds must be a number, not {seconds!r}")
        if not 0 < seconds <= _MAX_DELAY:
            raise ValueError(f"seconds must be more than 0 and at most {_MAX_DELAY:g}, not {seconds}")

    @property
    def addressing(self) -> str | None:
        if self.record is not None:
            return "record"
        return "offset" if self.offset is not None else None

    def describe(self) -> str:
        if self.record is not None:
            where = f"before record {self.record}"
        elif self.offset is not None:
            where = f"before offset {self.offset}"
        else:
            where = "every chunk"
        return f"hold {where} for {self.seconds:g} s, {self.direction}"


@dataclass(frozen=True, repr=False)
class Inject(TamperAction):
    """Insert ``data`` (bytes, or text as UTF-8) into the stream before record ``before_record``,
    or before the byte at ``at_offset`` (when that byte arrives)."""

    direction: str
    data: bytes
    _: KW_ONLY
    before_record: int | None = None
    at_offset: int | None = None

    def __post_init__(self) -> None:
        self._check("before_record", "at_offset")
        self._set("data", _payload("data", self.data))

    @property
    def addressing(self) -> str:
        return "record" if self.before_record is not None else "offset"

    def describe(self) -> str:
        where = f"before record {self.before_record}" if self.before_record is not None else f"at offset {self.at_offset}"
        return f"inject {len(self.data)} byte(s) {where}, {self.direction}"


def _actions(tamper: "TamperAction | Iterable[TamperAction] | None") -> tuple[TamperAction, ...]:
    if tamper is None:
        return ()
    items = (tamper,) if isinstance(tamper, TamperAction) else tuple(tamper)
    for item in items:
        if not isinstance(item, TamperAction):
            raise ValueError(
                f"tamper= takes actions (FlipBit, FlipBits, Drop, Replay, Truncate, Delay, Inject), not {item!r}"
            )
    for direction in DIRECTIONS:
        modes = {a.addressing for a in items if a.direction == direction} - {None}
        if len(modes) > 1:
            raise ValueError(
                f"address every action on {direction} the same way: by record= (a TLS stream, cut into records) "
                "or by offset= (any stream, byte by byte), not both"
            )
    return items


@dataclass(frozen=True, repr=False)
class TamperEvent:
    """One tampering that happened: ``what`` in words, on which ``connection`` and ``direction``,
    where (``record``, when addressed by record; ``offset`` in the stream as received), and the
    bytes concerned ``before`` and ``after`` (``after`` is empty for a drop; a flip shows only the
    changed bytes). ``time``: seconds since the tap started (not compared, not in the repr)."""

    connection: int
    direction: str
    action: TamperAction
    what: str
    record: int | None
    offset: int
    before: bytes
    after: bytes
    time: float = field(default=0.0, compare=False)

    @property
    def kind(self) -> str:
        """The action's class name: ``"FlipBit"``, ``"Drop"``, …"""
        return type(self.action).__name__

    def __repr__(self) -> str:
        return f"<TamperEvent #{self.connection} {self.direction}: {self.what}>"


# --- records on the wire ---------------------------------------------------------------------


@dataclass(frozen=True)
class WireRecord:
    """One TLS record as an observer on the wire sees it: where it is, its outer type, its length.

    ``index`` counts the records of one direction from 0 (what ``record=`` means in a tamper
    action); ``offset`` is where its header starts in that direction's stream; ``length`` is
    the fragment's length (the record is ``5 + length`` bytes); ``label`` says what the record
    carries, as far as the unencrypted bytes tell.
    """

    index: int
    offset: int
    content_type: int
    version: int
    length: int
    label: str

    @property
    def type_name(self) -> str:
        return CONTENT_TYPES.get(self.content_type, f"unknown type {self.content_type}")

    @property
    def size(self) -> int:
        return 5 + self.length

    @property
    def end(self) -> int:
        return self.offset + self.size

    def __repr__(self) -> str:
        return f"<WireRecord {self.index}: {self.type_name}, {self.size} bytes at offset {self.offset}: {self.label}>"


def _split_records(data: bytes) -> list[tuple[int, int, int, int]]:
    """(offset, content type, version, fragment length) of each whole record; stops at a partial one."""
    out, offset = [], 0
    while offset + 5 <= len(data):
        ctype, major, length = data[offset], data[offset + 1], int.from_bytes(data[offset + 3 : offset + 5], "big")
        if ctype not in CONTENT_TYPES or major != 3 or length > _MAX_FRAGMENT:
            raise ValueError(
                f"not a TLS record at offset {offset} (header {data[offset:offset + 5].hex(' ')}): "
                "is this stream plaintext? Address plaintext by offset=, not by record="
            )
        if offset + 5 + length > len(data):
            break
        out.append((offset, ctype, int.from_bytes(data[offset + 1 : offset + 3], "big"), length))
        offset += 5 + length
    return out


# TLS 1.3 suites → the length of their hash (the Finished message carries one HMAC of that size).
_TLS13_HASH = {0x1301: 32, 0x1302: 48, 0x1303: 32, 0x1304: 32, 0x1305: 32}


def _server_hello(server: bytes) -> tuple[bool, int | None]:
    """(is it TLS 1.3?, the cipher suite) from the ServerHello at the start of ``server``."""
    try:
        if len(server) < 5 or server[0] != 22 or server[5] != 2:
            return False, None
        body = server[9 : 5 + int.from_bytes(server[3:5], "big")]
        pos = 2 + 32
        pos += 1 + body[pos]  # session id
        suite = int.from_bytes(body[pos : pos + 2], "big")
        pos += 3
        end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            kind, size = int.from_bytes(body[pos : pos + 2], "big"), int.from_bytes(body[pos + 2 : pos + 4], "big")
            if kind == 43 and size == 2:  # supported_versions, as the server chose it
                return body[pos + 4 : pos + 6] == b"\x03\x04", suite
            pos += 4 + size
        return False, suite
    except IndexError:
        return False, None


def tls_records(source: "Capture | bytes", direction: str | None = None, *, connection: int = 0) -> list[WireRecord]:
    """The TLS records of one direction, labelled with what the wire reveals of each.

    ``source``: a :class:`Capture` (then ``direction`` is required and ``connection`` picks the
    connection) or one direction's bytes (then the labels say only the outer type: one direction
    alone does not tell which version was chosen). A record cut short at the end is left out;
    bytes that are not TLS records raise ``ValueError``.

    Labels. A record's first byte is its *outer* type: handshake, change_cipher_spec, alert or
    application_data. In TLS 1.2 the encrypted Finished that follows the ChangeCipherSpec is
    still a handshake record. In TLS 1.3 every encrypted record says application_data on the
    outside, whatever it carries: from a capture, the labels use the ServerHello (version,
    hash size) to pick out each side's Finished by its size, so the client's first record after
    its Finished is the first that can carry its data — in TLS 1.3 that is the *second*
    application_data record from the client.
    """
    if isinstance(source, Capture):
        if direction is None:
            raise ValueError("which direction? tls_records(capture, 'client→server') or 'server→client'")
        direction = _direction(direction)
        mine = source.for_connection(connection)
        data, server = mine.data(direction), mine.server_bytes
        tls13, suite = _server_hello(server)
    else:
        data = bytes(source)
        parts = _split_records(data)
        # One direction alone does not say which version the two sides chose: outer types only.
        labels = [_plain_label(data, o, t) for o, t, _, _ in parts]
        return [WireRecord(i, o, t, v, n, label) for i, ((o, t, v, n), label) in enumerate(zip(parts, labels))]
    parts = _split_records(data)
    labels: list[str] = []
    if tls13:
        hash_len = _TLS13_HASH.get(suite or 0)
        finished = hash_len + 4 + 1 + 16 if hash_len else None  # message + inner type + AEAD tag
        sides_finished = False
        for offset, ctype, version, length in parts:
            if ctype == 23 and not sides_finished:
                if length == finished:
                    sides_finished = True
                    labels.append("encrypted handshake: Finished (TLS 1.3 hides it as application_data)")
                else:
                    labels.append("encrypted handshake (TLS 1.3 hides it as application_data)")
            elif ctype == 23:
                labels.append(
                    "application data (or an encrypted alert)"
                    if direction == CLIENT_TO_SERVER
                    else "application data (or a session ticket, or an encrypted alert)"
                )
            elif ctype == 20:
                labels.append("change_cipher_spec (TLS 1.3: only for middlebox compatibility)")
            else:
                labels.append(_plain_label(data, offset, ctype))
    else:
        encrypted = False
        for offset, ctype, version, length in parts:
            if ctype == 20:
                encrypted = True
                labels.append("change_cipher_spec: encryption starts with the next record")
            elif ctype == 22 and encrypted:
                labels.append("encrypted handshake: Finished")
            elif ctype == 21 and encrypted:
                labels.append("encrypted alert")
            elif ctype == 23:
                labels.append("application data")
            else:
                labels.append(_plain_label(data, offset, ctype))
    return [WireRecord(i, o, t, v, n, label) for i, ((o, t, v, n), label) in enumerate(zip(parts, labels))]


_HANDSHAKE_NAMES = {1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 11: "Certificate",
                    12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone",
                    15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished"}


def _plain_label(data: bytes, offset: int, ctype: int) -> str:
    if ctype == 22 and offset + 5 < len(data):
        name = _HANDSHAKE_NAMES.get(data[offset + 5])
        return f"handshake: {name}" if name else "handshake"
    if ctype == 21 and offset + 7 <= len(data):
        return f"alert (level {data[offset + 5]}, description {data[offset + 6]})"
    return CONTENT_TYPES.get(ctype, f"type {ctype}")


# --- the tampering engine: one per direction of each connection ------------------------------

_CUT = object()  # yielded by the engine: end the stream here (a FIN), send nothing more


class _Tamperer:
    """Applies the tap's actions to one direction of one connection, as its bytes pass by.

    :meth:`feed` takes each chunk the tap received and yields what to send (bytes, or ``_CUT``);
    it runs in that direction's pump thread, so its waits hold up that direction only.
    """

    def __init__(self, tap: "Tap", connection: int, direction: str, actions: Sequence[TamperAction]) -> None:
        self.tap = tap
        self.connection = connection
        self.direction = direction
        self.actions = list(actions)
        self.every = [a for a in self.actions if a.addressing is None]
        self.by_record = any(a.addressing == "record" for a in self.actions)
        self.by_offset = any(a.addressing == "offset" for a in self.actions)
        self.buffer = bytearray()  # record mode: a partial record waiting for the rest
        self.index = 0  # record mode: the index of the next record
        self.position = 0  # stream offset of the next byte (as received)
        self.cut = False
        self.replays: dict[int, bytearray] = {id(a): bytearray() for a in self.actions if isinstance(a, Replay)}

    # Logging and waiting
    def _event(self, action: TamperAction, what: str, record: int | None, offset: int, before: bytes, after: bytes) -> None:
        self.tap._log_tampering(
            TamperEvent(self.connection, self.direction, action, what, record, offset, bytes(before), bytes(after))
        )

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.tap._stopping.wait(seconds)  # a stop interrupts: the tap then passes on what it holds

    # The bytes
    def feed(self, data: bytes, arrived: float) -> Iterator[object]:
        if self.cut:
            self.position += len(data)
            return  # after a cut nothing more goes that way (the capture still records it)
        for action in self.every:
            left = arrived + action.seconds - time.monotonic()  # type: ignore[attr-defined]
            self._wait(left)
            self._event(action, f"held {len(data)} byte(s) for {action.seconds:g} s", None,  # type: ignore[attr-defined]
                        self.position, data, data)
        if self.by_record:
            yield from self._records(data)
        elif self.by_offset:
            yield from self._bytes(data)
        else:
            self.position += len(data)
            yield data

    def finish(self) -> Iterator[object]:
        """The sender ended its stream: pass on a record left incomplete, untouched."""
        if self.buffer and not self.cut:
            rest, self.buffer = bytes(self.buffer), bytearray()
            yield rest

    def _records(self, data: bytes) -> Iterator[object]:
        self.buffer += data
        out = bytearray()
        while not self.cut and len(self.buffer) >= 5:
            ctype, major, length = self.buffer[0], self.buffer[1], int.from_bytes(self.buffer[3:5], "big")
            if ctype not in CONTENT_TYPES or major != 3 or length > _MAX_FRAGMENT:
                raise ValueError(
                    f"{self.direction} is not a stream of TLS records (offset {self.position}: "
                    f"{bytes(self.buffer[:5]).hex(' ')}), so record= cannot address it: use offset="
                )
            if len(self.buffer) < 5 + length:
                break
            record = bytes(self.buffer[: 5 + length])
            del self.buffer[: 5 + length]
            index, offset = self.index, self.position
            self.index += 1
            self.position += len(record)
            yield from self._one_record(index, offset, record, out)
        if self.cut:
            self.buffer.clear()
        if out:
            yield bytes(out)

    def _one_record(self, index: int, offset: int, record: bytes, out: bytearray) -> Iterator[object]:
        name = f"record {index} ({CONTENT_TYPES[record[0]]}, {len(record)} bytes)"
        for a in self.actions:
            if isinstance(a, Inject) and a.before_record == index:
                out += a.data
                self._event(a, f"injected {len(a.data)} byte(s) before {name}", index, offset, b"", a.data)
        for a in self.actions:
            if isinstance(a, Delay) and a.record == index:
                if out:
                    yield bytes(out)
                    out.clear()
                self._wait(a.seconds)
                self._event(a, f"held {name} for {a.seconds:g} s", index, offset, record, record)
        dropped = [a for a in self.actions if isinstance(a, Drop) and a.record == index]
        if dropped:
            self._event(dropped[0], f"dropped {name}", index, offset, record, b"")
        else:
            changed = bytearray(record)
            for a in self.actions:
                if isinstance(a, (FlipBit, FlipBits)) and a.record == index and a.start < len(record):
                    lo, hi = a.start, min(len(record), a.start + len(a.mask))
                    before = bytes(changed[lo:hi])
                    for k in range(lo, hi):
                        changed[k] ^= a.mask[k - lo]
                    self._event(a, _flip_words(a, before, bytes(changed[lo:hi]), f"of {name}", lo), index,
                                offset + lo, before, changed[lo:hi])
            sent = bytes(changed)
            out += sent
            for a in self.actions:
                if isinstance(a, Replay) and a.record == index:
                    out += sent * a.times
                    again = "once more" if a.times == 1 else f"{a.times} more times"
                    self._event(a, f"replayed {name} {again}", index, offset, sent, sent * (a.times + 1))
        for a in self.actions:
            if isinstance(a, Truncate) and a.after_record == index:
                if out:
                    yield bytes(out)
                    out.clear()
                yield _CUT
                self.cut = True
                self._event(a, f"cut the stream after {name}: nothing more passes, then a FIN", index,
                            offset + len(record), b"", b"")
                return

    def _bytes(self, data: bytes) -> Iterator[object]:
        start = self.position
        end = start + len(data)
        self.position = end
        buf = bytearray(data)
        for a in self.actions:  # flips first: what is dropped, replayed or sent is the changed bytes
            if isinstance(a, (FlipBit, FlipBits)):
                lo, hi = max(start, a.start), min(end, a.start + len(a.mask))
                if lo < hi:
                    before = bytes(buf[lo - start : hi - start])
                    for k in range(lo, hi):
                        buf[k - start] ^= a.mask[k - a.start]
                    after = bytes(buf[lo - start : hi - start])
                    if after != before:  # the mask may have only 0 bits on this chunk's part
                        self._event(a, _flip_words(a, before, after, "", lo), None, lo, before, after)
        drops = [(a.offset, a.offset + a.length, a) for a in self.actions if isinstance(a, Drop)]  # type: ignore[operator]
        for a in self.actions:
            if isinstance(a, Replay):
                lo, hi = max(start, a.offset), min(end, a.offset + a.length)  # type: ignore[operator]
                if lo < hi:
                    self.replays[id(a)] += buf[lo - start : hi - start]
        # What happens at a point: (position, 0 = after the byte before it / 1 = before it, order, action)
        points: list[tuple[int, int, int, TamperAction]] = []
        for n, a in enumerate(self.actions):
            if isinstance(a, Replay) and start < a.offset + a.length <= end:  # type: ignore[operator]
                points.append((a.offset + a.length, 0, n, a))  # type: ignore[operator]
            elif isinstance(a, Inject) and start <= a.at_offset < end:  # type: ignore[operator]
                points.append((a.at_offset, 1, n, a))  # type: ignore[arg-type]
            elif isinstance(a, Delay) and a.offset is not None and start <= a.offset < end:
                points.append((a.offset, 1, n, a))
            elif isinstance(a, Truncate) and start <= a.at_offset < end:  # type: ignore[operator]
                points.append((a.at_offset, 2, n, a))  # type: ignore[arg-type]
        points.sort(key=lambda p: (p[0], p[1], p[2]))
        out = bytearray()
        cursor = start

        def emit(lo: int, hi: int) -> None:
            k = lo
            while k < hi:
                covering = [(dlo, dhi, d) for dlo, dhi, d in drops if dlo <= k < dhi]
                if covering:
                    dlo, dhi, d = covering[0]
                    stop = min(hi, dhi)
                    self._event(d, f"dropped {stop - k} byte(s) at offset {k}", None, k, buf[k - start : stop - start], b"")
                    k = stop
                    continue
                nxt = min([dlo for dlo, _, _ in drops if k < dlo < hi] + [hi])
                out.extend(buf[k - start : nxt - start])
                k = nxt

        for position, _, _, a in points:
            emit(cursor, position)
            cursor = position
            if isinstance(a, Replay):
                again = bytes(self.replays[id(a)])
                out += again * a.times
                times = "once more" if a.times == 1 else f"{a.times} more times"
                self._event(a, f"replayed the {len(again)} byte(s) at offset {a.offset} {times}", None, a.offset,  # type: ignore[arg-type]
                            again, again * (a.times + 1))
            elif isinstance(a, Inject):
                out += a.data
                self._event(a, f"injected {len(a.data)} byte(s) at offset {position}", None, position, b"", a.data)
            elif isinstance(a, Delay):
                if out:
                    yield bytes(out)
                    out.clear()
                self._wait(a.seconds)
                self._event(a, f"held the stream at offset {position} for {a.seconds:g} s", None, position, b"", b"")
            elif isinstance(a, Truncate):
                if out:
                    yield bytes(out)
                    out.clear()
                yield _CUT
                self.cut = True
                self._event(a, f"cut the stream at offset {position}: nothing more passes, then a FIN", None, position, b"", b"")
                return
        emit(cursor, end)
        if out:
            yield bytes(out)


def _flip_words(action: "FlipBit | FlipBits", before: bytes, after: bytes, where: str, offset: int) -> str:
    change = f"{before.hex(' ')} → {after.hex(' ')}"
    if all(0x20 <= b < 0x7F for b in before + after):
        change += f" ({before.decode()!r} → {after.decode()!r})"
    if isinstance(action, FlipBit):
        place = f"byte {action.byte}{_header_field(action.byte)} {where}" if action.record is not None else f"the byte at offset {offset}"
        return f"flipped bit {action.bit} of {place}: {change}"
    place = f"byte(s) {action.byte}–{action.byte + len(before) - 1} {where}" if action.record is not None else f"offset {offset}"
    mask = bytes(x ^ y for x, y in zip(before, after))  # the part of the mask applied here
    return f"flipped bits (mask {mask.hex(' ')}) at {place}: {change}"


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
    wait for the target to accept each connection. ``tamper``: actions (:class:`FlipBit`,
    :class:`Drop`, …) applied to every connection; what they did lands in :attr:`tampering`.
    """

    def __init__(
        self,
        target: object,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 2.0,
        tamper: TamperAction | Iterable[TamperAction] | None = None,
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
        self.tamper: tuple[TamperAction, ...] = _actions(tamper)
        self._events: list[TamperEvent] = []
        self._sent: dict[tuple[int, str], bytearray] = {}  # what was passed on, where tampering acts
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

    @property
    def tampering(self) -> list[TamperEvent]:
        """Every tampering that happened so far, in order (copies): what, where, bytes before/after.

        An action that never found its target (a record that never came, a byte beyond the
        record's end) leaves no event.
        """
        with self._lock:
            return list(self._events)

    def sent_bytes(self, direction: str, connection: int = 0) -> bytes:
        """What the tap passed on in ``direction`` of ``connection``.

        Where tamper actions act on that direction, these are the bytes after tampering (they
        differ from ``capture``, which records what the tap received); elsewhere the tap passes on
        what it receives, so this is the capture's bytes.
        """
        direction = _direction(direction)
        with self._lock:
            if any(a.direction == direction for a in self.tamper):
                return bytes(self._sent.get((connection, direction), b""))
            return b"".join(c.data for c in self._chunks if c.connection == connection and c.direction == direction)

    def _log_tampering(self, event: TamperEvent) -> None:
        with self._lock:
            self._events.append(replace(event, time=self._now()))

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
        self._listener = open_listener(self.host, self.requested_port)
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
        tampering = f", tampering: {_plural(len(self.tamper), 'action')}" if self.tamper else ""
        return f"<Tap {self.name!r} {state}, {_plural(count, 'connection')}{tampering}>"

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
        accept_clients(self._listener, self._wake_r, self._stopping, self._accepted)

    def _accepted(self, sock: socket.socket, addr: tuple) -> None:
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
        actions = [a for a in self.tamper if a.direction == direction]
        tamperer = _Tamperer(self, relay.info.index, direction, actions) if actions else None
        # With added latency, read eagerly in another thread: each chunk must be held from the
        # moment it *arrived*, not from when the previous one was passed on (or delays add up).
        queued = self._eager_reader(src) if tamperer is not None and tamperer.every else None
        try:
            while True:
                if queued is not None:
                    data, arrived_at, error = queued.get()
                    if error is not None:
                        self._pass_on_reset(relay, src_side, error)
                        return
                else:
                    try:
                        data = src.recv(_CHUNK_SIZE)
                    except OSError as exc:
                        self._pass_on_reset(relay, src_side, exc)
                        return
                    arrived_at = time.monotonic()
                if not data:
                    if tamperer is not None and not self._send(relay, direction, dst, dst_side, tamperer.finish()):
                        return
                    self._pass_on_end(relay, src_side, dst)
                    return
                arrived = arrived_at
                with self._lock:
                    self._chunks.append(Chunk(direction, data, self._now(), relay.info.index))
                data = self._forward(relay.info.index, direction, data)
                if tamperer is not None:
                    if not self._send(relay, direction, dst, dst_side, tamperer.feed(data, arrived)):
                        return
                elif data:
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

    @staticmethod
    def _eager_reader(src: socket.socket) -> "queue.Queue[tuple[bytes, float, OSError | None]]":
        """Read ``src`` as fast as data comes, queueing each chunk with its arrival time."""
        chunks: queue.Queue[tuple[bytes, float, OSError | None]] = queue.Queue()

        def read() -> None:
            while True:
                try:
                    data = src.recv(_CHUNK_SIZE)
                except OSError as exc:
                    chunks.put((b"", time.monotonic(), exc))
                    return
                chunks.put((data, time.monotonic(), None))
                if not data:
                    return

        threading.Thread(target=read, name="tlslab-tap-reader", daemon=True).start()
        return chunks

    def _send(self, relay: _Relay, direction: str, dst: socket.socket, dst_side: str, pieces: Iterable[object]) -> bool:
        """Send what the tampering engine yields, in order; ``_CUT`` ends the stream (a FIN).

        False when sending failed (the reset is passed on): the pump must stop.
        """
        for piece in pieces:
            if piece is _CUT:
                _shutdown(dst, socket.SHUT_WR)
                continue
            if piece:
                try:
                    dst.sendall(piece)  # type: ignore[arg-type]
                except OSError as exc:
                    self._pass_on_reset(relay, dst_side, exc)
                    return False
                with self._lock:
                    self._sent.setdefault((relay.info.index, direction), bytearray()).extend(piece)  # type: ignore[arg-type]
        return True

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
