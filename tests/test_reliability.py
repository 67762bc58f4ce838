"""The course's servers hold up: many start/stop cycles, many clients, hostile clients.

Sized for CI on two cores; the figures (how fast) live in bench/, not here.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from tlslab import CertificateAuthority, TLSServer, connect
from tlslab.pki import private_folder


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("Reliability CA")


@pytest.fixture(scope="module")
def credential(ca):
    return ca.issue_server_cert("localhost", "127.0.0.1")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts file descriptors through /proc")
def test_a_thousand_start_stop_cycles_leave_nothing_behind(ca, credential) -> None:
    TLSServer(credential, name="warm-up").start().stop()
    fds, threads = _open_fds(), len(threading.enumerate())
    files = set(private_folder().iterdir())
    ports = []
    for i in range(1000):
        server = TLSServer(credential, name="cycle").start()
        ports.append(server.port)
        if i % 100 == 0:  # now and then, a real handshake too
            assert connect(server, trust=ca).ok
        server.stop()
    time.sleep(0.2)
    assert _open_fds() <= fds + 2, "file descriptors leaked"
    assert len(threading.enumerate()) <= threads, "threads leaked"
    assert set(private_folder().iterdir()) == files, "temporary files leaked"
    for port in ports[-20:]:  # the ports are free again
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))


def test_two_hundred_clients_at_once_are_all_served(ca, credential) -> None:
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(200)

    def client(server: TLSServer, i: int) -> None:
        start.wait()
        report = connect(server, trust=ca, send=f"client {i}", timeout=30)
        with lock:
            results.append(report.ok and report.reply == f"client {i}".encode())

    with TLSServer(credential, name="crowd", handshake_timeout=30) as server:
        threads = [threading.Thread(target=client, args=(server, i)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        records = server.wait_for_connections(200, timeout=10)
    assert len(results) == 200 and all(results), f"{results.count(False)} of 200 clients were not served"
    assert len(records) == 200 and all(r.ok for r in records)


def test_hostile_clients_do_not_stop_the_server(ca, credential) -> None:
    with TLSServer(credential, name="hostile", handshake_timeout=0.5) as server:
        stalled = [socket.create_connection(server.address) for _ in range(20)]  # never say a word
        half_hello = socket.create_connection(server.address)
        half_hello.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello cut short
        for garbage in (b"\x00" * 100, os.urandom(4096), b"GET / HTTP/1.0\r\n\r\n", b"\x16\x03\x03\xff\xff" + os.urandom(64)):
            with socket.create_connection(server.address) as sock:
                sock.sendall(garbage)
        for _ in range(10):  # abrupt resets in the middle of the handshake
            sock = socket.create_connection(server.address)
            sock.sendall(b"\x16\x03\x01")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
        # Meanwhile, honest clients are served at once.
        started = time.monotonic()
        for _ in range(10):
            assert connect(server, trust=ca, send="still there?").reply == b"still there?"
        assert time.monotonic() - started < 5
        # The stalled handshakes time out and are recorded as such.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            timeouts = [r for r in server.connections if r.failure and r.failure.key == "timeout"]
            if len(timeouts) >= 21:
                break
            time.sleep(0.05)
        assert len(timeouts) >= 21, f"only {len(timeouts)} stalled handshakes timed out"
        for sock in [*stalled, half_hello]:
            sock.close()
        failures = {r.failure.key for r in server.connections if r.failure}
        assert "not_tls" in failures
        assert connect(server, trust=ca).ok


def test_a_client_that_stalls_after_the_handshake_does_not_block_others(ca, credential) -> None:
    with TLSServer(credential, name="slow-reader", io_timeout=1.0) as server:
        context = ssl.create_default_context(cadata=ca.cert_pem.decode())
        idle = context.wrap_socket(socket.create_connection(server.address), server_hostname="localhost")
        try:
            assert connect(server, trust=ca, send="next").reply == b"next"
        finally:
            idle.close()
