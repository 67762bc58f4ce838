"""tlslab.pcap: the file's structure, and tshark's dissection and decryption beside ours."""

from __future__ import annotations

import re
import struct
import subprocess

import pytest
from _capture import SCENARIOS, record_session
from _tools import require_tool

from tlslab.decrypt import decrypt_session
from tlslab.pcap import export_pcap, normalize_chunks, pcap_bytes
from tlslab.records import Certificate, parse_handshake


def read_pcap(data: bytes) -> list[tuple[float, bytes]]:
    """(time, frame) per packet of a classic little-endian pcap file."""
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)
    packets, pos = [], 24
    while pos < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        assert incl == orig
        packets.append((sec + usec / 1e6, data[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    assert pos == len(data)
    return packets


def ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_pcap_frames_carry_each_stream_with_consistent_tcp(tmp_path):
    session = record_session("tls13-aes256")
    packets = read_pcap(pcap_bytes(session.chunks, start=1_700_000_000.0, mss=300))
    streams = {50000: b"", 443: b""}
    next_seq: dict[int, int] = {}
    flags_seen = []
    for when, frame in packets:
        assert frame[12:14] == b"\x08\x00"  # IPv4 in Ethernet
        ip, tcp_start = frame[14:34], 34
        assert ones_complement_sum(ip) == 0xFFFF  # the IP header checksum holds
        total = int.from_bytes(ip[2:4], "big")
        segment = frame[tcp_start : 14 + total]
        src, dst, seq, ack, offset, flags = struct.unpack_from("!HHIIBB", segment)
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(segment))
        assert ones_complement_sum(pseudo + segment) == 0xFFFF  # and the TCP checksum
        payload = segment[(offset >> 4) * 4 :]
        if src in next_seq:
            assert seq == next_seq[src], "each segment starts where the previous one ended"
        next_seq[src] = seq + len(payload) + (1 if flags & 0x03 else 0)
        streams[src] += payload
        flags_seen.append(flags)
        assert when >= 1_700_000_000.0
    assert streams[50000] == session.client_bytes and streams[443] == session.server_bytes
    assert flags_seen[:3] == [0x02, 0x12, 0x10] and flags_seen[-3:] == [0x11, 0x11, 0x10]  # SYN … FIN


def test_chunk_shapes_are_accepted():
    session = record_session("tls12-rsa")
    from_streams = normalize_chunks((session.client_bytes, session.server_bytes))
    assert b"".join(c for d, _, c in from_streams if d == "client") == session.client_bytes
    assert from_streams[0][0] == "client" and from_streams[1][0] == "server"

    class Chunk:
        def __init__(self, direction, time, data):
            self.direction, self.time, self.data = direction, time, data

    class Capture:
        chunks = [Chunk(d, t, c) for d, t, c in session.chunks]

    assert normalize_chunks(Capture()) == session.chunks
    with pytest.raises(ValueError, match="direction"):
        normalize_chunks([("sideways", 0.0, b"x")])


def test_export_writes_the_pcap_and_only_this_sessions_keys(tmp_path):
    session, other = record_session("tls13-aes128"), record_session("tls13-chacha")
    export = export_pcap(session.chunks, tmp_path / "one.pcap", keylog=session.keylog + other.keylog)
    assert export.pcap.exists() and export.keylog == tmp_path / "one.keys.txt"
    assert export.keylog.stat().st_mode & 0o777 == 0o600
    random = parse_handshake(session.client_bytes, session.server_bytes).client_hello.random.hex()
    lines = export.keylog.read_text().splitlines()
    assert len(lines) == 5 and all(line.split()[1] == random for line in lines)
    assert export.tshark_command == f"tshark -r {export.pcap} -o tls.keylog_file:{export.keylog}"
    assert re.fullmatch(r"<PcapExport one.pcap \(\d+ packets\), key log one.keys.txt>", repr(export))


# --- tshark beside us ---------------------------------------------------------------------------

FIELDS = [
    "tcp.srcport",
    "tls.record.content_type",
    "tls.handshake.type",
    "tls.handshake.extensions_server_name",
    "tls.handshake.ciphersuite",
    "tls.handshake.extension.type",
    "tls.handshake.certificate",
    "data.data",
]


def tshark(options: list[str], fields: list[str] = FIELDS, *extra: str) -> list[dict[str, list[str]]]:
    """One dict per frame: field → its values (tshark joins repeated values with commas)."""
    args = [require_tool("tshark"), *options, "--disable-protocol", "http", "-T", "fields", "-E", "separator=|"]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run([*args, *extra], capture_output=True, text=True, timeout=120, check=True).stdout
    rows = []
    for line in out.splitlines():
        values = line.split("|")
        rows.append({name: [v for v in value.split(",") if v] for name, value in zip(fields, values)})
    return rows


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_tshark_reads_and_decrypts_what_we_do(name, tmp_path):
    require_tool("tshark")
    session = record_session(name)
    ours = decrypt_session(session.timed("client"), session.timed("server"), keylog=session.keylog)
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    export = export_pcap(session.chunks, tmp_path / f"{name}.pcap", keylog=session.keylog)
    rows = tshark(export.tshark_options)
    side = {"50000": "client", "443": "server"}

    # The ClientHello: SNI, offered suites, extension list.
    hello_rows = [r for r in rows if r["tls.handshake.type"][:1] == ["1"]]
    first = hello_rows[0]
    assert first["tls.handshake.extensions_server_name"] == [hs.client_hello.server_name]
    assert first["tls.handshake.ciphersuite"] == [f"0x{c:04x}" for c in hs.client_hello.cipher_suites]
    assert first["tls.handshake.extension.type"] == [str(e.type) for e in hs.client_hello.extensions]
    # The ServerHello's suite.
    suite = next(r["tls.handshake.ciphersuite"][0] for r in rows if "2" in r["tls.handshake.type"] and r["tcp.srcport"] == ["443"])
    assert suite == f"0x{hs.server_hello.cipher_suite:04x}"
    for direction in ("client", "server"):
        mine = [r for r in rows if side.get(r["tcp.srcport"][0] if r["tcp.srcport"] else "") == direction]
        # The record layer, record by record: the content types (for TLS 1.3, the real ones, found
        # inside the encryption: on the wire every encrypted record says application_data).
        assert [int(t) for r in mine for t in r["tls.record.content_type"]] == [
            rec.content_type for rec in ours.records if rec.direction == direction
        ]
        # Every handshake message, the encrypted ones included (both tools decrypted them).
        types = [int(t) for r in mine for t in r["tls.handshake.type"]]
        assert types == [m.msg_type for m in ours.messages if m.direction == direction]
        # The decrypted application data.
        data = bytes.fromhex("".join(v for r in mine for v in r["data.data"]))
        assert data == ours.application_data(direction) == session.sent
    # The certificate chains (the server's, and the client's in mutual TLS), as DER.
    chains = [c.der.hex() for m in ours.messages if isinstance(m, Certificate) for c in m.certificates]
    assert [v for r in rows for v in r["tls.handshake.certificate"]] == chains


def test_tshark_sees_a_clean_tcp_stream(tmp_path):
    require_tool("tshark")
    session = record_session("tls12-ecdhe-gcm")
    export = export_pcap(session.chunks, tmp_path / "clean.pcap", keylog=session.keylog, mss=200)
    problems = tshark(export.tshark_options, ["frame.number", "_ws.expert.message"], "-Y", "_ws.malformed || tcp.analysis.flags || _ws.expert.severity >= 6291456")
    assert problems == []


@pytest.mark.parametrize("name", ["tls12-rsa", "tls12-rsa-aes256"])
def test_tshark_decrypts_static_rsa_with_the_server_key_too(name, tmp_path):
    require_tool("tshark")
    session = record_session(name)
    key = tmp_path / "server.key"
    key.write_bytes(session.server_key.key_pem())
    export = export_pcap(session.chunks, tmp_path / "rsa.pcap")  # no key log at all
    rows = tshark([*export.tshark_options, "-o", f'uat:rsa_keys:"{key}",""'], ["tcp.srcport", "data.data"])
    theirs = bytes.fromhex("".join(v for r in rows if r["tcp.srcport"] == ["443"] for v in r["data.data"]))
    ours = decrypt_session(session.client_bytes, session.server_bytes, server_key=session.server_key)
    assert theirs == ours.server_data == session.sent
