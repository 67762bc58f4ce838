"""The tap's tamper hooks: real sockets through a real tap (no mocks).

Plaintext streams are tampered by byte offset; streams of TLS records by record. Record
addressing is tested twice: on hand-made records sent over plain TCP (so every byte, and where
the chunks break, is under the test's control) and on real TLS handshakes.
"""

from __future__ import annotations

import queue
import re
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlslab.client import connect
from tlslab.pki import CertificateAuthority, Credential
from tlslab.servers import ServerConnection, TCPServer, TLSServer
from tlslab.wire import (
    CLIENT_TO_SERVER as C,
    SERVER_TO_CLIENT as S,
    Delay,
    Drop,
    FlipBit,
    FlipBits,
    Inject,
    Replay,
    Tap,
    TamperEvent,
    Truncate,
    WireRecord,
    tls_records,
    xor_mask,
)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("Tamper Test CA")


@pytest.fixture(scope="module")
def cred(ca: CertificateAuthority) -> Credential:
    return ca.issue_server_cert("localhost", "127.0.0.1")


@pytest.fixture
def no_leftovers():
    """Fails the test if it leaves a thread of its own running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 1.0
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert extra == []


class EchoAll:
    """A plaintext server that reads until the client's FIN, remembers it, and echoes it."""

    def __init__(self) -> None:
        self.got: "queue.Queue[bytes]" = queue.Queue()
        self.server = TCPServer(handler=self._handle)

    def _handle(self, conn: ServerConnection) -> None:
        data = b""
        while chunk := conn.recv():
            data += chunk
        self.got.put(data)
        conn.sendall(data)

    def __enter__(self) -> "EchoAll":
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


def exchange(tap: Tap, pieces: list[bytes], *, separate: bool = True, connection: int = 0) -> bytes:
    """Send ``pieces`` through the tap (each one a chunk of its own, if ``separate``), end our
    half, and read the reply until the server closes."""
    with socket.create_connection(tap.address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = 0
        for piece in pieces:
            sock.sendall(piece)
            sent += len(piece)
            if separate:  # wait until the tap has read it: the next piece is another chunk
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    capture = tap.capture
                    if connection in capture._indexes() and len(capture.for_connection(connection).client_bytes) >= sent:
                        break
                    time.sleep(0.001)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def record(content_type: int, body: bytes) -> bytes:
    """A hand-made TLS record: type, version 3.3, length, body."""
    return bytes([content_type, 3, 3]) + len(body).to_bytes(2, "big") + body


# --- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: FlipBit("sideways", offset=1), "unknown direction"),
        (lambda: FlipBit(C), "say where"),
        (lambda: FlipBit(C, record=1, offset=2, byte=0), "not both"),
        (lambda: FlipBit(C, record=1), "which byte"),
        (lambda: FlipBit(C, offset=1, byte=3), "leave byte= out"),
        (lambda: FlipBit(C, offset=1, bit=8), "bit must be 0–7"),
        (lambda: FlipBit(C, offset=-1), "at least 0"),
        (lambda: FlipBit(C, record=True, byte=1), "whole number"),
        (lambda: FlipBit(C, record=1.5, byte=1), "whole number"),
        (lambda: FlipBits(C, offset=1), "no 1 bits"),
        (lambda: FlipBits(C, offset=1, mask=b"\x00\x00"), "no 1 bits"),
        (lambda: FlipBits(C, offset=1, mask="08"), "mask must be bytes"),
        (lambda: FlipBits(C, record=2, mask=b"\x01"), "where in the record"),
        (lambda: Drop(C, offset=3), "length="),
        (lambda: Drop(C, offset=3, length=0), "at least 1"),
        (lambda: Drop(C, record=3, length=2), "goes with offset="),
        (lambda: Replay(C, record=3, times=0), "at least 1"),
        (lambda: Replay(C, record=3, times=5000), "at most 1000"),
        (lambda: Truncate(S), "after_record="),
        (lambda: Truncate(S, after_record=1, at_offset=2), "not both"),
        (lambda: Delay(C, 0), "more than 0"),
        (lambda: Delay(C, -1, record=0), "more than 0"),
        (lambda: Delay(C, 3600), "at most 60"),
        (lambda: Delay(C, float("nan")), "must be a number"),
        (lambda: Delay(C, "1"), "must be a number"),
        (lambda: Inject(C, b"", at_offset=0), "empty"),
        (lambda: Inject(C, 42, at_offset=0), "bytes"),
        (lambda: Inject(C, b"x"), "before_record="),
    ],
)
def test_actions_check_their_arguments(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_actions_are_small_frozen_values() -> None:
    flip = FlipBit("client->server", record=3, byte=10, bit=0)
    assert flip.direction == C and flip == FlipBit(C, record=3, byte=10, bit=0)
    assert repr(flip) == "FlipBit('client→server', record=3, byte=10, bit=0)"
    assert flip.describe() == "flip bit 0 of byte 10 of record 3, client→server"
    assert FlipBit("server", record=0, byte=3).describe() == "flip bit 0 of byte 3 (the header's length) of record 0, server→client"
    with pytest.raises(AttributeError):
        flip.bit = 1  # type: ignore[misc]
    assert repr(FlipBits(C, offset=11, mask=b"\x08")) == "FlipBits('client→server', mask=b'\\x08', offset=11)"
    assert repr(Delay("server", 0.5)) == "Delay('server→client', seconds=0.5)"
    assert Inject(C, "hi", at_offset=0).data == b"hi"  # text is sent as UTF-8
    assert {a.addressing for a in (flip, Drop(C, offset=1, length=1), Delay(C, 1))} == {"record", "offset", None}
    assert Replay(S, record=2, times=3).describe() == "replay record 2 3 more times, server→client"
    assert Truncate(S, after_record=8).describe() == "cut the stream after record 8, server→client (no more bytes, then a FIN)"


def test_tap_checks_its_actions() -> None:
    with pytest.raises(ValueError, match="the same way"):
        Tap(("127.0.0.1", 1), tamper=[FlipBit(C, record=1, byte=5), Drop(C, offset=0, length=1)])
    with pytest.raises(ValueError, match="takes actions"):
        Tap(("127.0.0.1", 1), tamper=["flip"])  # type: ignore[list-item]
    # Each direction has its own addressing; an address-less Delay goes with either.
    Tap(("127.0.0.1", 1), tamper=[FlipBit(C, record=1, byte=5), Drop(S, offset=0, length=1), Delay(C, 0.1)])
    tap = Tap(("127.0.0.1", 1), tamper=FlipBit(C, offset=0))  # one action needs no list
    assert len(tap.tamper) == 1 and tap.tampering == []


def test_xor_mask() -> None:
    assert xor_mask(b"$10", b"$90") == b"\x00\x08\x00"
    assert xor_mask("pay alice $10", "pay alice $90").hex() == "00000000000000000000000800"
    original = b"pay alice $10"
    assert bytes(a ^ m for a, m in zip(original, xor_mask(original, b"pay mallory!!"))) == b"pay mallory!!"
    with pytest.raises(ValueError, match="keeps the length"):
        xor_mask(b"$10", b"$100")


# --- by byte offset: plaintext -----------------------------------------------------------------


def test_flip_bits_at_an_offset_across_chunks(no_leftovers) -> None:
    message = b"pay alice $10"
    mask = xor_mask(b"$10", b"$90")  # 00 08 00
    flips = FlipBits(C, offset=10, mask=mask)
    with EchoAll() as echo, Tap(echo.server, tamper=[flips]) as tap:
        reply = exchange(tap, [message[:11], message[11:]])  # the mask spans the chunk boundary
        assert echo.got.get(timeout=5) == b"pay alice $90"
        assert tap.wait_idle()
    assert reply == b"pay alice $90"
    assert tap.capture.client_bytes == message  # the capture keeps what the tap received
    assert tap.sent_bytes(C) == b"pay alice $90"  # what it passed on
    assert tap.sent_bytes(S) == tap.capture.server_bytes == b"pay alice $90"  # untouched direction
    events = tap.tampering
    # The first chunk's part of the mask (00, on the '$') changed nothing: no event for it.
    assert [(e.kind, e.offset, e.before, e.after) for e in events] == [("FlipBits", 11, b"10", b"90")]
    assert all(e.connection == 0 and e.direction == C and e.record is None and e.action is flips for e in events)
    assert repr(events[0]) == "<TamperEvent #0 client→server: flipped bits (mask 08 00) at offset 11: 31 30 → 39 30 ('10' → '90')>"


def test_flip_one_bit_at_an_offset(no_leftovers) -> None:
    with EchoAll() as echo, Tap(echo.server, tamper=FlipBit(C, offset=0, bit=5)) as tap:
        exchange(tap, [b"pay"])
        assert echo.got.get(timeout=5) == b"Pay"  # bit 5 is the ASCII case bit
    (event,) = tap.tampering
    assert event.what == "flipped bit 5 of the byte at offset 0: 70 → 50 ('p' → 'P')"


PLAIN = bytes(range(48, 48 + 60))  # '0123…' : sixty printable bytes


@pytest.mark.parametrize(
    "action, expected, events",
    [
        (Drop(C, offset=10, length=5), PLAIN[:10] + PLAIN[15:], [("Drop", 10, PLAIN[10:15], b"")]),
        (Inject(C, b"<evil>", at_offset=20), PLAIN[:20] + b"<evil>" + PLAIN[20:], [("Inject", 20, b"", b"<evil>")]),
        (Inject(C, b"<", at_offset=0), b"<" + PLAIN, [("Inject", 0, b"", b"<")]),
        (Replay(C, offset=5, length=10, times=2), PLAIN[:15] + PLAIN[5:15] * 2 + PLAIN[15:],
         [("Replay", 5, PLAIN[5:15], PLAIN[5:15] * 3)]),
        (Replay(C, offset=50, length=10), PLAIN + PLAIN[50:], [("Replay", 50, PLAIN[50:], PLAIN[50:] * 2)]),
        (Truncate(C, at_offset=33), PLAIN[:33], [("Truncate", 33, b"", b"")]),
        (Drop(C, offset=100, length=5), PLAIN, []),  # beyond the end: never happens, no event
    ],
)
def test_plaintext_drop_inject_replay_truncate(action, expected, events, no_leftovers) -> None:
    with EchoAll() as echo, Tap(echo.server, tamper=[action]) as tap:
        reply = exchange(tap, [PLAIN[:25], PLAIN[25:]])
        assert echo.got.get(timeout=5) == expected
        assert tap.wait_idle()
    assert reply == expected  # the server echoes what reached it
    assert tap.capture.client_bytes == PLAIN
    assert tap.sent_bytes(C) == expected
    assert [(e.kind, e.offset, e.before, e.after) for e in tap.tampering] == events


def test_truncate_ends_the_stream_and_the_rest_is_recorded_not_sent(no_leftovers) -> None:
    with EchoAll() as echo, Tap(echo.server, tamper=Truncate(C, at_offset=4)) as tap:
        with socket.create_connection(tap.address, timeout=5) as sock:
            sock.sendall(b"pay alice $10")
            # The server got a FIN after 4 bytes, while our side is still open: it answers.
            assert echo.got.get(timeout=5) == b"pay "
            assert sock.recv(100) == b"pay "
            sock.sendall(b" and bob $20")  # still read by the tap, never passed on
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b""
        assert tap.wait_idle()
    assert tap.capture.client_bytes == b"pay alice $10 and bob $20"
    assert tap.sent_bytes(C) == b"pay "
    assert [e.what for e in tap.tampering] == ["cut the stream at offset 4: nothing more passes, then a FIN"]


def test_delay_at_an_offset_holds_the_rest(no_leftovers) -> None:
    with EchoAll() as echo, Tap(echo.server, tamper=Delay(C, 0.3, offset=4)) as tap:
        started = time.monotonic()
        reply = exchange(tap, [b"pay alice $10"], separate=False)
        took = time.monotonic() - started
        assert echo.got.get(timeout=5) == b"pay alice $10"  # nothing lost, nothing reordered
    assert reply == b"pay alice $10" and 0.3 <= took < 2.0
    (event,) = tap.tampering
    assert (event.kind, event.offset, event.what) == ("Delay", 4, "held the stream at offset 4 for 0.3 s")


def test_delay_without_an_address_adds_latency_to_every_chunk(no_leftovers) -> None:
    with EchoAll() as echo, Tap(echo.server, tamper=[Delay(C, 0.15), Delay(S, 0.15)]) as tap:
        started = time.monotonic()
        reply = exchange(tap, [b"one", b"two"], separate=False)
        took = time.monotonic() - started
    assert reply == b"onetwo" and echo.got.get(timeout=5) == b"onetwo"
    assert 0.3 <= took < 2.0  # one way and back
    kinds = {(e.direction, e.kind) for e in tap.tampering}
    assert kinds == {(C, "Delay"), (S, "Delay")}


def test_stop_interrupts_a_long_delay_and_passes_the_bytes_on(no_leftovers) -> None:
    got: "queue.Queue[bytes]" = queue.Queue()

    def read_all(conn: ServerConnection) -> None:
        data = b""
        while chunk := conn.recv():
            data += chunk
        got.put(data)

    with TCPServer(handler=read_all) as server:
        tap = Tap(server, tamper=Delay(C, 30, offset=0)).start()
        with socket.create_connection(tap.address, timeout=5) as sock:
            sock.sendall(b"held")
            while not tap.capture.client_bytes:
                time.sleep(0.005)
            started = time.monotonic()
            tap.stop()
            assert time.monotonic() - started < 1.5
            assert got.get(timeout=2) == b"held"


def test_each_connection_is_tampered_from_its_own_first_byte(no_leftovers) -> None:
    with EchoAll() as echo, Tap(echo.server, tamper=FlipBit(C, offset=1, bit=0)) as tap:
        for n in range(3):
            assert exchange(tap, [b"aaaa"], connection=n) == b"a`aa"
            assert echo.got.get(timeout=5) == b"a`aa"
        assert tap.wait_idle()
    assert [(e.connection, e.offset) for e in tap.tampering] == [(0, 1), (1, 1), (2, 1)]
    assert tap.sent_bytes(C, connection=2) == b"a`aa"


# --- by record ------------------------------------------------------------------------------------

RECORDS = [record(22, b"hello" * 3), record(20, b"\x01"), record(23, bytes(range(40))), record(23, b"data" * 5),
           record(21, b"\x01\x00"), record(23, b"after the cut")]
STREAM = b"".join(RECORDS)


def flipped(rec: bytes, byte: int, bit: int) -> bytes:
    out = bytearray(rec)
    out[byte] ^= 1 << bit
    return bytes(out)


RECORD_ACTIONS = [
    FlipBit(C, record=2, byte=9, bit=2),
    Drop(C, record=1),
    Replay(C, record=3, times=2),
    Inject(C, b"XYZ", before_record=4),
    Truncate(C, after_record=4),
]
RECORD_EXPECTED = RECORDS[0] + flipped(RECORDS[2], 9, 2) + RECORDS[3] * 3 + b"XYZ" + RECORDS[4]


def test_records_are_addressed_by_index(no_leftovers) -> None:
    with EchoAll() as echo, Tap(echo.server, tamper=RECORD_ACTIONS) as tap:
        # Cut at awkward places: inside a header, inside a fragment, one byte at a time.
        cuts = [3, 4, 5, 21, 30, 31, 32, 60, len(STREAM) - 1]
        pieces = [STREAM[a:b] for a, b in zip([0] + cuts, cuts + [len(STREAM)])]
        exchange(tap, pieces)
        assert echo.got.get(timeout=5) == RECORD_EXPECTED
        assert tap.wait_idle()
    assert tap.capture.client_bytes == STREAM
    events = tap.tampering
    assert [(e.kind, e.record) for e in events] == [
        ("Drop", 1), ("FlipBit", 2), ("Replay", 3), ("Inject", 4), ("Truncate", 4)
    ]
    drop, flip, replay, inject, cut = events
    assert drop.before == RECORDS[1] and drop.after == b"" and drop.offset == len(RECORDS[0])
    assert drop.what == "dropped record 1 (change_cipher_spec, 6 bytes)"
    offset2 = len(RECORDS[0]) + len(RECORDS[1])
    assert flip.offset == offset2 + 9 and flip.before == RECORDS[2][9:10] and flip.after == bytes([RECORDS[2][9] ^ 4])
    assert flip.what == "flipped bit 2 of byte 9 of record 2 (application_data, 45 bytes): 04 → 00"
    assert replay.before == RECORDS[3] and replay.after == RECORDS[3] * 3
    assert inject.what == "injected 3 byte(s) before record 4 (alert, 7 bytes)"
    assert cut.what == "cut the stream after record 4 (alert, 7 bytes): nothing more passes, then a FIN"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, len(STREAM) - 1), max_size=6, unique=True))
def test_records_come_out_the_same_however_tcp_cuts_them(cuts: list[int]) -> None:
    cuts = sorted(cuts)
    pieces = [STREAM[a:b] for a, b in zip([0] + cuts, cuts + [len(STREAM)])]
    with EchoAll() as echo, Tap(echo.server, tamper=RECORD_ACTIONS) as tap:
        exchange(tap, pieces)
        assert echo.got.get(timeout=5) == RECORD_EXPECTED


OFFSET_ACTIONS = [
    FlipBits(C, offset=10, mask=b"\xff\x0f"),
    Drop(C, offset=20, length=5),
    Replay(C, offset=30, length=4),
    Inject(C, b"INJ", at_offset=40),
    Truncate(C, at_offset=50),
]
OFFSET_EXPECTED = (
    PLAIN[:10] + bytes([PLAIN[10] ^ 0xFF, PLAIN[11] ^ 0x0F]) + PLAIN[12:20] + PLAIN[25:34] + PLAIN[30:34]
    + PLAIN[34:40] + b"INJ" + PLAIN[40:50]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, len(PLAIN) - 1), max_size=6, unique=True))
def test_offsets_come_out_the_same_however_tcp_cuts_them(cuts: list[int]) -> None:
    cuts = sorted(cuts)
    pieces = [PLAIN[a:b] for a, b in zip([0] + cuts, cuts + [len(PLAIN)])]
    with EchoAll() as echo, Tap(echo.server, tamper=OFFSET_ACTIONS) as tap:
        exchange(tap, pieces)
        assert echo.got.get(timeout=5) == OFFSET_EXPECTED
        assert tap.wait_idle()
    assert tap.sent_bytes(C) == OFFSET_EXPECTED


def test_a_record_cut_short_by_the_sender_is_passed_on_untouched(no_leftovers) -> None:
    partial = RECORDS[0] + RECORDS[2][:10]
    with EchoAll() as echo, Tap(echo.server, tamper=FlipBit(C, record=1, byte=6)) as tap:
        exchange(tap, [partial])
        assert echo.got.get(timeout=5) == partial  # record 1 never completed: no flip
    assert tap.tampering == []


def test_record_addressing_on_plaintext_fails_the_connection_clearly(no_leftovers) -> None:
    with EchoAll() as echo, Tap(echo.server, tamper=FlipBit(C, record=0, byte=5)) as tap:
        with socket.create_connection(tap.address, timeout=5) as sock:
            sock.sendall(b"pay alice $10")
            with pytest.raises(ConnectionResetError):
                sock.recv(100)
        assert tap.wait_idle()
    (conn,) = tap.connections
    assert conn.closed_by == "error"
    assert "is not a stream of TLS records" in tap.errors[0] and "use offset=" in tap.errors[0]


# --- real TLS -----------------------------------------------------------------------------------------


def test_untampered_direction_and_no_actions_relay_tls_unchanged(ca, cred, no_leftovers) -> None:
    with TLSServer(cred) as server, Tap(server, tamper=FlipBit(S, record=99, byte=5)) as tap:
        report = connect(tap, trust=ca, send=b"hello")
    assert report.ok and report.reply == b"hello"
    assert tap.tampering == []  # record 99 never came
    assert tap.sent_bytes(S) == tap.capture.server_bytes and tap.sent_bytes(C) == tap.capture.client_bytes


def test_delay_before_a_tls_record(ca, cred, no_leftovers) -> None:
    with TLSServer(cred) as server, Tap(server, tamper=Delay(S, 0.3, record=0)) as tap:
        report = connect(tap, trust=ca, send=b"slow")
    assert report.ok and report.reply == b"slow"
    assert report.handshake_seconds >= 0.3
    (event,) = tap.tampering
    assert event.record == 0 and re.fullmatch(r"held record 0 \(handshake, \d+ bytes\) for 0\.3 s", event.what)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_records_labels(version, ca, cred, no_leftovers) -> None:
    with TLSServer(cred, max_version=version) as server, Tap(server) as tap:
        assert connect(tap, trust=ca, send=b"pay alice $10").ok
    capture = tap.capture
    client = tls_records(capture, C)
    server_side = tls_records(capture, "server")
    assert all(isinstance(r, WireRecord) for r in client)
    assert client[0].label == "handshake: ClientHello" and server_side[0].label == "handshake: ServerHello"
    assert [r.index for r in client] == list(range(len(client)))
    assert client[1].offset == client[0].end and sum(r.size for r in client) == len(capture.client_bytes)
    data = [r for r in client if r.label.startswith("application data")]
    if version == "1.3":
        # The Finished is an application_data record on the outside: the message is the *second* one.
        assert [r.type_name for r in client] == ["handshake", "change_cipher_spec"] + ["application_data"] * 3
        assert client[2].label.startswith("encrypted handshake: Finished")
        assert data[0].index == 3
        assert any("session ticket" in r.label for r in server_side)
    else:
        assert [r.type_name for r in client] == ["handshake", "handshake", "change_cipher_spec", "handshake",
                                                 "application_data", "alert"]
        assert client[3].label == "encrypted handshake: Finished" and client[5].label == "encrypted alert"
        assert data[0].index == 4
    assert repr(client[0]) == f"<WireRecord 0: handshake, {client[0].size} bytes at offset 0: handshake: ClientHello>"


def test_tls_records_from_bytes() -> None:
    stream = RECORDS[0] + RECORDS[2] + RECORDS[3][:7]  # the last record is cut short: left out
    records = tls_records(stream)
    assert [(r.index, r.offset, r.type_name, r.length) for r in records] == [
        (0, 0, "handshake", 15), (1, 20, "application_data", 40)
    ]
    with pytest.raises(ValueError, match="not a TLS record at offset 0"):
        tls_records(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ValueError, match="which direction"):
        from tlslab.wire import Capture

        tls_records(Capture())


def test_a_flipped_bit_in_tls_application_data_is_caught(ca, cred, no_leftovers) -> None:
    with TLSServer(cred, max_version="1.3") as server, Tap(server, tamper=FlipBit(C, record=3, byte=5)) as tap:
        report = connect(tap, trust=ca, send=b"pay alice $10")
        assert tap.wait_idle()
    assert not report.ok and report.diagnosis.key == "bad_record_mac" and report.diagnosis.who == "server"
    (seen,) = server.connections  # the server's side of the story
    assert seen.ok and seen.aborted is not None and seen.aborted.key == "bad_record_mac" and seen.received == b""
    (event,) = tap.tampering
    assert isinstance(event, TamperEvent) and event.record == 3 and event.offset == tls_records(tap.capture, C)[3].offset + 5
    assert tap.sent_bytes(C) != tap.capture.client_bytes
    assert len(tap.sent_bytes(C)) == len(tap.capture.client_bytes)


def test_tap_repr_with_tampering(no_leftovers) -> None:
    with TCPServer() as server:
        tap = Tap(server, name="tamper-repr", tamper=[FlipBit(C, offset=1), Drop(S, offset=0, length=1)])
        assert repr(tap) == "<Tap 'tamper-repr' stopped, 0 connections, tampering: 2 actions>"
