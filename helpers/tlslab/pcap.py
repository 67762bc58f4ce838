"""Export a captured connection as a pcap file that Wireshark and tshark open and decrypt.

The capture only holds the bytes each side sent (and when). A pcap file holds network frames,
so this module wraps the bytes in made-up but consistent Ethernet, IPv4 and TCP headers: a TCP
three-way handshake, the data in segments with correct sequence and acknowledgement numbers,
then FIN in both directions, so Wireshark reassembles the TCP stream without complaint.

    >>> export = export_pcap(chunks, "handshake.pcap", keylog="keys.txt")   # doctest: +SKIP
    >>> export                                                            # doctest: +SKIP
    <PcapExport handshake.pcap (12 packets), key log handshake.keys.txt>
    >>> print(export.wireshark_command)                                   # doctest: +SKIP
    wireshark -r handshake.pcap -o tls.keylog_file:handshake.keys.txt

The server side gets port 443 by default, where Wireshark looks for TLS without being told.
The format is the classic libpcap one (https://wiki.wireshark.org/Development/LibpcapFileFormat):
a 24-byte file header, then per packet a 16-byte header and the frame.
"""

from __future__ import annotations

import struct
import sys
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .keylog import KEYLOG_LABELS, KeyLog
from .records import ClientHello, RecordError, capture_chunks, parse_handshake, parse_records

__all__ = ["PcapExport", "export_pcap", "pcap_bytes", "normalize_chunks"]

Chunk = tuple[str, float, bytes]  # (direction "client"/"server", seconds, bytes)

LINKTYPE_ETHERNET = 1
_ETHERTYPE_IPV4 = 0x0800
_TCP_FIN, _TCP_SYN, _TCP_PSH, _TCP_ACK = 0x01, 0x02, 0x08, 0x10
LOOPBACK_MSS = 65483  # Linux loopback: MTU 65536 minus IPv4 and TCP headers (with timestamps)


def normalize_chunks(source: Any) -> list[Chunk]:
    """Accept the shapes a capture comes in and return ``[(direction, time, bytes), …]``.

    ``source`` may be: a list of ``(direction, time, bytes)`` tuples; objects with
    ``direction``/``time``/``data`` attributes; anything with a ``chunks`` attribute holding
    either (a :class:`tlslab.wire.Capture` of one connection); or a ``(client_bytes,
    server_bytes)`` pair (no timing: the order is inferred from the TLS records, client first).
    """
    if isinstance(source, tuple) and len(source) == 2 and all(isinstance(s, (bytes, bytearray)) for s in source):
        return _chunks_from_streams(bytes(source[0]), bytes(source[1]))
    return capture_chunks(source)


def _chunks_from_streams(client: bytes, server: bytes) -> list[Chunk]:
    """Without timestamps: one chunk per TLS record, in the turn-taking order the parser infers."""
    try:
        ordered = parse_handshake(client, server, lenient=True).records
    except RecordError:
        ordered = []
    chunks: list[Chunk] = []
    covered = {"client": 0, "server": 0}
    for i, record in enumerate(ordered):
        side = record.direction or "client"
        chunks.append((side, i * 0.001, record.raw))
        covered[side] = record.end
    # Whatever did not parse as records still goes in, at the end of its direction.
    n = len(chunks)
    for side, data in (("client", client), ("server", server)):
        if covered[side] < len(data):
            chunks.append((side, (n + 1) * 0.001, data[covered[side] :]))
            n += 1
    return chunks


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's-complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(memoryview(data).cast("H"))  # native order; the byte swap is undone below
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    total = ~total & 0xFFFF
    if sys.byteorder == "little":
        total = ((total & 0xFF) << 8) | (total >> 8)
    return total


def _frame(src: tuple[bytes, int], dst: tuple[bytes, int], seq: int, ack: int, flags: int, payload: bytes, ident: int) -> bytes:
    """One Ethernet frame holding an IPv4 packet holding a TCP segment."""
    (src_ip, src_port), (dst_ip, dst_port) = src, dst
    tcp_header = struct.pack("!HHIIBBHHH", src_port, dst_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 6, len(tcp_header) + len(payload))
    tcp_sum = _checksum(pseudo + tcp_header + payload)
    tcp_header = tcp_header[:16] + struct.pack("!H", tcp_sum) + tcp_header[18:]
    total_length = 20 + len(tcp_header) + len(payload)
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total_length, ident & 0xFFFF, 0x4000, 64, 6, 0, src_ip, dst_ip)
    ip_header = ip_header[:10] + struct.pack("!H", _checksum(ip_header)) + ip_header[12:]
    ethernet = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + struct.pack("!H", _ETHERTYPE_IPV4)
    return ethernet + ip_header + tcp_header + payload


def pcap_bytes(
    chunks: Any,
    *,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    server: tuple[str, int] = ("127.0.0.1", 443),
    start: float | None = None,
    mss: int = LOOPBACK_MSS,
) -> bytes:
    """The pcap file's bytes for one TCP connection carrying ``chunks`` (see :func:`normalize_chunks`).

    ``start``: the wall-clock time of the first packet (default: now); the chunks' own times
    set the gaps between packets. Chunks longer than ``mss`` are cut into several segments.
    """
    items = normalize_chunks(chunks)
    if not 0 < mss <= 65495:
        raise ValueError("mss must be between 1 and 65495 bytes (an IPv4 packet holds at most 65535)")
    addr = {
        "client": (bytes(int(x) for x in client[0].split(".")), int(client[1])),
        "server": (bytes(int(x) for x in server[0].split(".")), int(server[1])),
    }
    t0 = items[0][1] if items else 0.0
    base = (_time.time() if start is None else start) - (t0 - 0.0003)  # the SYN, first, at `start`
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)]
    next_seq = {"client": 1000, "server": 5000}  # initial sequence numbers (any value will do)
    acked = dict(next_seq)  # how far each side's bytes have been acknowledged by the peer
    ident = 0

    def packet(when: float, side: str, flags: int, payload: bytes = b"") -> None:
        nonlocal ident
        other = "server" if side == "client" else "client"
        ack = next_seq[other] if flags & _TCP_ACK else 0
        frame = _frame(addr[side], addr[other], next_seq[side], ack, flags, payload, ident)
        ident += 1
        seconds = max(0.0, base + when)
        sec, usec = int(seconds), int(round((seconds % 1) * 1e6))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
        next_seq[side] += len(payload) + (1 if flags & (_TCP_SYN | _TCP_FIN) else 0)
        if flags & _TCP_ACK:
            acked[other] = next_seq[other]

    # The TCP three-way handshake, just before the first data.
    packet(t0 - 0.0003, "client", _TCP_SYN)
    packet(t0 - 0.0002, "server", _TCP_SYN | _TCP_ACK)
    packet(t0 - 0.0001, "client", _TCP_ACK)
    last = t0
    for side, when, data in items:
        other = "server" if side == "client" else "client"
        for i in range(0, len(data), mss):
            packet(when, side, _TCP_PSH | _TCP_ACK, data[i : i + mss])
            if next_seq[side] - acked[side] >= 32768:
                # The receiver acknowledges, as a real one would: without window scaling, more
                # than 64 KiB unacknowledged would look to Wireshark like a full window.
                packet(when, other, _TCP_ACK)
        last = max(last, when)
    # Both sides close: FIN, answered by the peer's FIN and a final ACK.
    packet(last + 0.0001, "client", _TCP_FIN | _TCP_ACK)
    packet(last + 0.0002, "server", _TCP_FIN | _TCP_ACK)
    packet(last + 0.0003, "client", _TCP_ACK)
    return b"".join(out)


@dataclass
class PcapExport:
    """Where the pcap and its key log were written, and how to open them."""

    pcap: Path
    keylog: Path | None
    packets: int
    server_port: int

    @property
    def tshark_options(self) -> list[str]:
        options = ["-r", str(self.pcap)]
        if self.keylog:
            options += ["-o", f"tls.keylog_file:{self.keylog}"]
        if self.server_port != 443:  # Wireshark expects TLS on 443; elsewhere it must be told
            options += ["-d", f"tcp.port=={self.server_port},tls"]
        return options

    @property
    def wireshark_command(self) -> str:
        return "wireshark " + " ".join(_quote(o) for o in self.tshark_options)

    @property
    def tshark_command(self) -> str:
        return "tshark " + " ".join(_quote(o) for o in self.tshark_options)

    def __repr__(self) -> str:
        keys = f", key log {self.keylog.name}" if self.keylog else ", no key log"
        return f"<PcapExport {self.pcap.name} ({self.packets} packets){keys}>"


def _quote(text: str) -> str:
    return text if all(c.isalnum() or c in "-_./:=,+" for c in text) else "'" + text.replace("'", "'\\''") + "'"


def export_pcap(
    capture: Any,
    path: str | Path,
    *,
    keylog: Any = None,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    server: tuple[str, int] = ("127.0.0.1", 443),
    start: float | None = None,
    mss: int = LOOPBACK_MSS,
) -> PcapExport:
    """Write ``capture`` as a pcap file at ``path``, and its key log beside it.

    ``keylog`` (a path, key log text, or a :class:`~tlslab.keylog.KeyLog`) is copied next to the
    pcap as ``<name>.keys.txt`` — only the lines of this connection when its ClientHello can be
    found, so the file gives away no other session's secrets.
    """
    path = Path(path)
    chunks = normalize_chunks(capture)
    data = pcap_bytes(chunks, client=client, server=server, start=start, mss=mss)
    path.write_bytes(data)
    packets = _count_packets(data)
    keylog_path = None
    if keylog is not None:
        keylog_path = path.with_suffix(".keys.txt")
        keylog_path.write_text(_keylog_text(keylog, chunks))
        keylog_path.chmod(0o600)  # secrets: readable by the owner only
    return PcapExport(path, keylog_path, packets, int(server[1]))


def _count_packets(data: bytes) -> int:
    count, pos = 0, 24
    while pos + 16 <= len(data):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        count += 1
    return count


def _keylog_text(keylog: Any, chunks: Sequence[Chunk]) -> str:
    """The key log lines for this capture's connection (all lines if its ClientHello is not found)."""
    if isinstance(keylog, KeyLog):
        lines = [
            f"{label} {s.client_random.hex()} {getattr(s, attr).hex()}"
            for s in keylog.values()
            for label, attr in KEYLOG_LABELS.items()
            if getattr(s, attr) is not None and label != "EARLY_EXPORTER_SECRET"
        ]
    else:
        if isinstance(keylog, bytes):
            text = keylog.decode("utf-8", "replace")
        elif isinstance(keylog, Path) or (isinstance(keylog, str) and "\n" not in keylog and Path(keylog).exists()):
            text = Path(keylog).read_text(errors="replace")
        else:
            text = str(keylog)
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    randoms = _client_randoms(chunks)
    if randoms:
        mine = [line for line in lines if len(line.split()) == 3 and line.split()[1].lower() in randoms]
        if mine:
            lines = mine
    return "".join(line + "\n" for line in lines)


def _client_randoms(chunks: Iterable[Chunk]) -> set[str]:
    client = b"".join(data for side, _, data in chunks if side == "client")
    try:
        records = parse_records(client, direction="client", lenient=True)
    except RecordError:
        return set()
    return {m.random.hex() for m in records.messages if isinstance(m, ClientHello)}
