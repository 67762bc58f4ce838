"""Test-only: capture real TLS connections byte for byte, with a tiny TCP relay.

    with Relay(server.address) as relay:
        connect(relay, trust=ca, send=b"hello")
    relay.client_bytes, relay.server_bytes, relay.chunks

The relay accepts one connection at a time on 127.0.0.1, opens its own connection to the
server, and copies bytes both ways, remembering each chunk as ``(direction, time, bytes)``.
(``tlslab.wire`` is the course's real tap; this stays small so the parser tests do not depend on it.)
"""

from __future__ import annotations

import functools
import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EDITS", "FUZZ_EXAMPLES", "SCENARIOS", "Captured", "Relay", "Session", "capture", "mutate", "openssl_client", "record_session"]


@dataclass
class Captured:
    """What went through the relay: both directions, and the timed chunks."""

    chunks: list[tuple[str, float, bytes]] = field(default_factory=list)

    @property
    def client_bytes(self) -> bytes:
        return b"".join(c for d, _, c in self.chunks if d == "client")

    @property
    def server_bytes(self) -> bytes:
        return b"".join(c for d, _, c in self.chunks if d == "server")


class Relay:
    """A one-thread TCP relay in front of ``upstream``: ``address`` is where clients connect."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = (upstream[0], upstream[1])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        self.captures: list[Captured] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Relay":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self.listener.close()

    @property
    def last(self) -> Captured:
        self.wait_closed()
        return self.captures[-1]

    @property
    def client_bytes(self) -> bytes:
        return self.last.client_bytes

    @property
    def server_bytes(self) -> bytes:
        return self.last.server_bytes

    @property
    def chunks(self) -> list[tuple[str, float, bytes]]:
        return self.last.chunks

    def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait until the current connection is over (both sides closed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.captures and getattr(self.captures[-1], "closed", False):
                return
            time.sleep(0.01)
        raise AssertionError("the relayed connection did not close in time")

    def _run(self) -> None:
        self.listener.settimeout(0.05)
        while not self._done.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._relay(client)

    def _relay(self, client: socket.socket) -> None:
        captured = Captured()
        self.captures.append(captured)
        server = socket.create_connection(self.upstream)
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = {client: server, server: client}
        name = {client: "client", server: "server"}
        open_ = {client, server}
        with selectors.DefaultSelector() as sel:
            for s in open_:
                sel.register(s, selectors.EVENT_READ)
            while open_ and not self._done.is_set():
                for key, _ in sel.select(0.1):
                    s = key.fileobj
                    try:
                        data = s.recv(1 << 16)
                    except OSError:
                        data = b""
                    if data:
                        captured.chunks.append((name[s], time.monotonic(), data))
                        try:
                            peer[s].sendall(data)
                        except OSError:
                            pass
                    else:  # this side finished sending: pass the half-close on
                        sel.unregister(s)
                        open_.discard(s)
                        try:
                            peer[s].shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
        client.close()
        server.close()
        captured.closed = True  # type: ignore[attr-defined]


def capture(upstream: tuple[str, int], run) -> Captured:
    """Run ``run(address)`` against a relay in front of ``upstream``; return what it carried."""
    with Relay(upstream) as relay:
        run(relay.address)
        return relay.last


def openssl_client(
    address: tuple[str, int],
    *,
    ciphersuites: str | None = None,
    cipher: str | None = None,
    version: str = "-tls1_3",
    keylog: Path | None = None,
    send: bytes = b"hello\n",
    servername: str = "localhost",
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """Run ``openssl s_client`` once: connect, send ``send``, wait for the echo, close."""
    args = ["openssl", "s_client", "-connect", f"{address[0]}:{address[1]}", "-servername", servername, version, "-quiet", "-ign_eof"]
    if ciphersuites:
        args += ["-ciphersuites", ciphersuites]
    if cipher:
        args += ["-cipher", cipher]
    if keylog:
        args += ["-keylogfile", str(keylog)]
    args += list(extra)
    return subprocess.run(args, input=send, capture_output=True, timeout=30, check=False)


# --- recorded sessions, one per scenario, made once per test run --------------------------------

FUZZ_EXAMPLES = int(os.environ.get("TLSLAB_FUZZ_EXAMPLES", "1000"))  # CI may raise it (10000)


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply edits (kind, position, value): flip a byte, delete one, insert one, or cut the rest."""
    out = bytearray(data)
    for kind, position, value in edits:
        if not out:
            break
        i = position % len(out)
        if kind == 0:
            out[i] ^= value or 1
        elif kind == 1:
            del out[i]
        elif kind == 2:
            out.insert(i, value)
        else:
            del out[i:]
    return bytes(out)


def _edits():
    """Hypothesis strategy for :func:`mutate`'s edits (hypothesis is imported only when used)."""
    from hypothesis import strategies as st

    return st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4)


EDITS = _edits()


@dataclass
class Session:
    """A real connection recorded through the relay, with what decrypting it needs."""

    name: str
    chunks: list[tuple[str, float, bytes]]
    keylog: str  # the key log's text (as the server wrote it)
    server_key: object  # the server's Credential
    sent: bytes  # what the client sent (the server echoes it back)
    suite: str  # the IANA name of the suite negotiated
    version: str

    @property
    def client_bytes(self) -> bytes:
        return b"".join(c for d, _, c in self.chunks if d == "client")

    @property
    def server_bytes(self) -> bytes:
        return b"".join(c for d, _, c in self.chunks if d == "server")

    def timed(self, side: str) -> list[tuple[float, bytes]]:
        return [(t, c) for d, t, c in self.chunks if d == side]


# name → (version, IANA suite, server key type, how to connect)
SCENARIOS: dict[str, tuple[str, str, str, dict]] = {
    "tls13-aes256": ("TLS 1.3", "TLS_AES_256_GCM_SHA384", "ecdsa", {}),
    "tls13-aes128": ("TLS 1.3", "TLS_AES_128_GCM_SHA256", "ecdsa", {"ciphersuites": "TLS_AES_128_GCM_SHA256"}),
    "tls13-chacha": ("TLS 1.3", "TLS_CHACHA20_POLY1305_SHA256", "ecdsa", {"ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"}),
    "tls13-hrr": ("TLS 1.3", "TLS_AES_256_GCM_SHA384", "ecdsa", {"server_curve": "prime256v1"}),
    "tls12-ecdhe-gcm": ("TLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ecdsa", {"ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"}),
    "tls12-ecdhe-aes256": ("TLS 1.2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "rsa", {"ciphers": "ECDHE-RSA-AES256-GCM-SHA384"}),
    "tls12-ecdhe-chacha": ("TLS 1.2", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ecdsa", {"ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305"}),
    "tls12-rsa": ("TLS 1.2", "TLS_RSA_WITH_AES_128_GCM_SHA256", "rsa", {"ciphers": "AES128-GCM-SHA256"}),
    "tls12-rsa-aes256": ("TLS 1.2", "TLS_RSA_WITH_AES_256_GCM_SHA384", "rsa", {"ciphers": "AES256-GCM-SHA384"}),
    "tls13-mtls": ("TLS 1.3", "TLS_AES_256_GCM_SHA384", "ecdsa", {"client_cert": True}),
    "tls13-resumed": ("TLS 1.3", "TLS_AES_256_GCM_SHA384", "ecdsa", {"resume": True}),
    "tls12-resumed": ("TLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ecdsa", {"resume": True}),
}


@functools.lru_cache(maxsize=None)
def _ca():
    from tlslab import CertificateAuthority

    return CertificateAuthority("Capture Test CA")


@functools.lru_cache(maxsize=None)
def record_session(name: str, payload: bytes = b"GET /secret HTTP/1.0\r\n\r\n") -> Session:
    """Record the scenario ``name`` once (TLS 1.3 suites Python cannot pick go through ``openssl s_client``).

    A recording whose last record is cut short (a TCP reset at close can discard bytes the
    relay had not read yet) is made again: the tests are about TLS, not about that race.
    """
    from tlslab.records import RecordError, parse_records

    for attempt in range(3):
        session = _record_once(name, payload)
        try:
            parse_records(session.client_bytes)
            parse_records(session.server_bytes)
            return session
        except RecordError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _record_once(name: str, payload: bytes) -> Session:
    from tlslab import TLSServer, connect

    version, suite, key_type, how = SCENARIOS[name]
    ca = _ca()
    credential = ca.issue_server_cert("localhost", "127.0.0.1", key_type=key_type)
    folder = Path(tempfile.mkdtemp(prefix="tlslab-capture-"))
    keylog = folder / "keys.txt"
    client_cert = ca.issue_client_cert("spiffe://tlslab.test/device-1") if how.get("client_cert") else None
    server = TLSServer(
        credential,
        keylog=keylog,
        max_version="1.2" if version == "TLS 1.2" else "1.3",
        ciphers=how.get("ciphers"),
        client_cert="required" if client_cert else "none",
        client_ca=ca if client_cert else None,
    )
    if "server_curve" in how:  # one group only: a client that guessed x25519 gets a HelloRetryRequest
        server.context.set_ecdh_curve(how["server_curve"])
    with server, Relay(server.address) as relay:
        if "ciphersuites" in how:
            result = openssl_client(relay.address, ciphersuites=how["ciphersuites"], send=payload)
            if result.returncode != 0:
                raise AssertionError(f"openssl s_client failed: {result.stderr.decode(errors='replace')[-400:]}")
        else:
            report = connect(relay, trust=ca, send=payload, ciphers=how.get("ciphers"), cert=client_cert)
            if how.get("resume"):  # record the second connection, which resumes the first
                report = connect(relay, trust=ca, send=payload, session=report)
                if not report.session_reused:
                    raise AssertionError(f"{name}: the session was not resumed")
            if not report.ok:
                raise AssertionError(f"{name}: {report}")
        chunks = list(relay.last.chunks)
    text = keylog.read_text()
    shutil.rmtree(folder, ignore_errors=True)  # the secrets live on in memory only
    return Session(name, chunks, text, credential, payload, suite, version)
