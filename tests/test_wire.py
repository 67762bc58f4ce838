"""Unit tests of tlslab.wire: a real tap relaying real sockets, real TLS handshakes (no mocks)."""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _tools import free_port
from tlslab import servers
from tlslab.client import connect
from tlslab.pki import CertificateAuthority, Credential
from tlslab.servers import ServerConnection, TCPServer, TLSServer
from tlslab.wire import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    Capture,
    Chunk,
    Match,
    Tap,
    TapConnection,
    hexdump,
    running_taps,
    stop_all_taps,
)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("Wire Test CA")


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


def dial(target, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(target.address if hasattr(target, "address") else target, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    """Everything until the peer closes (a reset raises)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def reset_close(sock: socket.socket) -> None:
    """Close with a TCP reset (RST) instead of a clean end (FIN)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_to_eof(conn: ServerConnection) -> bytes:
    data = b""
    while chunk := conn.recv():
        data += chunk
    return data


class RawServer:
    """A bare TCP server for the cases TCPServer is too polite for (resets): ``handler(sock)``."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        self.seen: "queue.Queue[object]" = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        try:
            self.handler(sock)
        except Exception as exc:
            self.seen.put(exc)
        finally:
            sock.close()

    def __enter__(self) -> "RawServer":
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() if nobody came
        except OSError:
            pass
        self.listener.close()
        self.thread.join(2)


# --- relaying, byte for byte -----------------------------------------------------------------

_received: "queue.Queue[bytes]" = queue.Queue()


def streaming_echo(conn: ServerConnection) -> None:
    """Echo each piece as it comes, then, after the client's end of stream, a trailer."""
    seen = b""
    while chunk := conn.recv():
        seen += chunk
        conn.sendall(chunk)
    _received.put(seen)
    conn.sendall(b"<end: %d bytes>" % len(seen))


@pytest.fixture(scope="module")
def echo_tap():
    with TCPServer(handler=streaming_echo, name="wire-echo") as server, Tap(server, name="wire-echo-tap") as tap:
        yield tap


# Up to ~100 KB each way: well within the socket buffers, since this client reads only after sending.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.binary(min_size=1, max_size=8000), max_size=12), read_size=st.integers(1, 8192))
def test_relays_exactly_both_ways(echo_tap: Tap, pieces: list[bytes], read_size: int) -> None:
    sent = b"".join(pieces)
    with dial(echo_tap) as sock:
        port = sock.getsockname()[1]
        for piece in pieces:
            sock.sendall(piece)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(read_size):
            reply += chunk
    expected = sent + b"<end: %d bytes>" % len(sent)
    assert reply == expected
    assert _received.get(timeout=5) == sent  # the server got exactly what the client sent
    assert echo_tap.wait_idle()
    (mine,) = [c for c in echo_tap.connections if c.client[1] == port]
    seen = echo_tap.capture.for_connection(mine.index)
    assert seen.client_bytes == sent
    assert seen.server_bytes == expected
    assert mine.closed_by == "client" and mine.error is None


def test_chunks_have_direction_time_and_connection(echo_tap: Tap) -> None:
    with dial(echo_tap) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        sock.shutdown(socket.SHUT_WR)
        recv_all(sock)
    echo_tap.wait_idle()
    capture = echo_tap.capture
    last = capture.connections[-1].index
    chunks = capture.for_connection(last).chunks
    assert [c.direction for c in chunks[:2]] == [CLIENT_TO_SERVER, SERVER_TO_CLIENT]
    assert chunks[0].data == b"ping" and chunks[1].data == b"ping"
    assert all(c.connection == last for c in chunks)
    times = [c.time for c in chunks]
    assert times == sorted(times) and 0 <= times[0] < 600


# --- TLS through the tap ---------------------------------------------------------------------


def test_tls_through_the_tap_hides_the_secret(ca, cred, no_leftovers) -> None:
    with TLSServer(cred) as server, Tap(server) as tap:
        report = connect(tap, trust=ca, send="password=hunter2")
        assert report.ok, report.diagnosis
        assert report.reply == b"password=hunter2"
        again = connect(tap.address, trust=ca, send=b"second")  # a (host, port) pair works too
        assert again.ok and again.reply == b"second"
    capture = tap.capture
    assert len(capture.connections) == 2
    assert not capture.contains(b"hunter2") and not capture.contains("password")
    assert capture.find("hunter2") is None
    assert capture.client_bytes[:1] == b"\x16"  # a handshake record: the ClientHello
    assert capture.server_bytes[:1] == b"\x16"  # the ServerHello
    assert tap.errors == []


def test_plaintext_through_the_tap_shows_the_secret(no_leftovers) -> None:
    with TCPServer() as server, Tap(server) as tap:  # the default echo handler
        with dial(tap) as sock:
            sock.sendall(b"password=hunter2")
            assert recv_all(sock) == b"password=hunter2"
    capture = tap.capture
    assert capture.contains(b"hunter2") and capture.contains("hunter2")
    assert capture.find("hunter2") == Match(CLIENT_TO_SERVER, 9, 0)
    assert capture.find(b"password") == Match(CLIENT_TO_SERVER, 0, 0)
    assert capture.client_bytes == capture.server_bytes == b"password=hunter2"


def test_find_never_glues_two_connections_together() -> None:
    capture = Capture(
        [Chunk(CLIENT_TO_SERVER, b"hun", 0.0, 0), Chunk(CLIENT_TO_SERVER, b"ter2", 0.1, 1),
         Chunk(SERVER_TO_CLIENT, b"xx hunter2", 0.2, 1)]
    )
    assert capture.client_bytes == b"hunter2"  # joined in arrival order ...
    assert capture.find(b"hunter2") == Match(SERVER_TO_CLIENT, 3, 1)  # ... but not searched so


def test_needles_must_be_bytes_or_text() -> None:
    capture = Capture([Chunk(CLIENT_TO_SERVER, b"abc", 0.0, 0)])
    with pytest.raises(ValueError, match="empty"):
        capture.contains(b"")
    with pytest.raises(TypeError):
        capture.contains(42)  # type: ignore[arg-type]
    assert capture.contains(bytearray(b"bc"))


# --- what TCP says, passed on ----------------------------------------------------------------


def test_half_close_passes_through(no_leftovers) -> None:
    def answer_after_eof(conn: ServerConnection) -> None:
        request = read_to_eof(conn)  # returns only when the client's half-close arrives
        conn.sendall(b"you said: " + request)

    with TCPServer(handler=answer_after_eof) as server, Tap(server) as tap:
        with dial(tap) as sock:
            sock.sendall(b"one, ")
            sock.sendall(b"two")
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b"you said: one, two"
        assert tap.wait_idle()
        (conn,) = tap.connections
        assert conn.closed_by == "client" and conn.error is None


def test_server_reset_becomes_a_client_reset(no_leftovers) -> None:
    def reset_after_reading(sock: socket.socket) -> None:
        sock.recv(100)
        reset_close(sock)

    with RawServer(reset_after_reading) as server, Tap(server) as tap:
        with dial(tap) as sock:
            sock.sendall(b"hello")
            with pytest.raises(ConnectionResetError):
                sock.recv(100)
        assert tap.wait_idle()
        (conn,) = tap.connections
    assert conn.closed_by == "reset" and conn.reset_by == "server"
    assert "the server reset the connection" in conn.error
    assert tap.errors and tap.errors[0].startswith("connection 0: the server reset")
    assert tap.capture.client_bytes == b"hello"


def test_client_reset_becomes_a_server_reset(no_leftovers) -> None:
    def read_until_end(sock: socket.socket) -> None:
        try:
            server_seen = recv_all(sock)
            raw_server.seen.put(("eof", server_seen))
        except ConnectionResetError:
            raw_server.seen.put(("reset", None))

    with RawServer(read_until_end) as raw_server, Tap(raw_server) as tap:
        sock = dial(tap)
        sock.sendall(b"hello")
        while not tap.capture.client_bytes:  # wait until the tap has relayed it
            time.sleep(0.005)
        reset_close(sock)
        assert raw_server.seen.get(timeout=5) == ("reset", None)
        assert tap.wait_idle()
        (conn,) = tap.connections
    assert conn.closed_by == "reset" and conn.reset_by == "client"


@pytest.mark.parametrize("down", ["stopped server", "free port"])
def test_target_down_resets_the_client_and_the_tap_carries_on(down, ca, cred, no_leftovers) -> None:
    server = TLSServer(cred, port=free_port() if down == "free port" else 0)
    target = server if down == "stopped server" else ("127.0.0.1", server.requested_port)
    with Tap(target) as tap:
        with dial(tap) as sock:
            with pytest.raises(ConnectionResetError):  # a refusal, passed on as what it is: a reset
                sock.recv(100)
        report = connect(tap, trust=ca)
        assert not report.ok and report.diagnosis.key == "connection_reset"
        assert tap.wait_idle()
        assert [c.closed_by for c in tap.connections] == ["refused", "refused"]
        assert "could not reach the target" in tap.errors[0]
        with server:  # the target comes up: the same tap now gets through
            report = connect(tap, trust=ca, send=b"now")
            assert report.ok and report.reply == b"now"
    assert tap.connections[2].closed_by in ("client", "server")


def test_twenty_connections_at_once(no_leftovers) -> None:
    def echo_all(conn: ServerConnection) -> None:
        conn.sendall(read_to_eof(conn))

    count = 20
    together = threading.Barrier(count)
    results: dict[int, tuple[bytes, bytes]] = {}  # client port → (sent, received)
    failures: list[BaseException] = []

    def client(i: int) -> None:
        try:
            with dial(tap) as sock:
                together.wait(5)  # everyone is connected before anyone speaks
                payload = f"client {i:02d} ".encode() * (50 + i * 37)
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                results[sock.getsockname()[1]] = (payload, recv_all(sock))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    with TCPServer(handler=echo_all) as server, Tap(server) as tap:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert failures == []
        assert tap.wait_idle()
    capture = tap.capture
    assert sorted(c.index for c in capture.connections) == list(range(count))
    assert len(results) == count
    for conn in capture.connections:
        sent, received = results[conn.client[1]]
        assert received == sent
        mine = capture.for_connection(conn.index)
        assert mine.client_bytes == sent and mine.server_bytes == sent
        assert conn.closed_by == "client"
    assert len(capture.client_bytes) == sum(len(s) for s, _ in results.values())


# --- stopping --------------------------------------------------------------------------------


def test_stop_with_idle_connections_is_quick_and_leaves_nothing(no_leftovers) -> None:
    def wait_for_eof(conn: ServerConnection) -> None:
        read_to_eof(conn)

    with TCPServer(handler=wait_for_eof) as server:
        before = set(threading.enumerate())
        tap = Tap(server).start()
        port = tap.port
        idle = [dial(tap) for _ in range(5)]
        server.wait_for_connections(5)  # the tap has connected to the server for each of them
        assert [c.closed_by for c in tap.connections] == [None] * 5
        assert not tap.wait_idle(timeout=0.05)  # they are open: not idle
        started = time.monotonic()
        tap.stop()
        took = time.monotonic() - started
        assert took < 1.2, f"stop() took {took:.2f} s"
        # No thread of the tap's is left (the server's own workers end when they see the tap hang up).
        assert [t for t in set(threading.enumerate()) - before if t.name.startswith(f"tlslab-{tap.name}")] == []
        assert not tap.running and tap.name not in running_taps()
        with pytest.raises(RuntimeError, match="not running"):
            tap.address
        for sock in idle:
            sock.settimeout(2)
            assert recv_all(sock) == b""  # the tap hung up cleanly
            sock.close()
        assert [c.closed_by for c in tap.connections] == ["stopped"] * 5
        with Tap(server, port=port) as again:  # the port is free again
            assert again.port == port
        tap.stop()  # stopping twice is harmless


def test_capture_is_complete_right_after_the_with_block(no_leftovers) -> None:
    with TCPServer(handler="http") as server:
        for run in range(50):
            request = b"GET /%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % run
            with Tap(server) as tap:
                with dial(tap) as sock:
                    sock.sendall(request)
                    reply = recv_all(sock)
            capture = tap.capture
            assert reply.startswith(b"HTTP/1.1 200 OK")
            assert capture.client_bytes == request, f"run {run}"
            assert capture.server_bytes == reply, f"run {run}"


class HoldingTap(Tap):
    """Holds the first chunk until the tap stops: the way a delaying tap waits."""

    def _forward(self, connection: int, direction: str, data: bytes) -> bytes:
        if data == b"one":
            self._stopping.wait(5)
        return data


def test_stop_forwards_and_records_what_the_tap_already_received(no_leftovers) -> None:
    got: "queue.Queue[bytes]" = queue.Queue()
    with TCPServer(handler=lambda conn: got.put(read_to_eof(conn))) as server:
        tap = HoldingTap(server).start()
        with dial(tap) as sock:
            sock.sendall(b"one")
            while not tap.capture.client_bytes:  # recorded; now held in _forward
                time.sleep(0.005)
            sock.sendall(b"two")  # waits in the tap's receive buffer
            time.sleep(0.05)
            started = time.monotonic()
            tap.stop()
            assert time.monotonic() - started < 1.2
            assert got.get(timeout=2) == b"onetwo"  # passed on, in order, then a clean end
        assert tap.capture.client_bytes == b"onetwo"
        assert tap.connections[0].closed_by == "stopped"


def tls_records(data: bytes) -> list[int]:
    """Content types of the TLS records in ``data``; fails on a record cut short."""
    types, offset = [], 0
    while offset < len(data):
        assert offset + 5 <= len(data), "a record header is cut short"
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        assert offset + 5 + length <= len(data), "a record is cut short"
        types.append(data[offset])
        offset += 5 + length
    return types


def test_tls_capture_is_complete_right_after_connect(ca, cred, no_leftovers) -> None:
    with TLSServer(cred) as server:
        for run in range(20):
            with Tap(server) as tap:
                report = connect(tap, trust=ca, send=b"x" * 1000)
                assert report.ok and report.reply == b"x" * 1000
            capture = tap.capture
            client, server_side = tls_records(capture.client_bytes), tls_records(capture.server_bytes)
            assert client[0] == 22 and 23 in client, f"run {run}: {client}"  # handshake, then data
            # The server's last record is its close_notify alert, which the client read.
            assert server_side[0] == 22 and server_side[-1] == 23, f"run {run}: {server_side}"


def test_stop_without_start_and_registry(no_leftovers) -> None:
    with TCPServer() as server:
        Tap(server).stop()  # never started: nothing to do
        first = Tap(server, name="wire-registry").start()
        second = Tap(server, name="wire-registry").start()  # the re-run cell replaces the first
        assert not first.running and second.running
        assert running_taps().count("wire-registry") == 1
        other = Tap(server, name="wire-registry-2").start()
        stop_all_taps()
        assert not second.running and not other.running
        assert "wire-registry" not in running_taps()


@pytest.mark.skipif(not hasattr(servers, "_stop_hooks"), reason="servers.stop_all() has no hook for taps yet")
def test_servers_stop_all_stops_taps_too(no_leftovers) -> None:
    server = TCPServer().start()
    tap = Tap(server).start()
    servers.stop_all()
    assert not tap.running and not server.running


def test_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Tap(("127.0.0.1", 1), host="0.0.0.0")
    with pytest.raises(ValueError, match="loopback"):
        Tap(("10.0.0.1", 443))
    with pytest.raises(ValueError, match="loopback"):
        Tap(("example.com", 443))
    with pytest.raises(TypeError):
        Tap("127.0.0.1:443")
    Tap(("127.0.0.2", 443))  # all of 127/8 is the loopback


# --- the extension point ---------------------------------------------------------------------


class ShoutingTap(Tap):
    """What a tampering tap looks like: it overrides _forward."""

    def _forward(self, connection: int, direction: str, data: bytes) -> bytes:
        if b"boom" in data:
            raise RuntimeError("the hook failed")
        return data.upper() if direction == CLIENT_TO_SERVER else data


def test_forward_hook_sees_every_chunk_and_its_errors_are_recorded(no_leftovers) -> None:
    with TCPServer() as server, ShoutingTap(server) as tap:
        with dial(tap) as sock:
            sock.sendall(b"quiet please")
            assert recv_all(sock) == b"QUIET PLEASE"  # the server got (and echoed) what the hook sent
        with dial(tap) as sock:
            sock.sendall(b"boom")
            with pytest.raises(ConnectionResetError):
                recv_all(sock)
        with dial(tap) as sock:  # one failure does not break the tap
            sock.sendall(b"still here")
            assert recv_all(sock) == b"STILL HERE"
    capture = tap.capture
    assert capture.for_connection(0).client_bytes == b"quiet please"  # recorded as received
    failed = capture.connections[1]
    assert failed.closed_by == "error" and "RuntimeError: the hook failed" in failed.error
    assert capture.connections[2].closed_by in ("client", "server")


# --- showing a capture -----------------------------------------------------------------------


def test_hexdump_format() -> None:
    assert hexdump(b"GET / HTTP/1.1\r\n") == (
        "00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|"
    )
    lines = hexdump(bytes(range(0x7B, 0x7B + 21))).splitlines()
    assert lines == [
        "00000000  7b 7c 7d 7e 7f 80 81 82  83 84 85 86 87 88 89 8a  |{|}~............|",
        "00000010  8b 8c 8d 8e 8f                                    |.....|",
    ]
    assert hexdump(b"") == ""
    cut = hexdump(bytes(100), limit=32).splitlines()
    assert len(cut) == 3 and cut[2] == "… 68 more bytes (hex(limit=None) shows them all)"
    assert len(hexdump(bytes(100), limit=None).splitlines()) == 7


def sample_capture() -> Capture:
    return Capture(
        [
            Chunk(CLIENT_TO_SERVER, b"GET /<script> HTTP/1.1\r\n\r\n", 0.0012, 0),
            Chunk(SERVER_TO_CLIENT, b"HTTP/1.1 200 OK\r\n" + b"x" * 1217, 0.0034, 0),
            Chunk(CLIENT_TO_SERVER, bytes(486), 0.0051, 0),
        ],
        [TapConnection(index=0, client=("127.0.0.1", 50000), opened=0.001, closed=0.006, closed_by="client")],
    )


def test_capture_hex() -> None:
    capture = sample_capture()
    assert capture.hex(CLIENT_TO_SERVER, limit=16) == (
        "00000000  47 45 54 20 2f 3c 73 63  72 69 70 74 3e 20 48 54  |GET /<script> HT|\n"
        "… 496 more bytes (hex(limit=None) shows them all)"
    )
    assert capture.hex("client->server", limit=16) == capture.hex("client→server", limit=16)
    both = capture.hex(limit=16)
    assert both.startswith("client→server: 512 bytes\n00000000  47 45")
    assert "\n\nserver→client: 1,234 bytes\n00000000  48 54 54 50" in both
    assert Capture().hex() == "(nothing captured)"
    with pytest.raises(ValueError, match="direction"):
        capture.hex("sideways")
    two = Capture([Chunk(CLIENT_TO_SERVER, b"a", 0, 0), Chunk(CLIENT_TO_SERVER, b"b", 0, 1)])
    assert "connection 0, client→server: 1 byte\n" in two.hex()
    assert "connection 1, client→server: 1 byte\n" in two.hex()


def test_capture_repr_and_html() -> None:
    capture = sample_capture()
    assert repr(capture) == "<Capture: 1 connection, 512 bytes client→server, 1,234 bytes server→client>"
    assert repr(Capture()) == "<Capture: 0 connections, 0 bytes client→server, 0 bytes server→client>"
    page = capture._repr_html_()
    assert page.count("<tr>") == 4  # a header and three chunks
    assert "1.2 ms" in page and "3.4 ms" in page and "1,234" in page
    assert "client → server" in page and "client ← server" in page
    assert "47 45 54 20 2f 3c" in page  # the first bytes in hex
    assert "<pre" in page and "|GET /&lt;script&gt; HT|" in page  # escaped, never live HTML
    assert "<script>" not in page
    assert repr(capture.chunks[0]).startswith("<Chunk #0 client→server 26 bytes at 1.2 ms: 47 45 54")
    assert repr(capture.connections[0]) == "<TapConnection #0 from 127.0.0.1:50000 closed by the client after 5.0 ms>"


def test_for_connection_and_errors() -> None:
    capture = sample_capture()
    assert capture.for_connection(0).client_bytes == capture.client_bytes
    with pytest.raises(IndexError, match="no connection 3"):
        capture.for_connection(3)
    assert capture.errors == []


def test_tap_repr(no_leftovers) -> None:
    with TCPServer() as server:
        tap = Tap(server, name="wire-repr")
        assert repr(tap) == "<Tap 'wire-repr' stopped, 0 connections>"
        with tap:
            assert repr(tap) == f"<Tap 'wire-repr' on 127.0.0.1:{tap.port} → 127.0.0.1:{server.port}, 0 connections>"
            assert "<table>" in tap._repr_html_()
