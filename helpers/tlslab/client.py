"""Connect to a TLS server and report what the handshake decided — or why it failed.

    >>> report = connect(server, trust=ca)            # doctest: +SKIP
    >>> report.ok, report.version
    (True, 'TLSv1.3')

:func:`connect` never raises for a TLS failure: it returns a failed :class:`HandshakeReport`
carrying a :class:`~tlslab.explain.Diagnosis`. It raises only for programming errors (a wrong
argument type, an unknown version).

One subtlety it handles for you. In TLS 1.3 the client finishes its half of the handshake
*before* the server has checked the client's certificate; a server that rejects the certificate
says so in an alert that arrives a moment later. So after the handshake the client waits until
the server either accepts (its session tickets arrive) or refuses (its alert arrives). Without
that wait, the same rejection sometimes shows up as a failed read, sometimes as a failed write,
sometimes not at all.
"""

from __future__ import annotations

import hashlib
import html
import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

from cryptography import x509

from .explain import Diagnosis, diagnose
from .pki import CertificateAuthority, Credential, _write_private, describe_key, private_folder
from .servers import ConnectionRecord, VersionLike, _Server, parse_version

__all__ = ["HandshakeReport", "PeerCertificate", "client_context", "connect", "insecure_connect_demo", "send_plaintext"]

Trust = Union[CertificateAuthority, Credential, bytes, str, Path, None]


@dataclass(frozen=True)
class PeerCertificate:
    """The certificate the server presented, summarized."""

    subject: str
    issuer: str
    names: tuple[str, ...]
    not_after: str
    key: str

    @classmethod
    def from_der(cls, der: bytes) -> "PeerCertificate":
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = tuple(str(n.value) for n in san)
        except x509.ExtensionNotFound:
            names = ()
        return cls(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            names=names,
            not_after=f"{cert.not_valid_after_utc:%Y-%m-%d}",
            key=describe_key(cert.public_key()),
        )


@dataclass
class HandshakeReport:
    """What one connection attempt found out."""

    ok: bool
    address: tuple[str, int]
    server_hostname: str | None
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    peer: PeerCertificate | None = None
    session_reused: bool = False
    handshake_seconds: float | None = None
    reply: bytes | None = None
    diagnosis: Diagnosis | None = None
    aborted: Diagnosis | None = None  # the handshake worked but the connection ended badly (truncated)
    server_view: ConnectionRecord | None = None  # what the server recorded, when it is ours
    session: ssl.SSLSession | None = field(default=None, repr=False)
    context: ssl.SSLContext | None = field(default=None, repr=False)  # resumption needs the same one

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        if self.ok:
            extra = f", ALPN {self.alpn}" if self.alpn else ""
            extra += ", resumed" if self.session_reused else ""
            return f"<HandshakeReport ok: {self.version} {self.cipher}{extra}>"
        assert self.diagnosis is not None
        return f"<HandshakeReport failed: {self.diagnosis.key}: the {self.diagnosis.who} refused: {self.diagnosis.what}>"

    def rows(self) -> list[tuple[str, str]]:
        """The report as (label, value) pairs, in reading order."""
        rows = [("result", "handshake completed" if self.ok else "handshake failed")]
        if self.server_hostname:
            rows.append(("asked for (SNI)", self.server_hostname))
        if self.ok:
            rows += [("version", str(self.version)), ("cipher suite", str(self.cipher))]
            if self.alpn:
                rows.append(("application protocol (ALPN)", self.alpn))
            if self.peer:
                rows += [
                    ("server certificate", self.peer.subject),
                    ("issued by", self.peer.issuer),
                    ("names (SAN)", ", ".join(self.peer.names) or "(none)"),
                    ("valid until", self.peer.not_after),
                    ("server key", self.peer.key),
                ]
            rows.append(("session resumed", "yes" if self.session_reused else "no"))
            if self.reply is not None:
                rows.append(("reply", _preview(self.reply)))
            if self.aborted is not None:
                rows.append(("then", f"{self.aborted.what} [{self.aborted.code}]"))
        elif self.diagnosis:
            d = self.diagnosis
            rows += [("who refused", f"the {d.who}"), ("what", d.what), ("why", d.why), ("how to fix", d.fix), ("OpenSSL says", d.code)]
            seen = self.server_view.failure if self.server_view else None
            if seen is not None:  # our own server also tells its side of the story
                rows.append(("the server's log", f"{seen.what} [{seen.code}]"))
        return rows

    def __str__(self) -> str:
        width = max(len(label) for label, _ in self.rows())
        return "\n".join(f"{label:<{width}}  {value}" for label, value in self.rows())

    def _repr_html_(self) -> str:
        colour = "#27ae60" if self.ok else "#c0392b"
        title = "✓ Handshake completed" if self.ok else "✗ Handshake failed"
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em;vertical-align:top'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self.rows()[1:]
        )
        return (
            f"<div class='tlslab-report' style='border-left:4px solid {colour};padding-left:.6em'>"
            f"<b>{title}</b><table>{body}</table></div>"
        )


def _preview(data: bytes, limit: int = 120) -> str:
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + f"… ({len(data)} bytes)"


def client_context(
    trust: Trust = None,
    *,
    cert: Credential | None = None,
    min_version: VersionLike | None = None,
    max_version: VersionLike | None = None,
    ciphers: str | None = None,
    alpn: Sequence[str] | None = None,
    crl: bytes | Sequence[bytes] | None = None,
) -> ssl.SSLContext:
    """A client ``SSLContext`` that verifies the server, as every client should.

    ``trust``: a :class:`CertificateAuthority`, a :class:`Credential` (trust that certificate
    itself), PEM bytes, or a path to a PEM file; ``None`` means the system's trust store, which
    knows nothing of the course's CAs. ``cert``: a client certificate to present (mutual TLS).
    ``crl``: revocation list(s), PEM; the client then refuses a revoked server certificate.
    """
    ctx = ssl.create_default_context() if trust is None else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if isinstance(trust, CertificateAuthority):
        trust.configure_trust(ctx)
    elif isinstance(trust, Credential):
        # Pinning: trust this very certificate, even though it is not a CA and not a root.
        ctx.load_verify_locations(cadata=trust.cert_pem.decode())
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    elif isinstance(trust, bytes):
        ctx.load_verify_locations(cadata=trust.decode())
    elif isinstance(trust, (str, Path)):
        ctx.load_verify_locations(cafile=str(trust))
    elif trust is not None:
        raise TypeError(f"trust must be a CertificateAuthority, a Credential, PEM bytes or a path, not {type(trust).__name__}")
    if min_version is not None:
        ctx.minimum_version = parse_version(min_version)
    if max_version is not None:
        ctx.maximum_version = parse_version(max_version)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if crl:
        # OpenSSL reads CRLs from a trust-store file (cadata= takes certificates only).
        crls = b"".join([crl] if isinstance(crl, bytes) else list(crl))
        name = f"crl-{hashlib.sha256(crls).hexdigest()[:16]}.pem"
        ctx.load_verify_locations(cafile=str(_write_private(private_folder() / name, crls, 0o644)))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


def _await_verdict(tls: ssl.SSLSocket, deadline: float) -> bytes:
    """TLS 1.3: wait until the server accepts (tickets arrive) or refuses (an alert arrives).

    Raises the alert as an ``ssl.SSLError``; returns on acceptance, on data (returned, so the
    caller keeps it), on the server closing, or at the deadline.
    """
    previous = tls.gettimeout()
    tls.setblocking(False)
    try:
        while True:
            try:
                return tls.recv(65536)  # data, or b"" when the server closed
            except ssl.SSLWantReadError:
                pass  # no data, but whatever records arrived (tickets, an alert) were processed
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""  # the server closed: the reply will be empty
            session = tls.session
            if session is not None and session.has_ticket:
                return b""
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            select.select([tls], [], [], min(left, 0.05))
    finally:
        tls.settimeout(previous)  # back to connect()'s timeout, not blocking forever


def connect(
    target: object,
    *,
    trust: Trust = None,
    cert: Credential | None = None,
    server_hostname: str = "localhost",
    min_version: VersionLike | None = None,
    max_version: VersionLike | None = None,
    ciphers: str | None = None,
    alpn: Sequence[str] | None = None,
    crl: bytes | Sequence[bytes] | None = None,
    send: bytes | str | None = None,
    session: "HandshakeReport | ssl.SSLSession | None" = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> HandshakeReport:
    """Connect, handshake, optionally send ``send`` and read the reply; report what happened.

    ``target`` is a running server of ours, anything else with an ``address`` (such as a
    tap sitting in front of a server), or a ``(host, port)`` pair. ``server_hostname`` is
    the name the client asks for (SNI) and checks the certificate against. Pass ``session=`` an
    earlier report to try resuming its session (with that connection's client settings);
    ``context`` to bring a ready-made ``SSLContext`` instead of the keyword settings.
    """
    if isinstance(session, HandshakeReport):
        if session.session is None:
            raise ValueError("that earlier connection has no session to resume (did it fail?)")
        context = context or session.context
        session = session.session
    if not server_hostname:
        raise ValueError("server_hostname is required: a client that checks no name accepts any certificate its CA ever signed")
    server = target if isinstance(target, _Server) else None
    # Anything with an `.address` (a server, a tap, an interceptor) or a (host, port) pair.
    try:
        address = target.address if hasattr(target, "address") else tuple(target)  # type: ignore[union-attr]
    except RuntimeError as exc:  # a server object that is not running: nothing listens
        report = HandshakeReport(ok=False, address=("127.0.0.1", 0), server_hostname=server_hostname)
        report.diagnosis = diagnose(ConnectionRefusedError(str(exc)), side="client")
        return report
    if context is None:
        context = client_context(
            trust, cert=cert, min_version=min_version, max_version=max_version, ciphers=ciphers, alpn=alpn, crl=crl
        )
    if isinstance(send, str):
        send = send.encode()
    report = HandshakeReport(
        ok=False, address=(address[0], address[1]), server_hostname=server_hostname, context=context
    )
    local_port = None
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        report.diagnosis = diagnose(exc, side="client")
        return report
    local_port = sock.getsockname()[1]
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock:
        try:
            # suppress_ragged_eofs=False: a stream cut without close_notify is a truncation, not an end.
            with context.wrap_socket(
                sock, server_hostname=server_hostname, session=session, do_handshake_on_connect=False,
                suppress_ragged_eofs=False,
            ) as tls:
                started = time.perf_counter()
                tls.do_handshake()
                report.handshake_seconds = time.perf_counter() - started
                # Read what was negotiated now: after a truncated stream the socket can't tell.
                report.version = tls.version()
                report.cipher = (tls.cipher() or (None,))[0]
                report.alpn = tls.selected_alpn_protocol()
                report.session_reused = tls.session_reused
                der = tls.getpeercert(binary_form=True)
                report.peer = PeerCertificate.from_der(der) if der else None
                early = b""
                if report.version == "TLSv1.3":
                    early = _await_verdict(tls, min(deadline, time.monotonic() + 2.0))
                report.ok = True
                if send is not None:
                    tls.sendall(send)
                    reply, cut = _read_to_end(tls)
                    report.reply = early + reply
                    if cut is not None:
                        report.aborted = diagnose(cut, side="client")
                report.session = tls.session
                _close_politely(tls)
        except (ssl.SSLError, OSError) as exc:
            report.ok = False
            report.diagnosis = diagnose(exc, side="client")
    if server is not None and local_port is not None:
        report.server_view = server.record_for(local_port, timeout=2.0)
    return report


def _close_politely(tls: ssl.SSLSocket) -> None:
    """Send close_notify before hanging up, so the server sees a clean end, not a truncation."""
    try:
        tls.settimeout(0.5)
        tls.unwrap()
    except (OSError, ValueError):
        pass  # the server may already be gone; the connection is over either way


def _read_to_end(tls: ssl.SSLSocket, limit: int = 1 << 20) -> tuple[bytes, ssl.SSLEOFError | None]:
    """Read until the server's close_notify; also returns the error if the stream was cut instead."""
    chunks: list[bytes] = []
    size = 0
    cut = None
    while size < limit:
        try:
            chunk = tls.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        except ssl.SSLEOFError as exc:  # no close_notify: someone cut the stream (truncation)
            cut = exc
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), cut


def send_plaintext(target: object, data: bytes | str, *, timeout: float = 5.0) -> bytes:
    """The "without TLS" twin of :func:`connect`: send ``data`` over plain TCP, return the reply.

    Reads until the server closes. Anyone on the path can read both directions.
    """
    address = target.address if hasattr(target, "address") else tuple(target)  # type: ignore[union-attr]
    payload = data.encode() if isinstance(data, str) else data
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def insecure_connect_demo(target: object, **kwargs: object) -> HandshakeReport:
    """DEMO OF A MISTAKE: :func:`connect` with certificate verification turned off.

    This is what ``verify=False``, ``CERT_NONE`` and ``check_hostname=False`` do in real code:
    the client accepts *any* certificate, so a man in the middle reads everything. It exists
    only so the course can show that; never copy it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the two lines that make a client trust anyone
    ctx.verify_mode = ssl.CERT_NONE
    return connect(target, context=ctx, **kwargs)  # type: ignore[arg-type]
