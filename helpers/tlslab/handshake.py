"""Record a real handshake for the handshake chapter: the bytes, the key log, the server's key.

    >>> rec = record_session(version="1.3")                      # doctest: +SKIP
    >>> rec.handshake().client_hello.server_name
    'localhost'
    >>> rec.decrypt().client_data
    b'GET / HTTP/1.1...'

The server uses an Ed25519 key unless told otherwise: its signatures always have the same size,
so the records (and this chapter's outputs) have the same sizes on every run.

:func:`round_trips` counts the round trips a handshake costs before the first byte of the answer
comes back, with a tap that delays every packet.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .client import HandshakeReport, client_context, connect
from .pki import CertificateAuthority, Credential, private_folder
from .servers import TLSServer
from .wire import CLIENT_TO_SERVER, SERVER_TO_CLIENT, Capture, Delay, Tap

__all__ = ["Recording", "RoundTrips", "record_session", "round_trips", "session_ca"]

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
_ca: CertificateAuthority | None = None
_counter = 0


def session_ca() -> CertificateAuthority:
    """The CA behind every recorded session (made once)."""
    global _ca
    if _ca is None:
        _ca = CertificateAuthority("TLS Lab Handshake CA", key_type="ed25519")
    return _ca


@dataclass
class Recording:
    """One recorded connection: what crossed the wire, the session's key log, the server's key."""

    capture: Capture
    keylog: Path
    server: Credential
    report: HandshakeReport

    def handshake(self):
        """The records and the handshake messages readable without any key."""
        from .records import parse_capture

        return parse_capture(self.capture)

    def decrypt(self, *, with_keylog: bool = True, with_server_key: bool = False):
        """Decrypt the session, from the key log or (TLS 1.2 static RSA only) the server's key."""
        from .decrypt import decrypt_capture

        return decrypt_capture(
            self.capture,
            keylog=self.keylog if with_keylog else None,
            server_key=self.server.private_key if with_server_key else None,
        )

    def __repr__(self) -> str:
        return f"<Recording {self.report.version} {self.report.cipher}>"


def record_session(
    *,
    version: str = "1.3",
    key_type: str = "ed25519",
    ciphers: str | None = None,
    alpn: Sequence[str] | None = None,
    client_cert: Credential | None = None,
    send: bytes = REQUEST,
    handler: str = "echo",
) -> Recording:
    """Run one connection through a tap to a fresh server with a key log, and keep everything."""
    global _counter
    _counter += 1
    ca = session_ca()
    credential = ca.issue_server_cert("localhost", "127.0.0.1", key_type=key_type)
    keylog = private_folder() / f"session-{_counter}.keys"
    keylog.unlink(missing_ok=True)
    server = TLSServer(
        credential, name="recorded-session", keylog=keylog, min_version=version, max_version=version,
        ciphers=ciphers, alpn=alpn, handler=handler,
        client_cert="required" if client_cert else "none", client_ca=ca if client_cert else None,
    )
    with server, Tap(server, name="recording-tap") as tap:
        report = connect(tap, trust=ca, cert=client_cert, ciphers=ciphers, alpn=alpn, send=send,
                         min_version=version, max_version=version)
    return Recording(tap.capture, keylog, credential, report)


@dataclass(frozen=True)
class RoundTrips:
    version: str
    one_way_delay: float
    seconds: float  # from the first byte sent to the first byte of the answer

    @property
    def count(self) -> int:
        """Round trips, to the nearest whole one."""
        return round(self.seconds / (2 * self.one_way_delay))

    def __repr__(self) -> str:
        return f"<RoundTrips TLS {self.version}: {self.count} round trips before the first byte of the answer>"


def round_trips(version: str, *, one_way_delay: float = 0.05) -> RoundTrips:
    """Time a handshake plus one request/answer through a tap that delays every packet.

    A plain ``ssl`` client is used (not :func:`connect`, which waits for the server's verdict on
    its certificate) so that it sends its request as early as the protocol allows.
    """
    ca = session_ca()
    server = TLSServer(ca.issue_server_cert("localhost", key_type="ed25519"), name="latency-server",
                       min_version=version, max_version=version)
    delays = [Delay(CLIENT_TO_SERVER, one_way_delay), Delay(SERVER_TO_CLIENT, one_way_delay)]
    ctx = client_context(ca, min_version=version, max_version=version)
    with server, Tap(server, name="latency-tap", tamper=delays) as tap:
        with socket.create_connection(tap.address, timeout=10) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            started = time.perf_counter()
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"ping")
                tls.recv(1)
                elapsed = time.perf_counter() - started
    return RoundTrips(version, one_way_delay, elapsed)
