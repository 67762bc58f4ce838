"""Local TLS servers (and a plaintext twin) for experiments, as context managers.

    >>> from tlslab.pki import CertificateAuthority
    >>> ca = CertificateAuthority()
    >>> with TLSServer(ca.issue_server_cert("localhost", "127.0.0.1")) as server:
    ...     server.address[0]
    '127.0.0.1'

The rules they keep:

* they listen on the loopback only (127.0.0.1 or ::1), on a port the OS picks unless told;
* they never print: every connection's outcome lands in ``server.connections`` instead, since
  output from a background thread would appear in whatever notebook cell happens to run;
* a handshake that stalls times out, and one client never blocks the others;
* connections end gracefully: after a fatal alert the server stops sending, then reads what the
  client still sends before closing, so the client receives the alert rather than a TCP reset
  (a reset would lose the alert, and with it the explanation);
* a registry stops every server at exit, and a server started under the name of a running one
  replaces it (so re-running a notebook cell does not leave the old server behind).
"""

from __future__ import annotations

import atexit
import html
import itertools
import queue
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence, Union

from cryptography import x509

from .explain import Diagnosis, diagnose
from .pki import CertificateAuthority, Credential, PKIError, _write_private, private_folder

__all__ = [
    "ConnectionRecord",
    "Handler",
    "LOOPBACK_HOSTS",
    "ServerConnection",
    "TCPServer",
    "TLSServer",
    "parse_version",
    "running_servers",
    "stop_all",
]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ClientCertPolicy = Literal["none", "optional", "required"]
VersionLike = Union[str, ssl.TLSVersion]

_VERSIONS = {
    "1": ssl.TLSVersion.TLSv1,
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def parse_version(version: VersionLike) -> ssl.TLSVersion:
    """``"1.2"``, ``"TLSv1.2"`` or ``ssl.TLSVersion.TLSv1_2`` → ``ssl.TLSVersion.TLSv1_2``."""
    if isinstance(version, ssl.TLSVersion):
        return version
    key = str(version).removeprefix("TLSv").removeprefix("TLS").strip()
    if key not in _VERSIONS:
        raise ValueError(f"unknown TLS version {version!r}; use one of 1.0, 1.1, 1.2, 1.3")
    return _VERSIONS[key]


# --- what a server remembers about each connection ----------------------------------------


@dataclass
class ConnectionRecord:
    """One connection as the server saw it."""

    peer: tuple[str, int]
    ok: bool = False
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    server_name: str | None = None  # SNI: the host name the client asked for
    client_identity: str | None = None  # from the client certificate, when there is one
    failure: Diagnosis | None = None
    handler_error: str | None = None
    aborted: Diagnosis | None = None  # the connection died after the handshake (e.g. bad_record_mac)
    received: bytes = b""  # what the handler read from the client (the first 64 KiB)
    handshake_seconds: float | None = None

    def __repr__(self) -> str:
        if self.ok:
            who = f", client {self.client_identity}" if self.client_identity else ""
            return f"<ConnectionRecord ok {self.version} {self.cipher}{who}>"
        reason = self.failure.key if self.failure else "failed"
        return f"<ConnectionRecord refused: {reason}>"


def identity_of(cert_der: bytes | None) -> str | None:
    """The identity a certificate claims: its first URI SAN, else email, else DNS name, else CN."""
    if not cert_der:
        return None
    cert = x509.load_der_x509_certificate(cert_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for kind in (x509.UniformResourceIdentifier, x509.RFC822Name, x509.DNSName, x509.IPAddress):
            values = san.get_values_for_type(kind)
            if values:
                return str(values[0])
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else None


class ServerConnection:
    """What a handler gets: a connected socket (TLS or plain) and what the handshake decided."""

    def __init__(self, sock: socket.socket, record: ConnectionRecord, server_name: str) -> None:
        self._sock = sock
        self.record = record
        self.server_name = server_name

    @property
    def is_tls(self) -> bool:
        return isinstance(self._sock, ssl.SSLSocket)

    @property
    def peer_identity(self) -> str | None:
        return self.record.client_identity

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        """The certificate the client presented (verified by the handshake), or ``None``."""
        if not self.is_tls:
            return None
        der = self._sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        return x509.load_der_x509_certificate(der) if der else None

    def recv(self, size: int = 65536) -> bytes:
        """Up to ``size`` bytes; ``b""`` when the client closed cleanly.

        A connection that dies otherwise (a record that fails its integrity check, a stream cut
        without close_notify) raises; the server records why in ``record.aborted``.
        """
        try:
            data = self._sock.recv(size)
        except ssl.SSLZeroReturnError:
            return b""
        room = 65536 - len(self.record.received)
        if room > 0:
            self.record.received += data[:room]
        return data

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def read_until(self, marker: bytes, limit: int = 65536) -> bytes:
        """Read until ``marker`` is seen, the client closes, or ``limit`` bytes arrived."""
        data = b""
        while marker not in data and len(data) < limit:
            chunk = self.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


Handler = Callable[[ServerConnection], None]


def echo_handler(conn: ServerConnection) -> None:
    """Send back the first message received, then close."""
    data = conn.recv()
    if data:
        conn.sendall(data)


def http_handler(conn: ServerConnection) -> None:
    """Answer any request with a small HTTP/1.1 200 page that says what the handshake decided."""
    conn.read_until(b"\r\n\r\n")
    rec = conn.record
    lines = [f"Hello from the TLS Lab server {conn.server_name!r}."]
    if conn.is_tls:
        lines.append(f"You connected with {rec.version} using {rec.cipher}.")
        lines.append(
            f"Your client certificate says you are {rec.client_identity}."
            if rec.client_identity
            else "You presented no client certificate."
        )
    else:
        lines.append("This connection is plaintext: anyone on the path can read it.")
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>TLS Lab</title></head><body>"
        + "".join(f"<p>{html.escape(line)}</p>" for line in lines)
        + "</body></html>\n"
    ).encode()
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    conn.sendall(head + body)


_HANDLERS: dict[str, Handler] = {"echo": echo_handler, "http": http_handler}


# --- the registry --------------------------------------------------------------------------

_registry: dict[str, "_Server"] = {}
_registry_lock = threading.Lock()
_auto_names = itertools.count(1)


_stop_hooks: list[Callable[[], None]] = []  # stop_all() of modules above this one (wire's taps)


def stop_all() -> None:
    """Stop every server this process started (and every tap, interceptor, … registered here)."""
    for hook in list(_stop_hooks):
        hook()
    with _registry_lock:
        servers = list(_registry.values())
    for server in servers:
        server.stop()


def running_servers() -> list[str]:
    """Names of the servers running now."""
    with _registry_lock:
        return sorted(name for name, server in _registry.items() if server.running)


atexit.register(stop_all)


def _graceful_close(sock: socket.socket, drain_seconds: float = 1.0) -> None:
    """Stop sending, read what the peer still sends, then close (never a reset that eats an alert)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        deadline = time.monotonic() + drain_seconds
        drained = 0
        while drained < 1 << 20:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            socket.socket.settimeout(sock, left)
            chunk = socket.socket.recv(sock, 65536)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:
        pass
    finally:
        socket.socket.close(sock)


def open_listener(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket on ``host:port`` (servers and taps both use it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(256)
    except OSError:
        listener.close()
        raise
    listener.setblocking(False)
    return listener


def accept_clients(
    listener: socket.socket,
    wake: socket.socket,
    stopping: threading.Event,
    on_client: Callable[[socket.socket, tuple], None],
) -> None:
    """Accept clients until ``stopping`` is set and a byte arrives on ``wake``.

    Each client socket is made blocking, with Nagle's algorithm off (handshake messages are small
    writes it would hold back), and handed to ``on_client``.
    """
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        while not stopping.is_set():
            for key, _ in selector.select():
                if key.fileobj is wake or stopping.is_set():
                    return
                try:
                    sock, addr = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                on_client(sock, addr)


class _WorkerPool:
    """Threads that serve one connection after another.

    Starting a thread costs about as much CPU as a whole TLS 1.3 handshake, so a finished worker
    waits for the next connection instead of exiting; a new thread starts only when every worker
    is busy (so 200 clients at once still get 200 threads, and a stalled client blocks no one).
    They are daemon threads, so a stuck one can never hold up the interpreter's exit.
    """

    def __init__(self, name: str, serve: Callable[[socket.socket, tuple], None]) -> None:
        self._name, self._serve = name, serve
        self._jobs: queue.SimpleQueue[tuple[socket.socket, tuple] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []

    def submit(self, sock: socket.socket, addr: tuple) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # an idle worker will take it
            else:
                worker = threading.Thread(target=self._work, name=f"tlslab-{self._name}-worker", daemon=True)
                self._threads.append(worker)
                worker.start()
        self._jobs.put((sock, addr))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._serve(*job)
            with self._lock:
                self._idle += 1

    def shutdown(self, deadline: float) -> None:
        """Send every worker home; wait for them until ``deadline`` (time.monotonic())."""
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        for worker in threads:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))


class _Server:
    """What the TLS server and its plaintext twin share: bind, accept, a worker per client."""

    kind = "server"

    def __init__(
        self,
        *,
        name: str | None,
        host: str,
        port: int,
        handler: str | Handler,
        handshake_timeout: float,
        io_timeout: float,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"TLS Lab servers listen on the loopback only (127.0.0.1 or ::1), not {host!r}: "
                "the course never exposes a server to the network."
            )
        if isinstance(handler, str):
            if handler not in _HANDLERS:
                raise ValueError(f"unknown handler {handler!r}; use 'echo', 'http' or a function")
            handler = _HANDLERS[handler]
        self.name = name or f"{self.kind}-{next(_auto_names)}"
        self.host = "127.0.0.1" if host == "localhost" else host
        self.requested_port = port
        self.handler: Handler = handler
        self.handshake_timeout = handshake_timeout
        self.io_timeout = io_timeout
        self.connections: list[ConnectionRecord] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._pool: _WorkerPool | None = None
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # Lifecycle
    @property
    def running(self) -> bool:
        return self._accept_thread is not None and self._accept_thread.is_alive()

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError(f"server {self.name!r} is not running; call start() or use 'with'")
        return self._listener.getsockname()[:2]

    @property
    def port(self) -> int:
        return self.address[1]

    def start(self) -> "_Server":
        if self.running:
            return self
        with _registry_lock:
            previous = _registry.get(self.name)
        if previous is not None and previous is not self:
            previous.stop()  # a re-run cell replaces its old server
        self._listener = open_listener(self.host, self.requested_port)
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        self._pool = _WorkerPool(self.name, self._serve)
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"tlslab-{self.name}", daemon=True)
        self._accept_thread.start()
        with _registry_lock:
            _registry[self.name] = self
        return self

    def stop(self) -> None:
        """Stop accepting, end open connections, free the port; returns within about a second."""
        if self._accept_thread is None:
            return
        self._stopping.set()
        try:
            assert self._wake_w is not None
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._accept_thread.join(timeout=1.0)
        with self._lock:
            open_socks = list(self._open)
        for sock in open_socks:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # unblocks the worker's recv
            except OSError:
                pass
        if self._pool is not None:
            self._pool.shutdown(deadline=time.monotonic() + 1.0)
            self._pool = None
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._listener = self._wake_r = self._wake_w = None
        self._accept_thread = None
        with _registry_lock:
            if _registry.get(self.name) is self:
                del _registry[self.name]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.stop()
        except Exception:
            pass

    # Waiting for what the server saw
    def wait_for_connections(self, count: int = 1, timeout: float = 2.0) -> list[ConnectionRecord]:
        """Wait until at least ``count`` connections are recorded; returns them all."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.connections) >= count, timeout=timeout)
            return list(self.connections)

    def record_for(self, peer_port: int, timeout: float = 2.0) -> ConnectionRecord | None:
        """The record of the connection that came from local port ``peer_port`` (waits for it)."""
        with self._changed:
            self._changed.wait_for(lambda: any(r.peer[1] == peer_port for r in self.connections), timeout=timeout)
            return next((r for r in reversed(self.connections) if r.peer[1] == peer_port), None)

    def _record(self, record: ConnectionRecord) -> None:
        with self._changed:
            self.connections.append(record)
            self._changed.notify_all()

    # The loops
    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        accept_clients(self._listener, self._wake_r, self._stopping, self._accepted)

    def _accepted(self, sock: socket.socket, addr: tuple) -> None:
        with self._lock:
            self._open.add(sock)
        assert self._pool is not None
        self._pool.submit(sock, addr)

    def _serve(self, sock: socket.socket, addr: tuple) -> None:
        try:
            self._handle(sock, (addr[0], addr[1]))
        except Exception:  # a server survives any client; never print from a thread
            try:
                sock.close()
            except OSError:
                pass
        finally:
            with self._lock:
                self._open.discard(sock)

    def _handle(self, sock: socket.socket, peer: tuple[str, int]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _run_handler(self, conn: ServerConnection, record: ConnectionRecord) -> None:
        try:
            self.handler(conn)
        except (ssl.SSLError, OSError) as exc:  # the connection died: say why, as for a handshake
            record.aborted = diagnose(exc, side="server")
        except Exception as exc:  # recorded, not printed
            record.handler_error = f"{type(exc).__name__}: {exc}"


class TCPServer(_Server):
    """The plaintext twin of :class:`TLSServer`, for the "without TLS" half of a demo."""

    kind = "tcp"

    def __init__(
        self,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: str | Handler = "echo",
        io_timeout: float = 10.0,
    ) -> None:
        super().__init__(name=name, host=host, port=port, handler=handler, handshake_timeout=io_timeout, io_timeout=io_timeout)

    def _handle(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        record = ConnectionRecord(peer=peer, ok=True)
        self._record(record)
        sock.settimeout(self.io_timeout)
        self._run_handler(ServerConnection(sock, record, self.name), record)
        _graceful_close(sock)

    def __repr__(self) -> str:
        state = f"on {self.host}:{self.port}" if self.running else "stopped"
        return f"<TCPServer {self.name!r} plaintext {state}>"


class TLSServer(_Server):
    """A TLS server on the loopback.

    ``credential``: the certificate and key it presents (``send_intermediates=False`` sends the
    leaf alone, for the missing-intermediate demo). ``min_version``/``max_version``: ``"1.2"``,
    ``"1.3"``; older versions exist only when ``legacy=True`` says this is a demo of an insecure
    server. ``ciphers``: an OpenSSL cipher string for TLS 1.2 (Python cannot choose TLS 1.3
    suites). ``client_cert``: ``"none"``, ``"optional"`` or ``"required"``, checked against
    ``client_ca`` (and ``crl``, a PEM revocation list). ``alpn``: protocols to accept.
    ``keylog``: a file where session secrets are written (NSS key log format, for decryption).
    ``handler``: ``"echo"``, ``"http"`` or a function taking a :class:`ServerConnection`.
    """

    kind = "tls"

    def __init__(
        self,
        credential: Credential,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        min_version: VersionLike = "1.2",
        max_version: VersionLike = "1.3",
        ciphers: str | None = None,
        client_cert: ClientCertPolicy = "none",
        client_ca: CertificateAuthority | Sequence[CertificateAuthority] | None = None,
        crl: bytes | Sequence[bytes] | None = None,
        alpn: Sequence[str] | None = None,
        keylog: str | Path | None = None,
        handler: str | Handler = "echo",
        send_intermediates: bool = True,
        handshake_timeout: float = 5.0,
        io_timeout: float = 10.0,
        legacy: bool = False,
        sni_certificates: Mapping[str, Credential] | None = None,
    ) -> None:
        super().__init__(
            name=name, host=host, port=port, handler=handler, handshake_timeout=handshake_timeout, io_timeout=io_timeout
        )
        if credential.private_key is None:
            raise PKIError("a server needs its private key, not only its certificate")
        self.credential = credential
        self.min_version = parse_version(min_version)
        self.max_version = parse_version(max_version)
        if self.min_version < ssl.TLSVersion.TLSv1_2 and not legacy:
            raise ValueError(
                "TLS 1.0 and 1.1 are deprecated (RFC 8996); pass legacy=True to build a demo of an insecure server"
            )
        if client_cert not in ("none", "optional", "required"):
            raise ValueError("client_cert must be 'none', 'optional' or 'required'")
        if client_cert != "none" and not client_ca:
            raise ValueError("asking for client certificates needs client_ca: the CA(s) whose clients you accept")
        self.client_cert = client_cert
        self.client_ca = client_ca
        self.alpn = list(alpn) if alpn else None
        self.keylog = Path(keylog) if keylog else None
        self.legacy = legacy
        self._ciphers, self._send_intermediates = ciphers, send_intermediates
        self._reload_lock = threading.Lock()
        # SNI: a client asking for one of these names gets that certificate instead (virtual hosting).
        self.sni_certificates = dict(sni_certificates or {})
        self.context = self._make_context(ciphers, crl, send_intermediates)

    # Changing certificate or revocation list while serving (rotation, revocation)
    def reload_certificate(self, credential: Credential) -> None:
        """Present ``credential`` from the next connection on; open connections keep the old one.

        A fresh context is built and swapped in whole: changing the live one with
        ``load_cert_chain`` would leave, for a moment, a new certificate next to the old key.
        """
        if credential.private_key is None:
            raise PKIError("a server needs its private key, not only its certificate")
        with self._reload_lock:
            self.credential = credential
            self.context = self._make_context(self._ciphers, self._crl, self._send_intermediates)

    def reload_crl(self, crl: bytes | Sequence[bytes] | None) -> None:
        """Check client certificates against ``crl`` (PEM) from the next connection on."""
        if crl and self.client_cert == "none":
            raise ValueError("a revocation list checks client certificates; this server asks for none")
        with self._reload_lock:
            self.context = self._make_context(self._ciphers, crl, self._send_intermediates)

    def _make_context(
        self, ciphers: str | None, crl: bytes | Sequence[bytes] | None, send_intermediates: bool,
        credential: Credential | None = None,
    ) -> ssl.SSLContext:
        self._crl = crl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self.min_version
        ctx.maximum_version = self.max_version
        if ciphers or self.legacy:
            # TLS 1.0/1.1 sign with SHA-1, which OpenSSL 3 refuses above security level 0.
            ctx.set_ciphers((ciphers or "DEFAULT") + (":@SECLEVEL=0" if self.legacy else ""))
        own = credential or self.credential
        presented = own if send_intermediates else Credential(own.certificate, own.private_key)
        presented.configure_cert(ctx)
        if self.client_cert != "none":
            ctx.verify_mode = ssl.CERT_REQUIRED if self.client_cert == "required" else ssl.CERT_OPTIONAL
            cas = self.client_ca if isinstance(self.client_ca, Sequence) else [self.client_ca]
            for ca in cas:
                ca.configure_trust(ctx)  # type: ignore[union-attr]
            if crl:
                crls = [crl] if isinstance(crl, bytes) else list(crl)
                path = _write_private(private_folder() / f"{self.name}.crl.pem", b"".join(crls), 0o644)
                ctx.load_verify_locations(cafile=str(path))
                ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        if self.alpn:
            ctx.set_alpn_protocols(self.alpn)
        if self.keylog:
            ctx.keylog_filename = str(self.keylog)
        if credential is None:
            ctx.sni_callback = self._on_sni
            self._sni_contexts = {
                host: self._make_context(ciphers, crl, send_intermediates, alternative)
                for host, alternative in getattr(self, "sni_certificates", {}).items()
            }
            self._crl = crl
        return ctx

    def _on_sni(self, sslobj: ssl.SSLObject | ssl.SSLSocket, name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj._tlslab_sni = name  # type: ignore[union-attr]
        alternative = self._sni_contexts.get(name or "")
        if alternative is not None:
            sslobj.context = alternative  # this connection now presents that host's certificate
        return None

    def _handle(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        record = ConnectionRecord(peer=peer)
        sock.settimeout(self.handshake_timeout)
        started = time.perf_counter()
        try:
            # suppress_ragged_eofs=False: a stream cut without close_notify is recorded as a truncation.
            tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=False)
        except OSError as exc:
            record.failure = diagnose(exc, side="server")
            self._record(record)
            _graceful_close(sock)
            return
        with self._lock:  # stop() must reach the TLS socket that now owns the descriptor
            self._open.discard(sock)
            self._open.add(tls)
        try:
            self._handshake_and_serve(tls, record, started)
        finally:
            with self._lock:
                self._open.discard(tls)

    def _handshake_and_serve(self, tls: ssl.SSLSocket, record: ConnectionRecord, started: float) -> None:
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            record.failure = diagnose(exc, side="server")
            record.server_name = getattr(tls, "_tlslab_sni", None)
            self._record(record)
            _graceful_close(tls)  # the alert is already sent; let the client read it
            return
        record.handshake_seconds = time.perf_counter() - started
        record.ok = True
        record.version = tls.version()
        record.cipher = (tls.cipher() or (None,))[0]
        record.alpn = tls.selected_alpn_protocol()
        record.server_name = getattr(tls, "_tlslab_sni", None)
        record.client_identity = identity_of(tls.getpeercert(binary_form=True))
        self._record(record)
        tls.settimeout(self.io_timeout)
        self._run_handler(ServerConnection(tls, record, self.name), record)
        try:
            tls.settimeout(1.0)
            plain = tls.unwrap()  # sends close_notify: a clean end, not a truncation
        except ssl.SSLEOFError:
            plain = tls  # the client hung up without its own close_notify: common, and harmless here
        except ssl.SSLError as exc:  # e.g. a replayed record arriving where close_notify should be
            if record.aborted is None:
                record.aborted = diagnose(exc, side="server")
            plain = tls
        except (OSError, ValueError):
            plain = tls
        _graceful_close(plain)

    def __repr__(self) -> str:
        state = f"on {self.host}:{self.port}" if self.running else "stopped"
        versions = f"TLS {self.min_version.name[4:].replace('_', '.')}–{self.max_version.name[4:].replace('_', '.')}"
        mtls = f", client certificates {self.client_cert}" if self.client_cert != "none" else ""
        return f"<TLSServer {self.name!r} {versions}{mtls} {state}>"
