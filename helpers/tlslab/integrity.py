"""Be the attacker who changes bytes in flight: flip, drop, replay, truncate, delay, inject.

    >>> forged = tamper_experiment("pay alice $10", payment_forgery(), tls=False)
    >>> forged.server_received                       # plaintext: the server believes the forgery
    b'pay alice $90'
    >>> flipped = tamper_experiment("pay alice $10", data_bit_flip())
    >>> flipped.server_error.key, flipped.client_error.key     # TLS: the record fails its check
    ('bad_record_mac', 'bad_record_mac')

Each experiment runs a fresh echo server behind a tampering :class:`~tlslab.wire.Tap`, sends one
message and reports what happened on **both** ends: what the server received (or how its side
died, and why) and what the client got back (or how its side died). What the two ends do, so
that every outcome means something:

* the server reads one message and echoes it. Over TLS it then ends the session itself: it sends
  close_notify and reads the client's. That read is where a replayed record shows up (the
  copy arrives where the client's close_notify should be) and fails its integrity check;
* the TLS client is :func:`~tlslab.client.connect`: handshake, send, read the reply to the end.
  It also notes an end of stream that came without the server's close_notify (a truncation),
  which Python reads as a clean end unless asked not to;
* over plaintext the client sends the message and then ends its half of the connection (a TCP
  FIN): the server reads until then, so it gets exactly what the tap passed on, in one piece,
  even when the tap held part of it back.

Which record is which? :func:`baseline` runs the same exchange untouched, with a key log, and
labels every record with what it really carries (decrypted); the presets
(:func:`payment_forgery`, :func:`data_bit_flip`, :func:`data_replay`, :func:`reply_truncation`)
aim at the right record from it.
"""

from __future__ import annotations

import html
import os
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Iterable

from .client import HandshakeReport, client_context, connect
from .explain import Diagnosis, diagnose
from .pki import CertificateAuthority, Credential, private_folder
from .servers import ConnectionRecord, ServerConnection, TCPServer, TLSServer
from .wire import (
    CLIENT_TO_SERVER,
    DIRECTIONS,
    SERVER_TO_CLIENT,
    Capture,
    Delay,
    Drop,
    FlipBit,
    FlipBits,
    Inject,
    Replay,
    Tap,
    TamperAction,
    TamperEvent,
    Truncate,
    WireRecord,
    _actions,
    _direction,
    tls_records,
    xor_mask,
)

__all__ = [
    "Baseline",
    "BaselineRecord",
    "PAYMENT",
    "TamperResult",
    "baseline",
    "data_bit_flip",
    "data_replay",
    "payment_forgery",
    "reply_truncation",
    "tamper_experiment",
    "xor_mask",
    # the actions, re-exported so a lesson needs one import
    "Delay",
    "Drop",
    "FlipBit",
    "FlipBits",
    "Inject",
    "Replay",
    "Truncate",
]

#: The lesson's message, and what the attacker wants it to say.
PAYMENT = b"pay alice $10"
FORGED_PAYMENT = b"pay alice $90"

VERSIONS = ("1.2", "1.3")
_MAX_MESSAGE = 4096  # one TLS record, one read: what an echo of "one message" can promise
# Timers. When tampering leaves both ends waiting (a record whose length was made longer, a
# dropped message), the server must be the one that gives up, and clearly first: two timers of
# the same length would race, and the outcome would change from run to run. The server waits
# 1 s; the client waits up to 2 s for the server's verdict after a TLS 1.3 handshake (inside
# connect()) and 4 s for anything else.
_SERVER_PATIENCE = 1.0
_CLIENT_MARGIN = 3.0

# --- the course's demo CA, made once -------------------------------------------------------------

_pki_lock = threading.Lock()
_pki: tuple[CertificateAuthority, Credential] | None = None


def _course_pki() -> tuple[CertificateAuthority, Credential]:
    global _pki
    with _pki_lock:
        if _pki is None:
            # Ed25519 signatures have one size (ECDSA's vary by a byte or two from one signature
            # to the next), so every run's records have the same sizes, in every process: a byte
            # number that points into a field of one run's record points into the same field in
            # the next.
            ca = CertificateAuthority("Integrity Demo CA", key_type="ed25519")
            _pki = (ca, ca.issue_server_cert("localhost", "127.0.0.1", key_type="ed25519"))
        return _pki


# --- the two ends ----------------------------------------------------------------------------------


def _echo_then_close(conn: ServerConnection) -> None:
    """The server's side: echo one message; over TLS, then end the session and check the end."""
    if not conn.is_tls:
        data = b""
        while len(data) < 1 << 20 and (chunk := conn.recv()):  # until the client's FIN
            data += chunk
        if data:
            conn.sendall(data)
        return
    tls = conn._sock  # the handler's own connection: ServerConnection offers no close of its own
    # A stream that ends without close_notify must raise, not read as a clean end (Python's
    # default, suppress_ragged_eofs): a truncation is what this server is here to notice.
    tls.suppress_ragged_eofs = False
    data = conn.recv()
    if data:
        conn.sendall(data)
    # Send close_notify, then read the client's. The server's own close (after this handler)
    # does the same but keeps no record of what it read; here a failure is raised, and the
    # server records it as how the connection died. A record replayed after the message
    # arrives right here, and fails its integrity check. (An alert from the client ends this
    # quietly instead: OpenSSL counts a fatal alert received here as the peer's shutdown. A
    # client that rejects the echo says so on its own side of the result.)
    tls.settimeout(1.0)
    tls.unwrap()


class _EndWatchingSocket(ssl.SSLSocket):
    """connect()'s TLS socket, noting an end of stream that came without close_notify.

    Python turns such a "ragged EOF" into a clean ``b""`` unless ``suppress_ragged_eofs`` is
    off, and connect() then reads it as the end of the reply. Here it is the attack itself, so
    it is noted on the context (``_tlslab_ragged_eof``) and reported.
    """

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self.suppress_ragged_eofs = False
        try:
            return super().recv(buflen, flags)
        except ssl.SSLEOFError as exc:
            if getattr(self.context, "_tlslab_ragged_eof", None) is None:
                self.context._tlslab_ragged_eof = exc  # type: ignore[attr-defined]
            raise


def _client_context(version: str) -> ssl.SSLContext:
    ca, _ = _course_pki()
    ctx = client_context(ca, min_version=version, max_version=version)
    ctx.sslsocket_class = _EndWatchingSocket
    return ctx


def _plaintext_exchange(address: tuple[str, int], data: bytes, timeout: float) -> tuple[bytes | None, Diagnosis | None]:
    """Send ``data``, end our half (FIN), read the reply until the server closes."""
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # the message is complete: the server reads until here
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks), None
    except OSError as exc:
        return None, diagnose(exc, side="client")


# --- the result ------------------------------------------------------------------------------------


def _show(data: bytes | None, limit: int = 60) -> str:
    if data is None:
        return "nothing"
    text = repr(data[:limit])
    return text + (f"… ({len(data)} bytes)" if len(data) > limit else "")


@dataclass(eq=False)
class TamperResult:
    """One message sent through a tampering tap, and what each end made of it.

    ``server_received``: the bytes the server's handler read (``b""`` if none).
    ``server_error``: how the server's side died — a failed handshake or a connection that died
    after it (``bad_record_mac``, ``timeout``, …) — or ``None``. ``client_reply``: what came back
    to the client (``None`` when its connection failed before the reply was complete).
    ``client_error``: how the client's side died, or ``None``; a stream cut without close_notify
    is ``unexpected_eof`` even when the whole reply had arrived. ``events``: what the tap did
    (:class:`~tlslab.wire.TamperEvent`); ``capture``: what the tap received; ``sent``: what it
    passed on, per direction.
    """

    message: bytes
    mode: str  # "plaintext", "TLS 1.2" or "TLS 1.3"
    actions: tuple[TamperAction, ...]
    events: list[TamperEvent]
    server_received: bytes
    server_error: Diagnosis | None
    client_reply: bytes | None
    client_error: Diagnosis | None
    capture: Capture = field(repr=False)
    sent: dict[str, bytes] = field(repr=False)
    report: HandshakeReport | None = field(default=None, repr=False)
    server_record: ConnectionRecord | None = field(default=None, repr=False)
    server_note: str | None = None  # when the server's side could not be observed fully

    @property
    def tls(self) -> bool:
        return self.mode != "plaintext"

    @property
    def missed(self) -> list[TamperAction]:
        """Actions that never found their target (no event): a record that never came, a byte
        beyond its record's end."""
        done = {id(e.action) for e in self.events}
        return [a for a in self.actions if id(a) not in done]

    @property
    def detected(self) -> bool:
        """Did either end notice something wrong (an error on either side)?"""
        return self.server_error is not None or self.client_error is not None

    @property
    def forged(self) -> bool:
        """Did the server accept, without complaint, something other than the message?"""
        return self.server_error is None and self.server_received != self.message

    # The story, in words
    def attacker_story(self) -> str:
        if not self.actions:
            return "nothing: the tap only watched"
        missed = {id(a) for a in self.missed}
        parts = []
        for action in self.actions:
            mark = " — it never happened: its target never came by" if id(action) in missed else ""
            parts.append(action.describe() + mark)
        return "; ".join(parts)

    def server_story(self) -> str:
        if self.server_record is None:
            return self.server_note or "no connection reached the server"
        if self.server_error is not None:
            d = self.server_error
            why = f"{d.key} — {d.what} (the {d.who} refused)"
            if self.server_record.failure is not None:
                return f"the handshake failed: {why}"
            if self.server_received:
                return f"read {_show(self.server_received)}, then the connection died: {why}"
            return f"the connection died: {why}; it read nothing"
        if self.server_received == self.message:
            return f"accepted the message as sent: {_show(self.server_received)}"
        if not self.server_received:
            return "read nothing, and saw nothing wrong"
        return f"accepted a different message, and saw nothing wrong: {_show(self.server_received)}"

    def client_story(self) -> str:
        if self.client_error is not None:
            d = self.client_error
            if self.client_reply is not None:  # the reply came, but the end did not
                if d.key == "unexpected_eof":
                    return (f"got {_show(self.client_reply)} back, then the stream ended without close_notify: "
                            "unexpected_eof — it cannot know whether the reply was complete")
                return f"got {_show(self.client_reply)} back, then: {d.key} — {d.what}"
            return f"its connection failed: {d.key} — {d.what} (the {d.who} refused)"
        if self.client_reply == self.message:
            return f"got its message back: {_show(self.client_reply)}"
        return f"got back {_show(self.client_reply)}, and saw nothing wrong"

    def __str__(self) -> str:
        return "\n".join(
            [
                f"{self.mode}, message {_show(self.message)}",
                f"  attacker: {self.attacker_story()}",
                f"  server:   {self.server_story()}",
                f"  client:   {self.client_story()}",
            ]
        )

    def __repr__(self) -> str:
        def end(error: Diagnosis | None, data: bytes | None) -> str:
            if error is not None:
                return error.key
            return "accepted " + _show(data)

        actions = "; ".join(a.describe() for a in self.actions) or "no tampering"
        return (
            f"<TamperResult {self.mode}: {actions} → server {end(self.server_error, self.server_received)}, "
            f"client {end(self.client_error, self.client_reply)}>"
        )

    def _repr_html_(self) -> str:
        def cell(title: str, story: str, error: Diagnosis | None, good: bool) -> str:
            colour = "#c0392b" if error is not None else ("#27ae60" if good else "#e67e22")
            verdict = "✗ detected" if error is not None else ("✓ as sent" if good else "⚠ fooled")
            detail = ""
            if error is not None:
                detail = (
                    f"<div style='font-size:90%'><b>why:</b> {html.escape(error.why)}<br>"
                    f"<b>OpenSSL says:</b> <code>{html.escape(error.code)}</code></div>"
                )
            return (
                f"<td style='vertical-align:top;text-align:left;border-left:4px solid {colour};padding:.3em .6em;width:50%'>"
                f"<b>{title}: {verdict}</b><br>{html.escape(story)}{detail}</td>"
            )

        def said(e: TamperEvent) -> str:
            # Over TLS the flipped bytes are ciphertext, different in every run: say where, not what.
            if self.tls and e.kind in ("FlipBit", "FlipBits"):
                return e.what.rsplit(": ", 1)[0]
            return e.what

        events = "".join(
            f"<li><code>{html.escape(e.direction)}</code> {html.escape(said(e))}</li>" for e in self.events[:20]
        )
        if len(self.events) > 20:
            events += f"<li>… {len(self.events) - 20} more</li>"
        server_good = self.server_received == self.message
        client_good = self.client_reply == self.message
        return (
            "<div class='tlslab-tamper'>"
            f"<p><b>{html.escape(self.mode)}</b> — the attacker: {html.escape(self.attacker_story())}</p>"
            + (f"<ul style='font-size:90%'>{events}</ul>" if events else "")
            + "<table style='width:100%'><tr>"
            + cell("the server", self.server_story(), self.server_error, server_good)
            + cell("the client", self.client_story(), self.client_error, client_good)
            + "</tr></table></div>"
        )


# --- the experiment -----------------------------------------------------------------------------


def _message(message: str | bytes) -> bytes:
    data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    if not data:
        raise ValueError("type a message to send")
    if len(data) > _MAX_MESSAGE:
        raise ValueError(f"keep the message to {_MAX_MESSAGE} bytes or fewer (one record), not {len(data):,}")
    return data


def _version(version: str) -> str:
    version = str(version).removeprefix("TLSv").removeprefix("TLS").strip()
    if version not in VERSIONS:
        raise ValueError(f"version must be '1.2' or '1.3', not {version!r}")
    return version


def tamper_experiment(
    message: str | bytes,
    action: TamperAction | Iterable[TamperAction] | None,
    *,
    tls: bool = True,
    version: str = "1.3",
) -> TamperResult:
    """Send ``message`` to a fresh echo server through a tap that applies ``action`` (one action
    or several); return what each end saw. ``tls=False`` sends it over plaintext TCP;
    ``version`` is the TLS version both ends use ("1.3" or "1.2")."""
    return _run(_message(message), _actions(action), tls=tls, version=_version(version))


def _run(data: bytes, actions: tuple[TamperAction, ...], *, tls: bool, version: str, keylog: str | None = None) -> TamperResult:
    held = sum(a.seconds for a in actions if isinstance(a, Delay))
    io_timeout = _SERVER_PATIENCE + held
    client_timeout = io_timeout + _CLIENT_MARGIN
    report: HandshakeReport | None = None
    reply: bytes | None
    client_error: Diagnosis | None
    if tls:
        _, credential = _course_pki()
        server: TLSServer | TCPServer = TLSServer(
            credential, name="integrity-target", min_version=version, max_version=version,
            handler=_echo_then_close, handshake_timeout=io_timeout, io_timeout=io_timeout, keylog=keylog,
        )
        # One TLS 1.3 session ticket, not OpenSSL's default two: connect() sends its message as
        # soon as a ticket has arrived, so with two, a tampered second ticket would be found
        # before or after the message went out, depending on how TCP happened to deliver them.
        server.context.num_tickets = 1
    else:
        server = TCPServer(name="integrity-target", handler=_echo_then_close, io_timeout=io_timeout)
    with server, Tap(server, name="integrity-tap", tamper=actions) as tap:
        if tls:
            context = _client_context(version)
            try:
                report = connect(tap, context=context, send=data, timeout=client_timeout)
            except ValueError:
                # connect() asks for the peer certificate after waiting for the server's verdict;
                # if the stream ended without close_notify meanwhile, OpenSSL has marked the
                # session failed and Python raises "handshake not done yet". What ended it is noted.
                report = None
            eof = getattr(context, "_tlslab_ragged_eof", None)
            if report is None:
                reply = None
                client_error = diagnose(eof if eof is not None else ssl.SSLEOFError("the connection ended"), side="client")
            elif report.ok:
                reply = report.reply
                client_error = diagnose(eof, side="client") if eof is not None else None
            else:
                reply, client_error = None, report.diagnosis
        else:
            reply, client_error = _plaintext_exchange(tap.address, data, client_timeout)
        # The server may still be closing (reading the client's close_notify): wait for its end.
        settled = tap.wait_idle(timeout=io_timeout + 2.0)
        records = server.wait_for_connections(1, timeout=0.5)
    record = records[0] if records else None
    note = None
    if record is None:
        note = "no connection reached the server (the tap could not deliver it)"
    elif not settled:
        note = "the server was still busy when the experiment ended"
    server_error = None
    if record is not None:
        server_error = record.failure or record.aborted
    return TamperResult(
        message=data,
        mode=f"TLS {version}" if tls else "plaintext",
        actions=actions,
        events=tap.tampering,
        server_received=record.received if record is not None else b"",
        server_error=server_error,
        client_reply=reply,
        client_error=client_error,
        capture=tap.capture,
        sent={d: tap.sent_bytes(d) for d in DIRECTIONS},
        report=report,
        server_record=record,
        server_note=note,
    )


# --- the baseline: which record is which ------------------------------------------------------------

_INNER_NAMES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application data"}


@dataclass(frozen=True)
class BaselineRecord:
    """One record of an untouched exchange, with what it really carries.

    ``content``: what the record carries (for encrypted records, read by decrypting with the
    server's key log). ``payload_at``: for an application-data record under an AEAD cipher
    (AES-GCM, ChaCha20-Poly1305), where the plaintext's first byte sits in the record: those
    ciphers encrypt byte by byte (XOR with a keystream), so record byte ``payload_at + i``
    carries plaintext byte ``i``. ``sequence``: the record's sequence number under its keys
    (part of its nonce).
    """

    direction: str
    index: int
    offset: int
    size: int
    outer: str  # the type the header shows
    content: str
    plaintext: bytes | None = None
    payload_at: int | None = None
    sequence: int | None = None

    @property
    def is_data(self) -> bool:
        return self.content.startswith("application data")

    @property
    def label(self) -> str:
        return f"{self.index}: {self.content} ({self.size} bytes)"

    def describe_byte(self, byte: int) -> str:
        """What byte ``byte`` of this record is: a header field, a byte of the message's
        ciphertext, the authentication tag, …"""
        if not 0 <= byte < self.size:
            return f"beyond the record's end (it has {self.size} bytes)"
        if byte < 5:
            return ("the header's content type", "the header's version", "the header's version",
                    "the header's length", "the header's length")[byte]
        encrypted = self.sequence is not None
        if self.plaintext is not None and self.payload_at is not None:
            i = byte - self.payload_at
            if 0 <= i < len(self.plaintext):
                ch = self.plaintext[i : i + 1]
                shown = repr(ch.decode()) if 0x20 <= ch[0] < 0x7F else f"0x{ch[0]:02x}"
                return f"encrypts byte {i} of the data ({shown})"
            if byte >= self.size - 16:
                return "the authentication tag"
            if i == len(self.plaintext):
                return "the hidden inner content type (TLS 1.3)"
            return "the explicit nonce (TLS 1.2 AES-GCM)"
        if encrypted and byte >= self.size - 16:
            return "the authentication tag (if the cipher is AEAD)"
        return "the encrypted fragment" if encrypted else "the fragment (in the clear)"


@dataclass(eq=False)
class Baseline:
    """The untouched exchange: each direction's records (TLS) or bytes (plaintext)."""

    message: bytes
    mode: str
    cipher: str | None
    capture: Capture
    records: dict[str, list[BaselineRecord]]
    decrypted: bool  # were the labels read from the decrypted records (else from the wire alone)?

    @property
    def tls(self) -> bool:
        return self.mode != "plaintext"

    def stream(self, direction: str) -> bytes:
        return self.capture.data(_direction(direction))

    def data_record(self, direction: str = CLIENT_TO_SERVER) -> BaselineRecord:
        """The first record in ``direction`` that carries application data (your message, or its echo)."""
        direction = _direction(direction)
        if not self.tls:
            raise ValueError("plaintext has no records: address it by offset")
        for rec in self.records[direction]:
            if rec.is_data:
                return rec
        raise ValueError(f"no application-data record went {direction}")

    def locate(self, needle: bytes | str, direction: str = CLIENT_TO_SERVER) -> tuple[int | None, int]:
        """Where the bytes carrying ``needle`` (part of the message) cross the wire.

        Plaintext: ``(None, offset)`` in the stream. TLS: ``(record, byte)`` — under an AEAD
        cipher, the ciphertext bytes that encrypt those plaintext bytes.
        """
        wanted = needle.encode() if isinstance(needle, str) else bytes(needle)
        direction = _direction(direction)
        if not self.tls:
            offset = self.stream(direction).find(wanted)
            if offset < 0:
                raise ValueError(f"{wanted!r} never went {direction}")
            return None, offset
        for rec in self.records[direction]:
            if rec.plaintext is not None and wanted in rec.plaintext:
                if rec.payload_at is None:
                    raise ValueError(f"{self.cipher} does not encrypt byte by byte: no ciphertext byte maps to one plaintext byte")
                return rec.index, rec.payload_at + rec.plaintext.find(wanted)
        raise ValueError(f"no record going {direction} carries {wanted!r} (is it part of the message?)")

    def table_html(self, direction: str, record: int | None = None, byte: int | None = None) -> str:
        """The records of ``direction`` as a table, ``record`` highlighted (plaintext: the stream,
        the byte at offset ``byte`` highlighted)."""
        direction = _direction(direction)
        if not self.tls:
            data = self.stream(direction)
            chars = []
            for i, b in enumerate(data):
                ch = html.escape(chr(b) if 0x20 <= b < 0x7F else "·")
                style = "background:#f5b041;font-weight:bold" if i == byte else ""
                chars.append(f"<span title='offset {i}: 0x{b:02x}' style='{style}'>{ch}</span>")
            target = ""
            if byte is not None and 0 <= byte < len(data):
                target = f"; target: offset {byte}, {_show(data[byte : byte + 1])}"
            return (
                f"<div><b>{html.escape(direction)}</b>: {len(data)} bytes, plaintext, no records{html.escape(target)}"
                f"<pre style='font-size:12px'>{''.join(chars)}</pre></div>"
            )
        rows = []
        for rec in self.records[direction]:
            mark = rec.index == record
            style = " style='background:#f5b041'" if mark else ""
            where = f"byte {byte}: {rec.describe_byte(byte)}" if mark and byte is not None else ""
            rows.append(
                f"<tr{style}><td>{rec.index}</td><td>{html.escape(rec.outer)}</td>"
                f"<td style='text-align:left'>{html.escape(rec.content)}</td>"
                f"<td style='text-align:right'>{rec.size}</td><td style='text-align:left'>{html.escape(where)}</td></tr>"
            )
        how = "decrypted with the server's key log" if self.decrypted else "as the wire shows them"
        return (
            f"<div><b>{html.escape(direction)}</b>: {len(self.records[direction])} records ({how})"
            "<table><tr><th>#</th><th>on the wire</th><th style='text-align:left'>carries</th><th>bytes</th>"
            "<th style='text-align:left'>target</th></tr>"
            + "".join(rows)
            + "</table></div>"
        )

    def __repr__(self) -> str:
        lines = [f"<Baseline {self.mode}, message {_show(self.message)}>"]
        if self.tls:
            for d in DIRECTIONS:
                lines.append(f"  {d}:")
                lines += [f"    {r.label}" for r in self.records[d]]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return "".join(self.table_html(d) for d in DIRECTIONS)


def _aead(cipher: str | None) -> bool:
    name = (cipher or "").upper()
    return ("GCM" in name or "CHACHA20" in name or "CCM" in name) and "CCM8" not in name and "CCM_8" not in name


def baseline(message: str | bytes = PAYMENT, *, tls: bool = True, version: str = "1.3") -> Baseline:
    """Run the exchange untouched and label every record with what it carries."""
    data = _message(message)
    version = _version(version)
    if not tls:
        result = _run(data, (), tls=False, version=version)
        return Baseline(data, "plaintext", None, result.capture, {d: [] for d in DIRECTIONS}, False)
    keylog = private_folder() / f"integrity-{os.urandom(6).hex()}.keys"
    try:
        result = _run(data, (), tls=True, version=version, keylog=str(keylog))
        keys = keylog.read_bytes() if keylog.exists() else b""
    finally:
        keylog.unlink(missing_ok=True)
    if result.client_error is not None or result.server_error is not None:
        raise RuntimeError(f"the untouched exchange failed: {result}")
    cipher = result.report.cipher if result.report else None
    wire = {d: tls_records(result.capture, d) for d in DIRECTIONS}
    records, decrypted = _label(result.capture, wire, keys, version, cipher)
    return Baseline(data, f"TLS {version}", cipher, result.capture, records, decrypted)


def _label(
    capture: Capture, wire: dict[str, list[WireRecord]], keys: bytes, version: str, cipher: str | None
) -> tuple[dict[str, list[BaselineRecord]], bool]:
    """Each wire record with what it carries: decrypted with the key log, else the wire's own labels."""
    inner: dict[tuple[str, int], tuple[str, int, bytes | None, int | None]] = {}
    decrypted = False
    try:
        from .decrypt import decrypt_capture

        # The capture's timed chunks give the real order of the two directions (bare byte
        # streams would leave the decryptor to infer it from TLS's turn-taking).
        session = decrypt_capture(capture, keylog=keys)
        for r in session.records:
            direction = CLIENT_TO_SERVER if r.direction == "client" else SERVER_TO_CLIENT
            plaintext = r.plaintext if r.content_type == 23 and r.encrypted else None
            content = r.describe()
            if plaintext is not None:
                content = f"application data {_show(plaintext)}"
            inner[(direction, r.record.offset)] = (content, r.content_type, plaintext, r.sequence_number)
        decrypted = True
    except (ImportError, ValueError):
        inner = {}  # labels from the wire alone (see tls_records)
    out: dict[str, list[BaselineRecord]] = {}
    for d in DIRECTIONS:
        rows = []
        for w in wire[d]:
            content, _, plaintext, sequence = inner.get((d, w.offset), (w.label, w.content_type, None, None))
            payload_at = None
            if plaintext is not None and _aead(cipher):
                # header, [TLS 1.2: explicit nonce], plaintext, [TLS 1.3: inner type], 16-byte tag
                payload_at = w.size - 16 - (1 if version == "1.3" else 0) - len(plaintext)
            rows.append(BaselineRecord(d, w.index, w.offset, w.size, w.type_name, content, plaintext, payload_at, sequence))
        out[d] = rows
    return out, decrypted


# --- presets: the attacks the lesson shows ------------------------------------------------------------


def payment_forgery(
    original: bytes | str = PAYMENT, wanted: bytes | str = FORGED_PAYMENT, *, tls: bool = False, version: str = "1.3"
) -> FlipBits:
    """The bit flips that turn ``original`` into ``wanted`` in flight (client→server).

    The mask is ``xor_mask`` of the bytes that differ, placed where they cross the wire: at
    their offset in a plaintext stream; over TLS, at the ciphertext bytes that encrypt them
    (AES-GCM and ChaCha20 encrypt by XOR with a keystream, so flipping a ciphertext bit flips
    the same plaintext bit — it is the authentication tag that stops the forgery).
    """
    a = original.encode() if isinstance(original, str) else bytes(original)
    b = wanted.encode() if isinstance(wanted, str) else bytes(wanted)
    mask = xor_mask(a, b)
    if not any(mask):
        raise ValueError("the wanted message is the original: there is nothing to flip")
    first = next(i for i, m in enumerate(mask) if m)
    last = max(i for i, m in enumerate(mask) if m)
    mask = mask[first : last + 1]
    base = baseline(a, tls=tls, version=version)
    record, at = base.locate(a, CLIENT_TO_SERVER)
    if record is None:
        return FlipBits(CLIENT_TO_SERVER, offset=at + first, mask=mask)
    return FlipBits(CLIENT_TO_SERVER, record=record, byte=at + first, mask=mask)


def data_bit_flip(
    *, version: str = "1.3", direction: str = CLIENT_TO_SERVER, byte: int | None = None, bit: int = 0,
    message: bytes | str = PAYMENT,
) -> FlipBit:
    """Flip one bit of the first application-data record in ``direction`` (default: the first
    byte that carries the message)."""
    rec = baseline(message, version=version).data_record(direction)
    if byte is None:
        byte = rec.payload_at if rec.payload_at is not None else 5
    return FlipBit(direction, record=rec.index, byte=byte, bit=bit)


def data_replay(*, version: str = "1.3", direction: str = CLIENT_TO_SERVER, times: int = 1, message: bytes | str = PAYMENT) -> Replay:
    """Send the first application-data record in ``direction`` again, right after itself."""
    rec = baseline(message, version=version).data_record(direction)
    return Replay(direction, record=rec.index, times=times)


def reply_truncation(*, version: str = "1.3", message: bytes | str = PAYMENT) -> Truncate:
    """Cut the server→client stream right after the record carrying the reply: the reply
    arrives whole, the server's close_notify never does."""
    rec = baseline(message, version=version).data_record(SERVER_TO_CLIENT)
    return Truncate(SERVER_TO_CLIENT, after_record=rec.index)
