"""Decrypt captured TLS sessions: TLS 1.3 from a key log, TLS 1.2 from a key log or the server's RSA key.

The pieces a lesson shows, each a few lines:

* :func:`hkdf_expand_label` — TLS 1.3's way of turning one secret into many (RFC 8446, 7.1);
* :func:`traffic_keys` — a traffic secret becomes an AEAD key and IV;
* :func:`record_nonce` — each record's nonce: the IV XOR the record's sequence number;
* :func:`decrypt_tls13_record` — open the AEAD, strip the padding and the inner content type;
* :func:`finished_verify_data` — the HMAC over the transcript that the Finished message carries;
* :func:`prf`, :func:`master_secret`, :func:`tls12_keys` — TLS 1.2's key derivation;
* :func:`decrypt_premaster` — static RSA: the server's private key opens the premaster secret,
  which is why a stolen key decrypts every recorded static-RSA session (no forward secrecy).

And one call for a whole capture::

    >>> session = decrypt_session(client_bytes, server_bytes, keylog="keys.txt")   # doctest: +SKIP
    >>> session.server_data                                                       # doctest: +SKIP
    b'hello'

Wrong keys, tampered records and sessions the given secrets cannot open raise
:class:`DecryptError` (a ``ValueError``), never a bare ``InvalidTag``; malformed bytes raise
:class:`~tlslab.records.RecordError`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from .keylog import KeyLog, KeyLogError, SessionSecrets, parse_keylog, read_keylog
from .records import (
    Alert,
    ClientHello,
    ClientKeyExchange,
    Finished,
    HandshakeMessage,
    HelloRetryRequest,
    KeyUpdate,
    NewSessionTicket,
    Record,
    ServerHello,
    ServerHelloDone,
    capture_chunks,
    interleave,
    parse_handshake,
    parse_messages,
)

__all__ = [
    "CipherSuite",
    "DecryptError",
    "DecryptedRecord",
    "DecryptedSession",
    "SUITES",
    "Tls12Keys",
    "TrafficKeys",
    "decrypt_capture",
    "decrypt_premaster",
    "decrypt_session",
    "decrypt_tls12_record",
    "decrypt_tls13_record",
    "finished_verify_data",
    "hkdf_expand",
    "hkdf_expand_label",
    "hkdf_extract",
    "master_secret",
    "next_traffic_secret",
    "prf",
    "record_nonce",
    "tls12_finished_verify_data",
    "tls12_keys",
    "traffic_keys",
    "transcript_hash",
]


class DecryptError(ValueError):
    """A record did not decrypt (wrong secrets, tampered bytes), or nothing given can decrypt it."""


# --- the cipher suites this module decrypts ----------------------------------------------------


@dataclass(frozen=True)
class CipherSuite:
    """What decryption needs to know about a suite: its AEAD, key and IV sizes, and hash."""

    code: int
    name: str
    version: str  # "TLS 1.3" or "TLS 1.2"
    aead: str  # "AES-GCM" or "ChaCha20-Poly1305"
    key_length: int
    iv_length: int  # TLS 1.3: the 12-byte IV; TLS 1.2: the fixed part (4 for GCM, 12 for ChaCha)
    hash: str  # "sha256" or "sha384": for HKDF / the PRF and the transcript
    key_exchange: str | None = None  # TLS 1.2: "ECDHE", "DHE" or "RSA"

    @property
    def hash_length(self) -> int:
        return hashlib.new(self.hash).digest_size

    def new_aead(self, key: bytes) -> AESGCM | ChaCha20Poly1305:
        return AESGCM(key) if self.aead == "AES-GCM" else ChaCha20Poly1305(key)


SUITES: dict[int, CipherSuite] = {
    s.code: s
    for s in (
        CipherSuite(0x1301, "TLS_AES_128_GCM_SHA256", "TLS 1.3", "AES-GCM", 16, 12, "sha256"),
        CipherSuite(0x1302, "TLS_AES_256_GCM_SHA384", "TLS 1.3", "AES-GCM", 32, 12, "sha384"),
        CipherSuite(0x1303, "TLS_CHACHA20_POLY1305_SHA256", "TLS 1.3", "ChaCha20-Poly1305", 32, 12, "sha256"),
        CipherSuite(0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS 1.2", "AES-GCM", 16, 4, "sha256", "ECDHE"),
        CipherSuite(0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS 1.2", "AES-GCM", 32, 4, "sha384", "ECDHE"),
        CipherSuite(0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS 1.2", "AES-GCM", 16, 4, "sha256", "ECDHE"),
        CipherSuite(0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS 1.2", "AES-GCM", 32, 4, "sha384", "ECDHE"),
        CipherSuite(0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "TLS 1.2", "ChaCha20-Poly1305", 32, 12, "sha256", "ECDHE"),
        CipherSuite(0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS 1.2", "ChaCha20-Poly1305", 32, 12, "sha256", "ECDHE"),
        CipherSuite(0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "TLS 1.2", "AES-GCM", 16, 4, "sha256", "DHE"),
        CipherSuite(0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "TLS 1.2", "AES-GCM", 32, 4, "sha384", "DHE"),
        CipherSuite(0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "TLS 1.2", "ChaCha20-Poly1305", 32, 12, "sha256", "DHE"),
        CipherSuite(0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS 1.2", "AES-GCM", 16, 4, "sha256", "RSA"),
        CipherSuite(0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384", "TLS 1.2", "AES-GCM", 32, 4, "sha384", "RSA"),
    )
}


def _suite(code: int) -> CipherSuite:
    if code not in SUITES:
        from .records import cipher_suite_name

        raise DecryptError(
            f"{cipher_suite_name(code)} is not one this decryptor handles: it decrypts the AEAD suites "
            f"({', '.join(s.name for s in SUITES.values())})"
        )
    return SUITES[code]


# --- TLS 1.3: HKDF and the key schedule ---------------------------------------------------------


def hkdf_extract(salt: bytes, ikm: bytes, hash_name: str = "sha256") -> bytes:
    """HKDF-Extract (RFC 5869): concentrate the input keying material into one secret."""
    if not salt:
        salt = bytes(hashlib.new(hash_name).digest_size)
    return hmac.new(salt, ikm, hash_name).digest()


def hkdf_expand(secret: bytes, info: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """HKDF-Expand (RFC 5869): stretch a secret into ``length`` bytes, bound to ``info``.

    T(1) = HMAC(secret, info | 0x01), T(2) = HMAC(secret, T(1) | info | 0x02), …; output = T(1) | T(2) | …
    """
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        block = hmac.new(secret, block + info + bytes([counter]), hash_name).digest()
        output += block
        counter += 1
    return output[:length]


def hkdf_expand_label(secret: bytes, label: str | bytes, context: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """HKDF-Expand-Label (RFC 8446, 7.1): every TLS 1.3 key comes out of this function.

    The ``info`` it passes to HKDF-Expand is the structure ``HkdfLabel``::

        uint16 length;                    -- how many bytes we want
        opaque label<7..255> = "tls13 " + label;
        opaque context<0..255>;           -- usually a transcript hash, or empty
    """
    if isinstance(label, str):
        label = label.encode("ascii")
    full_label = b"tls13 " + label
    hkdf_label = (
        length.to_bytes(2, "big")
        + len(full_label).to_bytes(1, "big") + full_label
        + len(context).to_bytes(1, "big") + context
    )
    return hkdf_expand(secret, hkdf_label, length, hash_name)


def next_traffic_secret(secret: bytes, hash_name: str = "sha256") -> bytes:
    """After a KeyUpdate: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length)."""
    return hkdf_expand_label(secret, "traffic upd", b"", hashlib.new(hash_name).digest_size, hash_name)


@dataclass
class TrafficKeys:
    """The AEAD key and IV derived from one traffic secret (one direction, one phase)."""

    suite: CipherSuite
    secret: bytes
    key: bytes
    iv: bytes
    label: str = ""  # which secret, in words ("server handshake", …)

    def __post_init__(self) -> None:
        self._aead = self.suite.new_aead(self.key)  # made once: a 10 MB capture has hundreds of records

    def __repr__(self) -> str:
        return f"<TrafficKeys {self.label or self.suite.name}: key {self.key.hex()}, iv {self.iv.hex()}>"


def traffic_keys(secret: bytes, suite: CipherSuite | int, label: str = "") -> TrafficKeys:
    """A TLS 1.3 traffic secret → its write key and IV (RFC 8446, 7.3)::

    key = HKDF-Expand-Label(secret, "key", "", key_length)
    iv  = HKDF-Expand-Label(secret, "iv",  "", 12)
    """
    suite = SUITES[suite] if isinstance(suite, int) else suite
    key = hkdf_expand_label(secret, "key", b"", suite.key_length, suite.hash)
    iv = hkdf_expand_label(secret, "iv", b"", suite.iv_length, suite.hash)
    return TrafficKeys(suite, secret, key, iv, label)


def record_nonce(iv: bytes, sequence_number: int) -> bytes:
    """The per-record nonce (RFC 8446, 5.3): the IV XOR the 64-bit sequence number, left-padded.

    Each direction counts its records from 0 (again from 0 at every key change), so no nonce is
    ever used twice with the same key, and a reordered or dropped record fails to decrypt.
    """
    padded = sequence_number.to_bytes(len(iv), "big")
    return bytes(a ^ b for a, b in zip(iv, padded))


def decrypt_tls13_record(keys: TrafficKeys, sequence_number: int, record: Record | bytes) -> tuple[int, bytes]:
    """Open one TLS 1.3 record; return ``(inner content type, plaintext)``.

    The additional data is the record header (5 bytes, as sent). The decrypted TLSInnerPlaintext
    is ``content | content_type | zeros``: strip the zero padding, then the type byte.
    """
    raw = record.raw if isinstance(record, Record) else bytes(record)
    header, ciphertext = raw[:5], raw[5:]
    try:
        inner = keys._aead.decrypt(record_nonce(keys.iv, sequence_number), ciphertext, header)
    except InvalidTag:
        raise DecryptError(
            f"record {sequence_number} does not decrypt with the {keys.label or 'given'} key: "
            "the key log belongs to another connection, or the record was altered"
        ) from None
    except ValueError as exc:  # e.g. shorter than the 16-byte tag
        raise DecryptError(f"record {sequence_number} cannot be decrypted: {exc}") from None
    content = inner.rstrip(b"\x00")
    if not content:
        raise DecryptError(f"record {sequence_number} decrypted to padding only: no content type")
    return content[-1], content[:-1]


def finished_verify_data(base_key: bytes, transcript_hash: bytes, hash_name: str = "sha256") -> bytes:
    """What a TLS 1.3 Finished must carry (RFC 8446, 4.4.4)::

    finished_key = HKDF-Expand-Label(base_key, "finished", "", Hash.length)
    verify_data  = HMAC(finished_key, Transcript-Hash(every handshake message so far))

    ``base_key`` is the sender's handshake traffic secret.
    """
    finished_key = hkdf_expand_label(base_key, "finished", b"", hashlib.new(hash_name).digest_size, hash_name)
    return hmac.new(finished_key, transcript_hash, hash_name).digest()


def transcript_hash(messages: Sequence[HandshakeMessage | bytes], hash_name: str = "sha256") -> bytes:
    """Transcript-Hash: the hash of the handshake messages, concatenated (header included).

    After a HelloRetryRequest the first ClientHello is replaced by a synthetic ``message_hash``
    message holding its hash (RFC 8446, 4.4.1); pass the messages as they were sent.
    """
    raws = [m.raw if isinstance(m, HandshakeMessage) else bytes(m) for m in messages]
    hrr_at = next((i for i, m in enumerate(messages) if isinstance(m, HelloRetryRequest)), None)
    if hrr_at is not None and hrr_at >= 1:
        first = hashlib.new(hash_name, b"".join(raws[:hrr_at])).digest()
        raws = [bytes([254, 0, 0, len(first)]) + first, *raws[hrr_at:]]
    return hashlib.new(hash_name, b"".join(raws)).digest()


# --- TLS 1.2: the PRF, the master secret, the key block -------------------------------------------


def prf(secret: bytes, label: str | bytes, seed: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """The TLS 1.2 PRF (RFC 5246, 5): P_hash(secret, label + seed).

    A(0) = label + seed, A(i) = HMAC(secret, A(i-1)); output = HMAC(secret, A(1) + label + seed) | HMAC(secret, A(2) + …) | …
    """
    if isinstance(label, str):
        label = label.encode("ascii")
    seed = label + seed
    output = b""
    a = seed
    while len(output) < length:
        a = hmac.new(secret, a, hash_name).digest()
        output += hmac.new(secret, a + seed, hash_name).digest()
    return output[:length]


def master_secret(
    premaster: bytes,
    client_random: bytes,
    server_random: bytes,
    hash_name: str = "sha256",
    session_hash: bytes | None = None,
) -> bytes:
    """The 48-byte TLS 1.2 master secret from the premaster secret.

    With extended_master_secret (RFC 7627) it is bound to the whole handshake so far
    (``session_hash``) instead of the two randoms.
    """
    if session_hash is not None:
        return prf(premaster, "extended master secret", session_hash, 48, hash_name)
    return prf(premaster, "master secret", client_random + server_random, 48, hash_name)


@dataclass
class Tls12Keys:
    """One direction's TLS 1.2 AEAD key and fixed IV (from the key block)."""

    suite: CipherSuite
    key: bytes
    iv: bytes
    label: str = ""

    def __post_init__(self) -> None:
        self._aead = self.suite.new_aead(self.key)

    def __repr__(self) -> str:
        return f"<Tls12Keys {self.label or self.suite.name}: key {self.key.hex()}, iv {self.iv.hex()}>"


def tls12_keys(master: bytes, client_random: bytes, server_random: bytes, suite: CipherSuite | int) -> tuple[Tls12Keys, Tls12Keys]:
    """The key block (RFC 5246, 6.3) cut into (client write keys, server write keys).

    key_block = PRF(master, "key expansion", server_random + client_random); AEAD suites have no
    MAC keys, so it is: client key, server key, client IV, server IV.
    """
    suite = SUITES[suite] if isinstance(suite, int) else suite
    n, m = suite.key_length, suite.iv_length
    block = prf(master, "key expansion", server_random + client_random, 2 * n + 2 * m, suite.hash)
    client_key, server_key = block[:n], block[n : 2 * n]
    client_iv, server_iv = block[2 * n : 2 * n + m], block[2 * n + m :]
    return Tls12Keys(suite, client_key, client_iv, "client write"), Tls12Keys(suite, server_key, server_iv, "server write")


def decrypt_tls12_record(keys: Tls12Keys, sequence_number: int, record: Record | bytes) -> bytes:
    """Open one TLS 1.2 AEAD record.

    AES-GCM: nonce = fixed IV (4 bytes) + explicit nonce (the fragment's first 8 bytes).
    ChaCha20-Poly1305 (RFC 7905): nonce = IV XOR sequence number, as in TLS 1.3.
    Additional data = sequence number (8) + type + version + plaintext length.
    """
    raw = record.raw if isinstance(record, Record) else bytes(record)
    header, fragment = raw[:5], raw[5:]
    if keys.suite.aead == "AES-GCM":
        if len(fragment) < 8 + 16:
            raise DecryptError(f"record {sequence_number} is too short for AES-GCM ({len(fragment)} bytes)")
        nonce, ciphertext = keys.iv + fragment[:8], fragment[8:]
    else:
        nonce, ciphertext = record_nonce(keys.iv, sequence_number), fragment
    plaintext_length = len(ciphertext) - 16
    if plaintext_length < 0:
        raise DecryptError(f"record {sequence_number} is shorter than its 16-byte tag")
    aad = sequence_number.to_bytes(8, "big") + header[:3] + plaintext_length.to_bytes(2, "big")
    try:
        return keys._aead.decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise DecryptError(
            f"record {sequence_number} does not decrypt with the {keys.label or 'given'} key: "
            "wrong master secret (another connection's key log, or the wrong server key), or the record was altered"
        ) from None


def tls12_finished_verify_data(master: bytes, label: str, messages: Sequence[HandshakeMessage], hash_name: str = "sha256") -> bytes:
    """TLS 1.2 Finished: PRF(master, "client finished"/"server finished", Hash(messages))[:12]."""
    digest = hashlib.new(hash_name, b"".join(m.raw for m in messages)).digest()
    return prf(master, label, digest, 12, hash_name)


def decrypt_premaster(encrypted: bytes, server_key: Any) -> bytes:
    """Static RSA: the server's private key decrypts the premaster secret (PKCS #1 v1.5).

    Anyone holding the key — today or years later — can do this for every recorded session
    that used RSA key exchange.
    """
    key = _load_private_key(server_key)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DecryptError(f"the server key is {type(key).__name__.lstrip('_')}, not RSA: it cannot decrypt a premaster secret")
    try:
        premaster = key.decrypt(encrypted, padding.PKCS1v15())
    except ValueError:
        raise DecryptError("the server key does not decrypt this premaster secret: it is not this server's key") from None
    if len(premaster) != 48:
        # OpenSSL's implicit rejection returns random bytes for a wrong key instead of failing.
        raise DecryptError(f"the decrypted premaster secret is {len(premaster)} bytes, not 48: wrong server key")
    return premaster


def _load_private_key(server_key: Any) -> Any:
    """A cryptography private key, a Credential (its .private_key), PEM bytes, or a PEM file path."""
    if hasattr(server_key, "private_key") and not hasattr(server_key, "decrypt"):
        server_key = server_key.private_key
    if isinstance(server_key, (str, Path)) and Path(server_key).exists():
        server_key = Path(server_key).read_bytes()
    if isinstance(server_key, str):
        server_key = server_key.encode()
    if isinstance(server_key, bytes):
        try:
            return serialization.load_pem_private_key(server_key, password=None)
        except (ValueError, TypeError) as exc:
            raise DecryptError(f"the server key is not a readable PEM private key: {exc}") from None
    if server_key is None:
        raise DecryptError("no server key given")
    return server_key


# --- a whole session ----------------------------------------------------------------------------

CONTENT_NAMES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data", 24: "heartbeat"}


@dataclass(eq=False, repr=False)
class DecryptedRecord:
    """One record of the capture, with what it carried once decrypted.

    ``content_type`` is the real one (TLS 1.3 hides it inside the encryption: on the wire every
    record after the ServerHello says application_data). ``keys`` names the secret used.
    """

    record: Record
    content_type: int
    plaintext: bytes | None
    encrypted: bool
    sequence_number: int | None = None
    keys: str | None = None
    messages: list[HandshakeMessage] = field(default_factory=list)
    alert: Alert | None = None
    error: str | None = None

    @property
    def direction(self) -> str:
        return self.record.direction or "?"

    @property
    def content_name(self) -> str:
        return CONTENT_NAMES.get(self.content_type, str(self.content_type))

    def describe(self) -> str:
        if self.error:
            return f"not decrypted: {self.error}"
        if self.messages:
            return ", ".join(m.name for m in self.messages)
        if self.alert:
            return f"Alert {self.alert.level_name} {self.alert.description_name}"
        if self.content_type == 23 and self.plaintext is not None:
            return f"application data {_preview(self.plaintext)}"
        if not self.encrypted:
            return self.record.describe()
        return self.content_name

    def __repr__(self) -> str:
        how = f" [{self.keys} #{self.sequence_number}]" if self.encrypted and self.keys else ""
        return f"<{self.direction} → {self.describe()}{how}>"


def _preview(data: bytes, limit: int = 40) -> str:
    text = repr(data[:limit])
    return text + (f"… ({len(data)} bytes)" if len(data) > limit else "")


@dataclass(eq=False, repr=False)
class DecryptedSession:
    """A captured connection, decrypted: every record in order, and what the checks found."""

    version: str
    cipher_suite: str
    client_random: bytes
    records: list[DecryptedRecord]
    method: str  # how it was decrypted: "key log" or "server RSA key"
    server_finished_ok: bool | None = None
    client_finished_ok: bool | None = None
    problem: str | None = None

    @property
    def messages(self) -> list[HandshakeMessage]:
        """Every handshake message, plaintext and decrypted, in order."""
        return [m for r in self.records for m in r.messages]

    def application_data(self, direction: str | None = None) -> bytes:
        """The application bytes sent by ``direction`` ("client"/"server"), or by both, in order."""
        return b"".join(
            r.plaintext or b""
            for r in self.records
            if r.content_type == 23 and r.encrypted and (direction is None or r.direction == direction)
        )

    @property
    def client_data(self) -> bytes:
        return self.application_data("client")

    @property
    def server_data(self) -> bytes:
        return self.application_data("server")

    def rows(self) -> list[tuple[str, str, str, int]]:
        """(direction, type, what, plaintext size) per record."""
        return [(r.direction, r.content_name, r.describe(), len(r.plaintext or b"")) for r in self.records]

    def __repr__(self) -> str:
        checks = []
        if self.server_finished_ok is not None:
            checks.append(f"server Finished {'verified' if self.server_finished_ok else 'WRONG'}")
        if self.client_finished_ok is not None:
            checks.append(f"client Finished {'verified' if self.client_finished_ok else 'WRONG'}")
        checks_text = f"; {', '.join(checks)}" if checks else ""
        lines = [f"<DecryptedSession {self.version} {self.cipher_suite} via {self.method}{checks_text}>"]
        for r in self.records[:60]:
            arrow = "client → server" if r.direction == "client" else "server → client"
            lines.append(f"  {arrow}  {r.describe()}")
        if len(self.records) > 60:
            lines.append(f"  … {len(self.records) - 60} more records")
        if self.problem:
            lines.append(f"  stopped: {self.problem}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td>{'client → server' if r.direction == 'client' else 'server → client'}</td>"
            f"<td>{'🔒 ' if r.encrypted else ''}{html.escape(r.content_name)}</td>"
            f"<td style='text-align:left'>{html.escape(r.describe())}</td></tr>"
            for r in self.records[:200]
        )
        ok = "" if self.server_finished_ok is None else (" — server Finished ✓" if self.server_finished_ok else " — server Finished ✗")
        return (
            f"<div class='tlslab-decrypted'><b>{html.escape(self.version)} {html.escape(self.cipher_suite)}</b>"
            f" decrypted with the {html.escape(self.method)}{ok}<table>{body}</table></div>"
        )


def _load_keylog(keylog: Any) -> KeyLog | None:
    if keylog is None or isinstance(keylog, KeyLog):
        return keylog
    if isinstance(keylog, Path):
        return read_keylog(keylog)
    if isinstance(keylog, str):
        if "\n" not in keylog and os.path.exists(keylog):
            return read_keylog(keylog)
        return parse_keylog(keylog)
    if isinstance(keylog, (bytes, bytearray)):
        return parse_keylog(bytes(keylog))
    raise TypeError(f"keylog must be a KeyLog, a path or key log text, not {type(keylog).__name__}")


class _Direction:
    """One direction's decryption state: current keys, sequence number, pending handshake bytes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.keys: Any = None
        self.seq = 0
        self.buffer = b""
        self.broken: str | None = None

    def switch(self, keys: Any) -> None:
        self.keys, self.seq = keys, 0  # every new key starts counting records from zero


def _read_messages(state: _Direction, plaintext: bytes, tls13: bool, kx: str | None, lenient: bool) -> list[HandshakeMessage]:
    """Append decrypted handshake bytes; return the messages now complete (they may span records)."""
    state.buffer += plaintext
    out: list[HandshakeMessage] = []
    while len(state.buffer) >= 4:
        length = int.from_bytes(state.buffer[1:4], "big")
        if len(state.buffer) < 4 + length:
            break
        raw, state.buffer = state.buffer[: 4 + length], state.buffer[4 + length :]
        for m in parse_messages(raw, tls13=tls13, key_exchange=kx, lenient=lenient):
            m.direction = state.name
            out.append(m)
    return out


def decrypt_session(
    client: bytes | Sequence[tuple[float, bytes]],
    server: bytes | Sequence[tuple[float, bytes]],
    *,
    keylog: KeyLog | str | Path | bytes | None = None,
    server_key: Any = None,
    lenient: bool = False,
) -> DecryptedSession:
    """Decrypt a captured connection (each side's bytes, or ``(time, bytes)`` chunks).

    TLS 1.3 needs the key log's traffic secrets. TLS 1.2 needs the key log's ``CLIENT_RANDOM``
    line, or — for static-RSA suites only — the server's RSA private key (``server_key``: a
    key, a :class:`~tlslab.pki.Credential`, PEM bytes or a PEM file). Raises
    :class:`DecryptError` when the secrets are missing or wrong; with ``lenient=True`` it stops
    at the first record that fails and says so in ``problem``.
    """
    hs = parse_handshake(client, server, lenient=lenient)
    hellos = [m for m in hs.client.messages if isinstance(m, ClientHello)]
    hello = hs.server_hello
    if not hellos or hello is None:
        raise DecryptError("the capture has no ClientHello and ServerHello in the clear: nothing says which keys to use")
    suite = _suite(hello.cipher_suite)
    log = _load_keylog(keylog)
    if suite.version == "TLS 1.3" and hello.version == "TLS 1.3":
        if log is None:
            raise DecryptError(
                "TLS 1.3 needs the key log: its keys come from an ephemeral (EC)DHE secret that was never "
                "sent, so not even the server's private key can recover them (forward secrecy)"
            )
        try:
            secrets = log[hellos[-1].random]
        except KeyLogError as exc:
            raise DecryptError(str(exc)) from None
        return _decrypt_tls13(hs, suite, secrets, lenient)
    if hello.version != "TLS 1.2" or suite.version != "TLS 1.2":
        raise DecryptError(f"{hello.version} with {suite.name}: this decryptor reads TLS 1.2 and TLS 1.3 only")
    return _decrypt_tls12(hs, suite, hellos[0], hello, log, server_key, lenient)


def decrypt_capture(capture: Any, *, keylog: Any = None, server_key: Any = None, lenient: bool = False) -> DecryptedSession:
    """:func:`decrypt_session` for a capture of one connection (e.g. a :class:`tlslab.wire.Capture`),
    keeping the real order of the records from the chunks' times."""
    chunks = capture_chunks(capture)
    return decrypt_session(
        [(t, d) for side, t, d in chunks if side == "client"],
        [(t, d) for side, t, d in chunks if side == "server"],
        keylog=keylog,
        server_key=server_key,
        lenient=lenient,
    )


def _plain(record: Record) -> DecryptedRecord:
    alert = next((i for i in record.items if isinstance(i, Alert)), None)
    return DecryptedRecord(record, record.content_type, record.fragment, False, messages=record.messages, alert=alert)


def _finish(hs: Any, decrypted: dict[int, DecryptedRecord], ends: dict[int, bool]) -> list[DecryptedRecord]:
    ordered = interleave(hs.client, hs.server, lambda r: ends.get(id(r), False))
    return [decrypted[id(r)] for r in ordered]


def _turn_ends(records: list[DecryptedRecord], finished_waits: bool = True) -> dict[int, bool]:
    """Which records end their sender's flight, now that their contents are known.

    ``finished_waits``: False when this side's Finished is the last of the handshake and it
    goes straight on with its data (the client of a resumed TLS 1.2 session).
    """
    ends: dict[int, bool] = {}
    waits = (ClientHello, HelloRetryRequest, ServerHelloDone, Finished) if finished_waits else (ClientHello, HelloRetryRequest, ServerHelloDone)
    for i, r in enumerate(records):
        kinds = r.messages
        end = any(isinstance(m, waits) for m in kinds)
        if r.encrypted and kinds and all(isinstance(m, NewSessionTicket) for m in kinds):
            # TLS 1.3 tickets come in a run after the client's Finished; the run ends the turn.
            nxt = records[i + 1] if i + 1 < len(records) else None
            end = nxt is None or not (nxt.messages and all(isinstance(m, NewSessionTicket) for m in nxt.messages))
        if r.encrypted and r.content_type in (21, 23):
            end = True
        ends[id(r.record)] = end
    return ends


def _decrypt_tls13(hs: Any, suite: CipherSuite, secrets: SessionSecrets, lenient: bool) -> DecryptedSession:
    def keys(name: str, label: str) -> TrafficKeys:
        try:
            return traffic_keys(secrets.require(name), suite, label)
        except KeyLogError as exc:
            raise DecryptError(str(exc)) from None

    problem: str | None = None
    server_messages: list[HandshakeMessage] = []  # decrypted, in order
    client_messages: list[HandshakeMessage] = []
    results: dict[str, list[DecryptedRecord]] = {"client": [], "server": []}
    for side, records in (("server", hs.server), ("client", hs.client)):
        state = _Direction(side)
        state.switch(keys(f"{side}_handshake_traffic_secret", f"{side} handshake"))
        in_handshake = True
        for record in records:
            if not record.encrypted or record.content_type != 23:
                results[side].append(_plain(record))
                continue
            if state.broken:
                results[side].append(DecryptedRecord(record, 23, None, True, error=state.broken))
                continue
            seq = state.seq
            try:
                content_type, plaintext = decrypt_tls13_record(state.keys, seq, record)
            except DecryptError as exc:
                message = f"{side} {exc}"
                if not lenient:
                    raise DecryptError(message) from None
                problem = problem or message
                state.broken = str(exc)
                results[side].append(DecryptedRecord(record, 23, None, True, seq, state.keys.label, error=str(exc)))
                continue
            state.seq += 1
            out = DecryptedRecord(record, content_type, plaintext, True, seq, state.keys.label)
            if content_type == 22:
                out.messages = _read_messages(state, plaintext, True, None, lenient)
                (server_messages if side == "server" else client_messages).extend(out.messages)
            elif content_type == 21 and len(plaintext) == 2:
                out.alert = Alert(plaintext[0], plaintext[1], None, side)
            results[side].append(out)
            for m in out.messages:
                if isinstance(m, Finished) and in_handshake:
                    # The handshake keys end with Finished; application keys start with the next record.
                    state.switch(keys(f"{side}_traffic_secret_0", f"{side} application"))
                    in_handshake = False
                elif isinstance(m, KeyUpdate):
                    nxt = next_traffic_secret(state.keys.secret, suite.hash)
                    state.switch(TrafficKeys(suite, nxt, *_key_iv(nxt, suite), f"{side} application (updated)"))
    plain = [m for r in hs.records for m in r.messages]  # ClientHello(s), HelloRetryRequest, ServerHello
    server_ok = client_ok = None
    s_fin = next((m for m in server_messages if isinstance(m, Finished)), None)
    if s_fin is not None:
        before = server_messages[: server_messages.index(s_fin)]
        expected = finished_verify_data(secrets.require("server_handshake_traffic_secret"), transcript_hash([*plain, *before], suite.hash), suite.hash)
        server_ok = hmac.compare_digest(expected, s_fin.verify_data)
        c_fin = next((m for m in client_messages if isinstance(m, Finished)), None)
        if c_fin is not None:
            upto = server_messages[: server_messages.index(s_fin) + 1]
            client_before = client_messages[: client_messages.index(c_fin)]
            expected = finished_verify_data(
                secrets.require("client_handshake_traffic_secret"), transcript_hash([*plain, *upto, *client_before], suite.hash), suite.hash
            )
            client_ok = hmac.compare_digest(expected, c_fin.verify_data)
    decrypted = {id(r.record): r for side in results.values() for r in side}
    ends = {**_turn_ends(results["client"]), **_turn_ends(results["server"])}
    return DecryptedSession(
        "TLS 1.3", suite.name, secrets.client_random, _finish(hs, decrypted, ends), "key log", server_ok, client_ok, problem or hs.problem
    )


def _key_iv(secret: bytes, suite: CipherSuite) -> tuple[bytes, bytes, bytes]:
    k = traffic_keys(secret, suite)
    return k.secret, k.key, k.iv


def _decrypt_tls12(
    hs: Any, suite: CipherSuite, client_hello: ClientHello, hello: ServerHello, log: KeyLog | None, server_key: Any, lenient: bool
) -> DecryptedSession:
    client_random, server_random = client_hello.random, hello.random
    plain = [m for r in hs.records for m in r.messages]
    master = None
    method = "key log"
    if log is not None and client_random in log and log[client_random].master_secret is not None:
        master = log[client_random].master_secret
    elif server_key is not None:
        if suite.key_exchange != "RSA":
            raise DecryptError(
                f"this session used {suite.key_exchange} ({suite.name}): its premaster secret came from "
                "ephemeral keys that were never sent and are gone; the server's private key only signed "
                "them, so it cannot decrypt the session (forward secrecy). Only a key log can."
            )
        cke = next((m for m in plain if isinstance(m, ClientKeyExchange)), None)
        if cke is None or not cke.encrypted_premaster:
            raise DecryptError("no ClientKeyExchange with an encrypted premaster secret (a resumed session?): the server key cannot help")
        premaster = decrypt_premaster(cke.encrypted_premaster, server_key)
        ems = client_hello.extension("extended_master_secret") and hello.extension("extended_master_secret")
        session_hash = None
        if ems:  # RFC 7627: the hash of every handshake message up to and including ClientKeyExchange
            upto = plain[: plain.index(cke) + 1]
            session_hash = hashlib.new(suite.hash, b"".join(m.raw for m in upto)).digest()
        master = master_secret(premaster, client_random, server_random, suite.hash, session_hash)
        method = "server RSA key"
    else:
        where = "the key log has no CLIENT_RANDOM line for it" if log is not None else "no key log was given"
        rsa_hint = " or the server's RSA private key (server_key=)" if suite.key_exchange == "RSA" else ""
        raise DecryptError(f"cannot decrypt this TLS 1.2 session: {where}; it needs the key log{rsa_hint}")
    client_keys, server_keys = tls12_keys(master, client_random, server_random, suite)
    problem: str | None = None
    results: dict[str, list[DecryptedRecord]] = {"client": [], "server": []}
    decrypted_hs: dict[str, list[HandshakeMessage]] = {"client": [], "server": []}
    for side, records, keys in (("server", hs.server, server_keys), ("client", hs.client, client_keys)):
        state = _Direction(side)
        state.switch(keys)
        for record in records:
            if not record.encrypted:
                results[side].append(_plain(record))
                continue
            if state.broken:
                results[side].append(DecryptedRecord(record, record.content_type, None, True, error=state.broken))
                continue
            seq = state.seq
            try:
                plaintext = decrypt_tls12_record(keys, seq, record)
            except DecryptError as exc:
                message = f"{side} {exc}"
                if not lenient:
                    raise DecryptError(message) from None
                problem = problem or message
                state.broken = str(exc)
                results[side].append(DecryptedRecord(record, record.content_type, None, True, seq, keys.label, error=str(exc)))
                continue
            state.seq += 1
            out = DecryptedRecord(record, record.content_type, plaintext, True, seq, keys.label)
            if record.content_type == 22:
                out.messages = _read_messages(state, plaintext, False, suite.key_exchange, lenient)
                decrypted_hs[side].extend(out.messages)
            elif record.content_type == 21 and len(plaintext) == 2:
                out.alert = Alert(plaintext[0], plaintext[1], None, side)
            results[side].append(out)
    # The Finished checks. A full handshake: the client's Finished covers every message before
    # it; the server's adds the client's Finished and any NewSessionTicket. A resumed one
    # (no ClientKeyExchange): the server finishes first, over the hellos (and ticket).
    client_ok = server_ok = None
    c_fin = next((m for m in decrypted_hs["client"] if isinstance(m, Finished)), None)
    s_fin = next((m for m in decrypted_hs["server"] if isinstance(m, Finished)), None)
    full = any(isinstance(m, ClientKeyExchange) for m in plain)
    before = [m for m in plain if not isinstance(m, NewSessionTicket)]
    tickets = [m for m in plain if isinstance(m, NewSessionTicket)]
    if full and c_fin is not None:
        client_ok = hmac.compare_digest(tls12_finished_verify_data(master, "client finished", before, suite.hash), c_fin.verify_data)
        if s_fin is not None:
            expected = tls12_finished_verify_data(master, "server finished", [*before, c_fin, *tickets], suite.hash)
            server_ok = hmac.compare_digest(expected, s_fin.verify_data)
    elif not full and s_fin is not None:
        server_ok = hmac.compare_digest(tls12_finished_verify_data(master, "server finished", plain, suite.hash), s_fin.verify_data)
        if c_fin is not None:
            expected = tls12_finished_verify_data(master, "client finished", [*plain, s_fin], suite.hash)
            client_ok = hmac.compare_digest(expected, c_fin.verify_data)
    decrypted = {id(r.record): r for side in results.values() for r in side}
    ends = {**_turn_ends(results["client"], finished_waits=full), **_turn_ends(results["server"])}
    return DecryptedSession(
        "TLS 1.2", suite.name, client_random, _finish(hs, decrypted, ends), method, server_ok, client_ok, problem or hs.problem
    )
