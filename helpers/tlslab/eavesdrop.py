"""Be the eavesdropper: send a message through a tap, then look for it in what crossed the wire.

    >>> seen = eavesdrop("password=hunter2", tls=False)    # doctest: +SKIP
    >>> seen.found
    True

The same message over TLS is nowhere in the capture: only the record headers and the handshake's
public parts are readable, and the rest looks like random bytes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from .bytestats import describe_entropy, shannon_entropy
from .client import HandshakeReport, connect, send_plaintext
from .pki import CertificateAuthority
from .servers import TCPServer, TLSServer
from .wire import Capture, Tap

__all__ = ["Eavesdropping", "TLS12_SUITES", "eavesdrop"]

#: TLS 1.2 suites the lesson lets you pick (Python can choose TLS 1.2 suites, not TLS 1.3 ones).
TLS12_SUITES = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA256",
)

_ca: CertificateAuthority | None = None


def _course_ca() -> CertificateAuthority:
    global _ca
    if _ca is None:
        _ca = CertificateAuthority("Eavesdrop Demo CA")
    return _ca


@dataclass
class Eavesdropping:
    """What an eavesdropper on the path saw of one exchange."""

    message: bytes
    mode: str  # "plaintext", "TLS 1.3", or "TLS 1.2 with <suite>"
    capture: Capture
    report: HandshakeReport | None  # None for plaintext

    @property
    def found(self) -> bool:
        """Is the message readable, as is, in the bytes that crossed the wire?"""
        return self.capture.contains(self.message)

    @property
    def delivered(self) -> bool:
        """Did the message reach the server and come back (it echoes)?"""
        if self.report is None:
            return self.capture.server_bytes.endswith(self.message)
        return self.report.ok and self.report.reply == self.message

    @property
    def entropy(self) -> float:
        return shannon_entropy(self.capture.client_bytes)

    def verdict(self) -> str:
        where = "readable in the capture" if self.found else "nowhere in the capture"
        return f"{self.mode}: your message is {where}; the client's bytes {describe_entropy(self.entropy)}."

    def __repr__(self) -> str:
        return f"<Eavesdropping {self.verdict()}>"

    def _repr_html_(self) -> str:
        colour = "#c0392b" if self.found else "#27ae60"
        return (
            f"<div style='border-left:4px solid {colour};padding-left:.6em'>"
            f"<b>{html.escape(self.verdict())}</b>"
            f"<pre style='font-size:11px'>{html.escape(self.capture.hex('client→server', limit=256))}</pre></div>"
        )


def eavesdrop(message: str | bytes, *, tls: bool = True, max_version: str = "1.3", cipher: str | None = None) -> Eavesdropping:
    """Send ``message`` to an echo server through a tap, over TLS or plaintext; return what was seen.

    ``cipher`` picks a TLS 1.2 suite (and implies ``max_version="1.2"``): Python's ``ssl`` module
    cannot choose among TLS 1.3 suites, so those stay OpenSSL's choice.
    """
    data = message.encode() if isinstance(message, str) else message
    if not data:
        raise ValueError("type a message to send")
    if not tls:
        with TCPServer(name="eavesdrop-target") as server, Tap(server, name="eavesdrop-tap") as tap:
            send_plaintext(tap, data)
        return Eavesdropping(data, "plaintext", tap.capture, None)
    if cipher:
        max_version = "1.2"
    ca = _course_ca()
    credential = _server_credential(ca)
    with TLSServer(credential, name="eavesdrop-target", ciphers=cipher) as server, Tap(server, name="eavesdrop-tap") as tap:
        report = connect(tap, trust=ca, max_version=max_version, ciphers=cipher, send=data)
    mode = f"TLS 1.2 with {report.cipher}" if max_version == "1.2" else f"TLS {max_version}"
    return Eavesdropping(data, mode if report.ok else f"{mode} (failed)", tap.capture, report)


_credential = None


def _server_credential(ca: CertificateAuthority):
    global _credential
    if _credential is None:
        _credential = ca.issue_server_cert("localhost", "127.0.0.1")
    return _credential
