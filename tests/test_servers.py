"""Unit tests of tlslab.servers: real sockets, real OpenSSL handshakes, real threads (no mocks)."""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from tlslab.client import client_context, connect
from tlslab.pki import CertificateAuthority, Credential, PKIError, make_csr
from tlslab.servers import (
    ConnectionRecord,
    ServerConnection,
    TCPServer,
    TLSServer,
    parse_version,
    running_servers,
    stop_all,
)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("Servers Test CA")


@pytest.fixture(scope="module")
def cred(ca: CertificateAuthority) -> Credential:
    return ca.issue_server_cert("localhost", "127.0.0.1", "api.course.test")


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


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def raw(server) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=5)
    return sock


def recv_all(sock: socket.socket, timeout: float = 3.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


# --- loopback only ---------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count descriptors")
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "10.0.0.1", "::", "", "example.com"])
@pytest.mark.parametrize("kind", ["tls", "tcp"])
def test_non_loopback_address_is_refused_before_any_socket(cred, host, kind, no_leftovers):
    fds = open_fds()
    with pytest.raises(ValueError, match="loopback"):
        if kind == "tls":
            TLSServer(cred, host=host)
        else:
            TCPServer(host=host)
    assert open_fds() == fds


def test_localhost_means_127_0_0_1(cred, no_leftovers):
    with TLSServer(cred, host="localhost") as server:
        assert server.address[0] == "127.0.0.1"
        assert server.port > 0


def test_ipv6_loopback(ca, cred, no_leftovers):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = TLSServer(cred, host="::1").start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with server:
        assert server.address[0] == "::1"
        report = connect(server, trust=ca, send=b"six")
        assert report.ok and report.reply == b"six"


# --- stop ------------------------------------------------------------------------------------


def test_stop_frees_thread_and_port(ca, cred, no_leftovers):
    server = TLSServer(cred, name="stop-frees").start()
    assert server.running and "stop-frees" in running_servers()
    port = server.port
    assert connect(server, trust=ca, send=b"ping").reply == b"ping"
    server.stop()
    assert not server.running
    assert "stop-frees" not in running_servers()
    with pytest.raises(RuntimeError, match="not running"):
        server.address
    # nothing listens on the port any more ...
    assert connect(("127.0.0.1", port), trust=ca).diagnosis.key == "connection_refused"
    # ... and the same port can be bound again straight away
    with TLSServer(cred, port=port) as again:
        assert again.port == port
        assert connect(again, trust=ca, send=b"again").reply == b"again"
    server.stop()  # stopping twice is harmless


def test_stop_and_start_again(ca, cred, no_leftovers):
    server = TLSServer(cred)
    server.stop()  # never started: nothing to do
    with server:
        assert connect(server, trust=ca).ok
    with server:
        assert connect(server, trust=ca).ok
    assert not server.running


def test_stop_is_quick_with_a_client_that_never_speaks(cred, no_leftovers):
    server = TLSServer(cred).start()  # default handshake timeout: 5 s
    silent = raw(server)
    time.sleep(0.1)  # the worker is now inside the handshake, waiting for a ClientHello
    started = time.monotonic()
    server.stop()
    took = time.monotonic() - started
    assert took < 1.2, f"stop() took {took:.2f} s"
    assert recv_all(silent, timeout=2) == b""  # the server hung up
    silent.close()


def test_stop_is_quick_with_an_idle_tls_client_in_the_handler(ca, cred, no_leftovers):
    server = TLSServer(cred).start()  # echo handler, io timeout 10 s
    idle = client_context(ca).wrap_socket(raw(server), server_hostname="localhost")
    assert server.wait_for_connections(1)[0].ok  # handshake done: the handler now waits in recv
    started = time.monotonic()
    server.stop()
    took = time.monotonic() - started
    assert took < 1.2, f"stop() took {took:.2f} s"
    idle.settimeout(2)
    try:
        assert idle.recv(10) == b""
    except (ssl.SSLError, OSError):
        pass  # an abrupt end is fine too; hanging is not
    idle.close()


def test_stop_is_quick_with_many_stalled_clients(cred, no_leftovers):
    server = TLSServer(cred).start()
    silent = [raw(server) for _ in range(20)]
    time.sleep(0.1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.5
    for sock in silent:
        sock.close()


# --- a server survives any client ------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage, key",
    [
        (b"\x00" * 100, "not_tls"),
        (b"GET / HTTP/1.0\r\n\r\n", "not_tls"),
        (b"\x16\x03\x01\x00\x05hello", None),  # a record header followed by nonsense
        (bytes(range(256)) * 4, None),
        (b"", "unexpected_eof"),  # connect, then hang up
    ],
)
def test_server_survives_garbage_and_records_why(ca, cred, garbage, key, no_leftovers):
    with TLSServer(cred) as server:
        sock = raw(server)
        port = sock.getsockname()[1]
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        recv_all(sock)
        sock.close()
        record = server.record_for(port)
        assert record is not None and not record.ok
        assert record.failure is not None
        if key:
            assert record.failure.key == key
        assert record.failure.who == "server"
        assert record.failure.what and record.failure.why and record.failure.code
        assert "refused" in repr(record)
        # and it goes on serving
        assert server.running
        report = connect(server, trust=ca, send=b"still here")
        assert report.ok and report.reply == b"still here"


def test_plain_http_to_tls_port_is_named(cred, no_leftovers):
    with TLSServer(cred) as server:
        sock = raw(server)
        port = sock.getsockname()[1]
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        recv_all(sock)
        sock.close()
        failure = server.record_for(port).failure
        assert failure.code == "HTTP_REQUEST"
        assert "HTTP" in failure.what


def test_stalled_handshake_times_out_while_others_are_served(ca, cred, no_leftovers):
    with TLSServer(cred, handshake_timeout=0.5) as server:
        stalled = raw(server)
        stalled_port = stalled.getsockname()[1]
        started = time.monotonic()
        for i in range(5):
            report = connect(server, trust=ca, send=f"meanwhile {i}")
            assert report.ok and report.reply == f"meanwhile {i}".encode()
        assert time.monotonic() - started < 0.45, "others had to wait for the stalled client"
        assert server.record_for(stalled_port, timeout=0.01) is None  # not timed out yet
        record = server.record_for(stalled_port, timeout=3)
        waited = time.monotonic() - started
        assert record is not None and not record.ok
        assert record.failure.key == "timeout" and record.failure.who == "server"
        assert 0.3 < waited < 2.0
        stalled.close()


def test_a_trickling_client_cannot_stretch_the_handshake_timeout(cred, no_leftovers):
    """The handshake timeout is a deadline for the whole handshake, not per byte."""
    with TLSServer(cred, handshake_timeout=0.5) as server:
        sock = raw(server)
        port = sock.getsockname()[1]
        hello_start = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32
        started = time.monotonic()
        record = None
        for byte in hello_start:
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            record = server.record_for(port, timeout=0.15)
            if record is not None:
                break
        took = time.monotonic() - started
        sock.close()
        assert record is not None and record.failure.key == "timeout"
        assert took < 1.5


def test_hundred_concurrent_clients(ca, cred, no_leftovers):
    results: dict[int, object] = {}

    def client(i: int) -> None:
        results[i] = connect(server, trust=ca, send=f"client {i}")

    with TLSServer(cred) as server:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(results) == 100
        bad = {i: r for i, r in results.items() if not (r.ok and r.reply == f"client {i}".encode())}
        assert bad == {}
        records = server.wait_for_connections(100)
        assert len(records) == 100 and all(r.ok for r in records)


def test_finished_connections_are_forgotten(ca, cred):
    with TLSServer(cred) as server:
        for _ in range(5):
            assert connect(server, trust=ca, send=b"x").ok
        deadline = time.monotonic() + 0.5
        while server._open and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(server._open) == 0


# --- the registry ----------------------------------------------------------------------------


def test_same_name_replaces_the_running_server(ca, cred, no_leftovers):
    first = TLSServer(cred, name="replace-me").start()
    first_port = first.port
    second = TLSServer(cred, name="replace-me")
    assert first.running  # building the second changes nothing yet
    second.start()
    try:
        assert not first.running
        assert second.running
        assert running_servers().count("replace-me") == 1
        assert connect(("127.0.0.1", first_port), trust=ca).diagnosis.key == "connection_refused"
        assert connect(second, trust=ca, send=b"new").reply == b"new"
    finally:
        second.stop()
    assert "replace-me" not in running_servers()


def test_stop_all_and_running_servers(ca, cred, no_leftovers):
    if running_servers():
        pytest.skip(f"other tests' servers are running ({running_servers()}); stop_all() would stop them")
    servers = [
        TLSServer(cred, name="all-1").start(),
        TLSServer(cred, name="all-2").start(),
        TCPServer(name="all-3").start(),
    ]
    names = running_servers()
    assert {"all-1", "all-2", "all-3"} <= set(names)
    assert names == sorted(names)
    stop_all()
    assert not any(s.running for s in servers)
    assert not {"all-1", "all-2", "all-3"} & set(running_servers())


def test_automatic_names_are_distinct(cred, no_leftovers):
    a, b = TLSServer(cred), TLSServer(cred)
    assert a.name != b.name and a.name.startswith("tls-")
    assert TCPServer().name.startswith("tcp-")
    with a, b:
        assert {a.name, b.name} <= set(running_servers())


# --- refusals at construction ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", ["1.0", "1.1", "TLSv1.0", ssl.TLSVersion.TLSv1_1])
def test_legacy_versions_need_legacy_true(cred, version):
    with pytest.raises(ValueError, match="legacy=True"):
        TLSServer(cred, min_version=version)
    server = TLSServer(cred, min_version=version, max_version="1.2", legacy=True)
    assert server.min_version < ssl.TLSVersion.TLSv1_2


def test_parse_version():
    assert parse_version("1.2") is ssl.TLSVersion.TLSv1_2
    assert parse_version("TLSv1.3") is ssl.TLSVersion.TLSv1_3
    assert parse_version(ssl.TLSVersion.TLSv1_2) is ssl.TLSVersion.TLSv1_2
    for bad in ("1.4", "SSLv3", "", "2"):
        with pytest.raises(ValueError, match="unknown TLS version"):
            parse_version(bad)


@pytest.mark.parametrize("policy", ["required", "optional"])
def test_client_certificates_need_a_client_ca(cred, policy):
    with pytest.raises(ValueError, match="client_ca"):
        TLSServer(cred, client_cert=policy)
    with pytest.raises(ValueError, match="client_ca"):
        TLSServer(cred, client_cert=policy, client_ca=[])


def test_unknown_client_cert_policy(ca, cred):
    with pytest.raises(ValueError, match="client_cert"):
        TLSServer(cred, client_cert="sometimes", client_ca=ca)  # type: ignore[arg-type]


def test_unknown_handler_name(cred):
    with pytest.raises(ValueError, match="handler"):
        TLSServer(cred, handler="ftp")


def test_credential_without_key_is_refused(ca):
    csr, _ = make_csr("localhost")
    keyless = ca.sign_csr(csr, usage="server")
    with pytest.raises(PKIError, match="private key"):
        TLSServer(keyless)
    with pytest.raises(PKIError):
        TLSServer(Credential(ca.issue_server_cert("localhost").certificate))


# --- what the server does ----------------------------------------------------------------------


def test_http_handler_plain_tls(ca, cred, no_leftovers):
    with TLSServer(cred, handler="http", name="web") as server:
        report = connect(server, trust=ca, send=b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert report.ok
        head, _, body = report.reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        assert length == len(body)
        assert b"text/html" in head
        assert b"TLSv1.3" in body and b"no client certificate" in body
        assert b"&#x27;web&#x27;" in body


def test_http_handler_names_the_client_under_mtls(ca, cred, no_leftovers):
    client = ca.issue_client_cert("spiffe://course.test/orders")
    with TLSServer(cred, handler="http", client_cert="required", client_ca=ca) as server:
        report = connect(server, trust=ca, cert=client, send=b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert report.ok, report
        assert report.reply.startswith(b"HTTP/1.1 200 OK")
        assert b"spiffe://course.test/orders" in report.reply
        assert report.server_view.client_identity == "spiffe://course.test/orders"
        assert "client spiffe://course.test/orders" in repr(report.server_view)


def test_client_identity_prefers_uri_then_dns(ca, cred, no_leftovers):
    with TLSServer(cred, client_cert="optional", client_ca=ca) as server:
        dns_client = ca.issue_client_cert("device-1.course.test")
        assert connect(server, trust=ca, cert=dns_client).server_view.client_identity == "device-1.course.test"
        anonymous = connect(server, trust=ca)
        assert anonymous.ok and anonymous.server_view.client_identity is None


def test_alpn_negotiated(ca, cred, no_leftovers):
    with TLSServer(cred, alpn=["h2", "http/1.1"]) as server:
        report = connect(server, trust=ca, alpn=["http/1.1"], send=b"x")
        assert report.alpn == "http/1.1" and report.server_view.alpn == "http/1.1"
        report = connect(server, trust=ca, alpn=["h2", "http/1.1"])
        assert report.alpn == "h2"
        report = connect(server, trust=ca)
        assert report.ok and report.alpn is None and report.server_view.alpn is None


@pytest.mark.parametrize("version, labels", [
    ("1.3", {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
             "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET"}),
    ("1.2", {"CLIENT_RANDOM"}),
])
def test_keylog_written(ca, cred, tmp_path: Path, version, labels, no_leftovers):
    keylog = tmp_path / "keys.log"
    with TLSServer(cred, keylog=keylog, max_version=version) as server:
        assert connect(server, trust=ca, send=b"secret").ok
        assert connect(server, trust=ca, send=b"secret").ok
    lines = [line for line in keylog.read_text().splitlines() if line and not line.startswith("#")]
    seen = {line.split()[0] for line in lines}
    assert seen == labels
    for line in lines:
        label, client_random, secret = line.split()
        assert re.fullmatch(r"[0-9a-f]{64}", client_random)
        assert re.fullmatch(r"[0-9a-f]{64,96}", secret)
    # two connections, two different client randoms
    assert len({line.split()[1] for line in lines}) == 2


def test_sni_recorded(ca, cred, no_leftovers):
    with TLSServer(cred) as server:
        assert connect(server, trust=ca).server_view.server_name == "localhost"
        assert connect(server, trust=ca, server_hostname="api.course.test").server_view.server_name == "api.course.test"
        # an IP address is never sent as SNI
        assert connect(server, trust=ca, server_hostname="127.0.0.1").server_view.server_name is None
        # SNI is recorded even when the handshake then fails
        failed = connect(server, trust=ca, server_hostname="wrong.course.test")
        assert not failed.ok and failed.server_view.server_name == "wrong.course.test"


def test_record_fields_of_a_good_connection(ca, cred, no_leftovers):
    with TLSServer(cred, max_version="1.2") as server:
        report = connect(server, trust=ca, send=b"x")
        record = report.server_view
        assert isinstance(record, ConnectionRecord)
        assert record.ok and record.version == "TLSv1.2"
        assert record.cipher == report.cipher
        assert record.peer[0] == "127.0.0.1"
        assert record.failure is None and record.handler_error is None
        assert 0 < record.handshake_seconds < 2
        assert repr(record).startswith("<ConnectionRecord ok TLSv1.2 ")


def test_tcp_server_plaintext_echo(no_leftovers):
    with TCPServer(name="plain") as server:
        sock = raw(server)
        sock.sendall(b"password=hunter2")
        assert recv_all(sock) == b"password=hunter2"
        sock.close()
        record = server.wait_for_connections(1)[0]
        assert record.ok and record.version is None and record.cipher is None
        assert "plaintext" in repr(server) and "127.0.0.1" in repr(server)
    assert "stopped" in repr(server)


def test_tcp_server_http_says_plaintext(no_leftovers):
    with TCPServer(handler="http") as server:
        sock = raw(server)
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        reply = recv_all(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 200 OK") and b"plaintext" in reply


def test_handler_that_raises_is_recorded_and_the_server_goes_on(ca, cred, no_leftovers):
    calls = []

    def flaky(conn: ServerConnection) -> None:
        data = conn.recv()
        calls.append(data)
        if data == b"boom":
            raise RuntimeError("kaboom")
        conn.sendall(data.upper())

    with TLSServer(cred, handler=flaky) as server:
        report = connect(server, trust=ca, send=b"boom")
        assert report.ok and report.reply == b""
        assert report.server_view.handler_error == "RuntimeError: kaboom"
        after = connect(server, trust=ca, send=b"fine")
        assert after.reply == b"FINE" and after.server_view.handler_error is None
        assert server.running and calls == [b"boom", b"fine"]


def test_tcp_handler_that_raises_is_recorded(no_leftovers):
    def broken(conn: ServerConnection) -> None:
        raise KeyError("nope")

    with TCPServer(handler=broken) as server:
        sock = raw(server)
        recv_all(sock)
        sock.close()
        assert server.wait_for_connections(1)[0].handler_error == "KeyError: 'nope'"


def test_server_connection_read_until(ca, cred, no_leftovers):
    seen = []

    def handler(conn: ServerConnection) -> None:
        seen.append((conn.is_tls, conn.read_until(b"END"), conn.server_name))
        conn.sendall(b"ok")

    with TLSServer(cred, handler=handler, name="reader") as server:
        assert connect(server, trust=ca, send=b"abcEND").reply == b"ok"
    assert seen == [(True, b"abcEND", "reader")]


def test_repr_of_tls_server(ca, cred):
    server = TLSServer(cred, name="shown", client_cert="required", client_ca=ca, max_version="1.2")
    assert repr(server) == "<TLSServer 'shown' TLS 1.2–1.2, client certificates required stopped>"
    with server:
        assert f"on 127.0.0.1:{server.port}" in repr(server)
