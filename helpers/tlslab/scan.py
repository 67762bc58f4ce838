"""Scan a TLS server on this machine and grade it, like a tiny, offline ``testssl.sh``.

::

    >>> from tlslab.scan import scan
    >>> result = scan(server, ca=root)                      # doctest: +SKIP
    >>> result.exit_code, [f.key for f in result.findings]  # doctest: +SKIP
    (1, ['legacy_versions', 'cbc_suites'])
    >>> print(result)                                       # the full report, in plain words

or, from a terminal (``tlslab scan --help``)::

    tlslab scan 127.0.0.1:8443 --ca ca.pem --profile intermediate

What the scanner finds out, each with real handshakes against the server:

* **protocol versions**: one handshake per version, TLS 1.0 to 1.3, each offering that version
  alone. (SSL 3.0 is not probed: OpenSSL 3 cannot speak it at all, on either side.)
* **TLS 1.2 cipher suites**: every TLS 1.2 suite this machine's OpenSSL knows, offered one at a
  time (suites needing a pre-shared key or an SRP password are left out: a probe has neither).
  TLS 1.3 suites are not enumerated (Python cannot choose them); the one negotiated is shown.
* **the certificate**: the chain the server sent, its validity, the host name, the key and the
  signature algorithm; with ``ca`` the chain is verified up to that root by
  :func:`tlslab.verify.verify_chain`, without it the certificate counts as untrusted.
* **client certificates**: whether the server asks for one (a CertificateRequest message), and
  whether it insists (a handshake without one is refused; in TLS 1.3 the refusal only comes after
  the handshake, so the probe waits for the server's verdict). With ``cert``, a second probe
  presents that certificate.
* **session resumption**: TLS 1.2 session IDs and session tickets, TLS 1.3 tickets: connect, then
  connect again offering the session.

Then it grades the result against a named :class:`Profile` after Mozilla's server-side TLS
guidance: ``modern`` (TLS 1.3 only) or ``intermediate`` (TLS 1.2 and 1.3, ECDHE + AEAD suites
only), each optionally ``+mtls`` (a client certificate must be required). Every deviation is a
:class:`Finding` in plain words: severity, what, why it matters, how to fix it. The exit code is
for CI: 0 clean, 1 findings, 2 could not scan.

The probes come from THE SCANNER'S OWN PROBING CLIENT (:func:`scanner_probe_context`): it
verifies nothing and speaks TLS 1.0 at OpenSSL security level 0, because a scanner must see
whatever a server offers, weak or not. It exists for scanning; never use it to talk to a server.
The scanner only probes servers on the loopback (127.0.0.1, ::1, localhost): it refuses any
other address before sending a single byte.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import html
import ipaddress
import json
import math
import socket
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence, Union

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from .client import _await_verdict, connect
from .explain import Diagnosis, diagnose
from .pki import CertificateAuthority, Credential, describe_key
from .verify import ChainVerdict, verify_chain

__all__ = [
    "PROFILES",
    "SEVERITIES",
    "VERSIONS",
    "CertificateReport",
    "ClientAuthReport",
    "Finding",
    "Profile",
    "ResumptionReport",
    "ScanError",
    "ScanResult",
    "SuiteInfo",
    "VersionProbe",
    "accepted_suites",
    "add_command",
    "classify_suite",
    "main",
    "parse_target",
    "probe_suite",
    "probe_version",
    "scan",
    "scanner_probe_context",
    "tls12_suites",
]

#: The versions the scanner probes, newest first.
VERSIONS = ("TLS 1.3", "TLS 1.2", "TLS 1.1", "TLS 1.0")
_TLS_VERSION = {
    "TLS 1.0": ssl.TLSVersion.TLSv1,
    "TLS 1.1": ssl.TLSVersion.TLSv1_1,
    "TLS 1.2": ssl.TLSVersion.TLSv1_2,
    "TLS 1.3": ssl.TLSVersion.TLSv1_3,
}
_SSL_VERSION_LABEL = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}
_WIRE_VERSION = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}

#: Severities, worst first. ``info`` findings are reported but never fail a scan.
SEVERITIES = ("critical", "high", "medium", "low", "info")
Severity = Literal["critical", "high", "medium", "low", "info"]

#: Every suite OpenSSL has, at security level 0: what the probing client may offer.
_ALL_SUITES = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
# Key exchanges a probe cannot do: they need a pre-shared key or an SRP password.
_UNPROBEABLE_KEX = {"kx-psk", "kx-dhe-psk", "kx-ecdhe-psk", "kx-rsa-psk", "kx-srp"}


class ScanError(ValueError):
    """The scan cannot start: a target off the loopback, a bad address, unreadable files."""


# --- the target ------------------------------------------------------------------------------


def parse_target(target: object) -> tuple[str, int]:
    """``"127.0.0.1:8443"``, ``"[::1]:8443"``, ``"localhost:8443"``, ``("127.0.0.1", 8443)`` or a
    running server → ``(address, port)``; anything not on the loopback raises :class:`ScanError`.

    Host names other than ``localhost`` are refused without being looked up: a DNS query would
    already leave the machine.
    """
    if not isinstance(target, (str, tuple, list)):
        try:
            host, port = target.address[:2]  # type: ignore[attr-defined]
        except AttributeError:
            raise ScanError(f"cannot scan {target!r}: give 'HOST:PORT', a (host, port) pair or a running server") from None
        except RuntimeError as exc:  # a server that is not running
            raise ScanError(str(exc)) from None
    elif isinstance(target, str):
        text = target.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
            if not sep or not port_text:
                raise ScanError(f"cannot read {target!r}: write an IPv6 target as [::1]:PORT")
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ScanError(f"cannot read {target!r}: give HOST:PORT, e.g. 127.0.0.1:8443")
        try:
            port = int(port_text)
        except ValueError:
            raise ScanError(f"cannot read {target!r}: {port_text!r} is not a port number") from None
    elif len(target) >= 2:
        host, port = target[0], target[1]
    else:
        raise ScanError(f"cannot scan {target!r}: give 'HOST:PORT', a (host, port) pair or a running server")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ScanError(f"{port!r} is not a port number (1–65535)")
    host = str(host)
    if host.lower() == "localhost":
        return "127.0.0.1", port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ScanError(
            f"refusing to scan {host!r}: tlslab scan probes servers on this machine only "
            "(127.0.0.1, ::1 or localhost). Scanning someone else's server needs their permission, "
            "and the course never leaves the loopback. Nothing was sent."
        )
    return str(address), port


# --- the probing client ----------------------------------------------------------------------


def scanner_probe_context(
    version: str | None = None, *, ciphers: str = _ALL_SUITES, cert: "ClientCert" = None
) -> ssl.SSLContext:
    """THE SCANNER'S OWN PROBING CLIENT: a context that verifies nothing, at security level 0.

    A scanner must see whatever a server offers, so this client accepts any certificate, offers
    every suite OpenSSL has (or only ``ciphers``) and, with ``version``, exactly that one
    version, TLS 1.0 and 1.1 included (they sign with SHA-1, which only level 0 allows). The
    certificate is judged afterwards, by the scanner, with :func:`tlslab.verify.verify_chain`.
    Never use this context to talk to a server: it is what ``verify=False`` looks like.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers(ciphers)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = _TLS_VERSION[version]
    if cert is not None:
        _configure_client_cert(ctx, cert)
    return ctx


ClientCert = Union[Credential, tuple[Union[str, Path], Union[str, Path]], None]


def _configure_client_cert(ctx: ssl.SSLContext, cert: ClientCert) -> None:
    if isinstance(cert, Credential):
        cert.configure_cert(ctx)
    elif isinstance(cert, tuple) and len(cert) == 2:
        try:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        except (ssl.SSLError, OSError) as exc:
            raise ScanError(f"cannot load the client certificate {cert[0]} with key {cert[1]}: {exc}") from None
    else:
        raise ScanError("cert must be a Credential or a (certificate file, key file) pair")


# --- what one probe saw: OpenSSL's message callback --------------------------------------------

_HANDSHAKE, _ALERT = 22, 21
_SERVER_HELLO, _CERTIFICATE, _CERTIFICATE_REQUEST = 2, 11, 13


@dataclass
class _Seen:
    """The handshake messages a probe received (through CPython's ``_msg_callback`` hook)."""

    hello: tuple[str, int] | None = None  # (version, suite code) from the ServerHello
    certificate_request: bool = False
    chain: list[x509.Certificate] | None = None

    def __call__(self, conn: object, direction: str, version: object, content_type: object, msg_type: object, data: bytes) -> None:
        try:
            if direction != "read" or int(content_type) != _HANDSHAKE:  # type: ignore[call-overload]
                return
            kind = int(msg_type)  # type: ignore[call-overload]
            if kind == _SERVER_HELLO and self.hello is None:
                self.hello = _parse_server_hello(data)
            elif kind == _CERTIFICATE and self.chain is None:
                tls13 = self.hello is not None and self.hello[0] == "TLS 1.3"
                self.chain = _parse_certificate_message(data, tls13)
            elif kind == _CERTIFICATE_REQUEST:
                self.certificate_request = True
        except Exception:  # never break a probe over a bookkeeping error
            pass


def _parse_server_hello(message: bytes) -> tuple[str, int]:
    """(negotiated version, cipher suite code) from a ServerHello, header included."""
    body = message[4:]
    version = int.from_bytes(body[0:2], "big")
    pos = 2 + 32
    pos += 1 + body[pos]  # legacy session id
    suite = int.from_bytes(body[pos : pos + 2], "big")
    pos += 3  # suite, compression method
    if pos + 2 <= len(body):
        end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            kind, size = int.from_bytes(body[pos : pos + 2], "big"), int.from_bytes(body[pos + 2 : pos + 4], "big")
            if kind == 43 and size == 2:  # supported_versions: TLS 1.3 hides its version here
                version = int.from_bytes(body[pos + 4 : pos + 6], "big")
            pos += 4 + size
    return _WIRE_VERSION.get(version, f"0x{version:04x}"), suite


def _parse_certificate_message(message: bytes, tls13: bool) -> list[x509.Certificate]:
    """The certificates of a Certificate message (header included), leaf first."""
    body = message[4 : 4 + int.from_bytes(message[1:4], "big")]
    pos = 1 + body[0] if tls13 else 0  # TLS 1.3: a request context first
    end = pos + 3 + int.from_bytes(body[pos : pos + 3], "big")
    pos += 3
    chain = []
    while pos < end:
        size = int.from_bytes(body[pos : pos + 3], "big")
        chain.append(x509.load_der_x509_certificate(body[pos + 3 : pos + 3 + size]))
        pos += 3 + size
        if tls13:
            pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # per-certificate extensions
    return chain


@dataclass
class _Attempt:
    seen: _Seen
    connected: bool
    completed: bool
    version: str | None = None
    suite: str | None = None
    diagnosis: Diagnosis | None = None
    leaf_der: bytes | None = None


def _attempt(address: tuple[str, int], ctx: ssl.SSLContext, servername: str | None, *, timeout: float, verdict: bool) -> _Attempt:
    """One handshake with the probing client; never raises for a refusal."""
    seen = _Seen()
    watching = hasattr(ctx, "_msg_callback")
    if watching:
        ctx._msg_callback = seen  # type: ignore[attr-defined]
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        return _Attempt(seen, connected=False, completed=False, diagnosis=diagnose(exc, side="client"))
    result = _Attempt(seen, connected=True, completed=False)
    with sock:
        try:
            with ctx.wrap_socket(sock, server_hostname=servername, do_handshake_on_connect=False) as tls:
                tls.do_handshake()
                if verdict and tls.version() == "TLSv1.3":
                    # The server judges a client certificate after the handshake: wait for its
                    # verdict (an alert, or tickets). Without a certificate request, tickets come at once.
                    wait = timeout if seen.certificate_request else min(timeout, 1.0)
                    _await_verdict(tls, time.monotonic() + wait)
                result.completed = True
                result.version = _SSL_VERSION_LABEL.get(tls.version() or "")
                result.suite = (tls.cipher() or (None,))[0]
                result.leaf_der = tls.getpeercert(binary_form=True)
        except (ssl.SSLError, OSError) as exc:
            result.diagnosis = diagnose(exc, side="client")
    if not watching and result.completed and result.version:  # no hook: the finished handshake must do
        code = next((s.code for s in tls12_suites() if s.name == result.suite), 0)
        seen.hello = (result.version, code)
    return result


# --- cipher suites -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteInfo:
    """A TLS 1.2 cipher suite as OpenSSL describes it."""

    name: str  # OpenSSL's name (what ``ssl`` and ``openssl s_client -cipher`` use)
    code: int
    iana: str  # the standard name, TLS_…
    kex: str  # key exchange: ECDHE, DHE, RSA, …
    auth: str  # server authentication: ECDSA, RSA, none
    cipher: str  # bulk cipher, e.g. aes-128-gcm
    aead: bool

    @property
    def problems(self) -> tuple[str, ...]:
        return classify_suite(self)

    def __repr__(self) -> str:
        return f"<SuiteInfo {self.name} ({self.kex}, {'AEAD' if self.aead else self.cipher})>"


def _iana_name(code: int, fallback: str) -> str:
    try:
        from .records import cipher_suite_name
    except ImportError:  # pragma: no cover - records is part of the package
        return fallback
    name = cipher_suite_name(code)
    return fallback if name.startswith("unknown") else name


@functools.lru_cache(maxsize=1)
def tls12_suites() -> tuple[SuiteInfo, ...]:
    """Every TLS 1.2 suite this machine's OpenSSL can offer, in OpenSSL's order (PSK/SRP left out)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers(_ALL_SUITES)
    suites = []
    for c in ctx.get_ciphers():
        if c["protocol"] == "TLSv1.3" or c["kea"] in _UNPROBEABLE_KEX:
            continue
        code = c["id"] & 0xFFFF
        suites.append(
            SuiteInfo(
                name=c["name"],
                code=code,
                iana=_iana_name(code, c["name"]),
                kex=str(c["kea"]).removeprefix("kx-").upper(),
                auth=str(c["auth"]).removeprefix("auth-").upper().replace("NULL", "none"),
                cipher=str(c["symmetric"] or "none"),
                aead=bool(c["aead"]),
            )
        )
    return tuple(suites)


def _suite_by_name(name: str) -> SuiteInfo | None:
    return next((s for s in tls12_suites() if s.name == name), None)


def classify_suite(suite: SuiteInfo | str) -> tuple[str, ...]:
    """What is wrong with a TLS 1.2 suite, as finding keys (``()``: ECDHE with an AEAD cipher).

    ``null_cipher``, ``anonymous``, ``export``, ``rc4_suites``, ``3des_suites``,
    ``static_rsa_suites``, ``cbc_suites``, ``dhe_suites``, ``no_forward_secrecy``.
    """
    info = _suite_by_name(suite) if isinstance(suite, str) else suite
    name = suite if isinstance(suite, str) else suite.name
    upper = name.upper()
    problems: list[str] = []
    cipher = info.cipher.lower() if info else upper.lower()
    if "NULL" in upper.split("-") or (info is not None and info.cipher == "none"):
        problems.append("null_cipher")
    if upper.startswith(("ADH", "AECDH")) or (info is not None and info.auth == "none"):
        problems.append("anonymous")
    if "EXP" in upper.split("-"):
        problems.append("export")
    if "RC4" in upper:
        problems.append("rc4_suites")
    if "DES" in upper or "des" in cipher:
        problems.append("3des_suites")
    kex = info.kex if info else ("ECDHE" if upper.startswith("ECDHE") else "DHE" if upper.startswith(("DHE", "EDH")) else "RSA")
    if kex == "RSA":
        problems.append("static_rsa_suites")
    elif kex == "DHE":
        problems.append("dhe_suites")
    elif kex != "ECDHE" and "anonymous" not in problems:
        problems.append("no_forward_secrecy")
    aead = info.aead if info else any(tag in upper for tag in ("GCM", "CHACHA20", "CCM"))
    if not aead and "null_cipher" not in problems and "rc4_suites" not in problems:
        problems.append("cbc_suites")
    return tuple(dict.fromkeys(problems))


# --- probes that other modules use too -----------------------------------------------------------


@dataclass(frozen=True)
class VersionProbe:
    """One version probe: did the server answer with a ServerHello for ``version``?

    ``completed``: the whole handshake succeeded (with the server's verdict on the client
    certificate, in TLS 1.3); ``certificate_requested``: the server sent a CertificateRequest.
    """

    version: str
    accepted: bool
    suite: str | None = None
    completed: bool = False
    certificate_requested: bool = False
    connected: bool = True
    diagnosis: Diagnosis | None = field(default=None, repr=False)
    chain: tuple[x509.Certificate, ...] = field(default=(), repr=False)

    def __bool__(self) -> bool:
        return self.accepted


def probe_version(
    target: object, version: str, *, servername: str = "localhost", cert: ClientCert = None, timeout: float = 3.0
) -> VersionProbe:
    """Offer ``version`` (``"1.0"``…``"1.3"`` or ``"TLS 1.2"``) alone, with every suite; see what the
    server answers."""
    address = parse_target(target)
    label = _version_label(version)
    ctx = scanner_probe_context(label, cert=cert)
    attempt = _attempt(address, ctx, servername, timeout=timeout, verdict=True)
    hello = attempt.seen.hello
    accepted = hello is not None and hello[0] == label
    suite = None
    if accepted:
        suite = attempt.suite or _name_of_code(hello[1])  # type: ignore[index]
    chain = tuple(attempt.seen.chain or ())
    if not chain and attempt.leaf_der:
        chain = (x509.load_der_x509_certificate(attempt.leaf_der),)
    return VersionProbe(
        version=label,
        accepted=accepted,
        suite=suite,
        completed=attempt.completed,
        certificate_requested=attempt.seen.certificate_request,
        connected=attempt.connected,
        diagnosis=attempt.diagnosis,
        chain=chain,
    )


def _version_label(version: str) -> str:
    key = str(version).replace("TLSv", "").replace("TLS", "").strip()
    label = f"TLS {key}"
    if label not in _TLS_VERSION:
        if key in ("SSLv3", "3.0", "SSL 3.0"):
            raise ScanError("SSL 3.0 cannot be probed: OpenSSL 3 has no SSL 3.0 at all")
        raise ScanError(f"unknown TLS version {version!r}; use 1.0, 1.1, 1.2 or 1.3")
    return label


def _name_of_code(code: int) -> str:
    for suite in tls12_suites():
        if suite.code == code:
            return suite.name
    return _iana_name(code, f"0x{code:04X}")


def probe_suite(target: object, suite: str, *, servername: str = "localhost", timeout: float = 3.0) -> bool:
    """Does the server accept the TLS 1.2 suite ``suite`` (OpenSSL name) when it is the only one offered?"""
    return _probe_suite(parse_target(target), suite, servername, timeout)


def _probe_suite(address: tuple[str, int], suite: str, servername: str | None, timeout: float) -> bool:
    info = _suite_by_name(suite)
    ctx = scanner_probe_context("TLS 1.2", ciphers=f"{suite}:@SECLEVEL=0")
    attempt = _attempt(address, ctx, servername, timeout=timeout, verdict=False)
    hello = attempt.seen.hello
    return hello is not None and hello[0] == "TLS 1.2" and (info is None or hello[1] == info.code)


def accepted_suites(target: object, *, servername: str = "localhost", workers: int = 4, timeout: float = 3.0) -> list[SuiteInfo]:
    """The TLS 1.2 suites the server accepts, probed one by one (in OpenSSL's order)."""
    address = parse_target(target)
    suites = tls12_suites()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda s: _probe_suite(address, s.name, servername, timeout), suites))
    return [s for s, ok in zip(suites, results) if ok]


# --- profiles and findings ----------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What a server should look like, after Mozilla's server-side TLS guidance.

    ``versions``: the versions it may accept (TLS 1.3 is always expected). ``max_lifetime_days``:
    the longest certificate lifetime (398 days: what browsers accept from public CAs).
    ``require_client_cert``: mutual TLS: the server must refuse clients without a certificate.
    """

    name: str
    versions: tuple[str, ...]
    description: str
    max_lifetime_days: int = 398
    recommended_lifetime_days: int = 90
    min_rsa_bits: int = 2048
    min_ec_bits: int = 256
    require_client_cert: bool = False

    @property
    def label(self) -> str:
        return self.name + (" + mTLS" if self.require_client_cert else "")

    def with_mtls(self) -> "Profile":
        """The same profile, demanding a client certificate too."""
        return replace(self, require_client_cert=True)

    def __repr__(self) -> str:
        return f"<Profile {self.label}: {', '.join(self.versions)}>"


PROFILES: dict[str, Profile] = {
    "modern": Profile(
        "modern",
        ("TLS 1.3",),
        "Mozilla's modern profile: TLS 1.3 only, for services whose clients are all recent.",
    ),
    "intermediate": Profile(
        "intermediate",
        ("TLS 1.2", "TLS 1.3"),
        "Mozilla's intermediate profile: TLS 1.2 and 1.3, TLS 1.2 with ECDHE key exchange and AEAD ciphers only.",
    ),
}


def _profile(profile: str | Profile, require_client_cert: bool = False) -> Profile:
    if isinstance(profile, Profile):
        chosen = profile
    else:
        key = str(profile).lower().replace(" ", "")
        mtls = key.endswith(("+mtls", "-mtls"))
        key = key.removesuffix("+mtls").removesuffix("-mtls")
        if key not in PROFILES:
            raise ScanError(f"unknown profile {profile!r}; use {', '.join(PROFILES)} (optionally with +mtls)")
        chosen = PROFILES[key].with_mtls() if mtls else PROFILES[key]
    return chosen.with_mtls() if require_client_cert else chosen


@dataclass(frozen=True)
class Finding:
    """One thing the scan found wrong: how bad, what, why it matters, how to fix it.

    ``key`` is a stable identifier for tests and lab checks (``legacy_versions``, ``cbc_suites``, …).
    """

    key: str
    severity: Severity
    what: str
    why: str
    fix: str

    def __repr__(self) -> str:
        return f"<Finding [{self.severity}] {self.key}: {self.what}>"

    def __str__(self) -> str:
        return f"[{self.severity}] {self.what}\n    why: {self.why}\n    fix: {self.fix}"


_SUITE_FINDINGS: dict[str, tuple[Severity, str, str, str]] = {
    # key: (severity, what (with {suites}), why, fix)
    "null_cipher": ("critical", "it accepts suites that do not encrypt at all: {suites}",
                    "A NULL cipher sends everything in plaintext; only the integrity check remains.",
                    "remove every NULL suite (OpenSSL: '!eNULL')."),
    "anonymous": ("critical", "it accepts anonymous suites, with no server certificate: {suites}",
                  "Without authentication anyone in the middle can pose as the server: the encryption protects nothing.",
                  "remove anonymous suites (OpenSSL: '!aNULL')."),
    "export": ("critical", "it accepts export-grade suites: {suites}",
               "Export ciphers were weakened on purpose in the 1990s; FREAK and Logjam break them in minutes.",
               "remove them; allow only ECDHE with AES-GCM or ChaCha20-Poly1305."),
    "rc4_suites": ("critical", "it accepts RC4 suites: {suites}",
                   "RC4's keystream is biased; RFC 7465 forbids RC4 in TLS.",
                   "remove RC4; allow only AEAD ciphers (AES-GCM, ChaCha20-Poly1305)."),
    "3des_suites": ("high", "it accepts (3)DES suites: {suites}",
                    "64-bit blocks: Sweet32 (CVE-2016-2183) recovers secrets from long connections.",
                    "remove 3DES; allow only AEAD ciphers (AES-GCM, ChaCha20-Poly1305)."),
    "static_rsa_suites": ("high", "it accepts static RSA key exchange (no forward secrecy): {suites}",
                          "The session key travels encrypted with the server's long-term key: whoever obtains that key later "
                          "decrypts every recorded session (lesson 04 did exactly that). RSA decryption is also the target "
                          "of Bleichenbacher-style oracles (ROBOT).",
                          "allow only ECDHE key exchange (OpenSSL: 'ECDHE+AESGCM:ECDHE+CHACHA20'); TLS 1.3 has no static RSA at all."),
    "cbc_suites": ("medium", "it accepts CBC-mode suites: {suites}",
                   "TLS's CBC construction (MAC, then encrypt) has a long record of padding-oracle and timing attacks "
                   "(BEAST, Lucky Thirteen, POODLE-TLS); AEAD ciphers have none of them.",
                   "allow only AEAD suites: AES-GCM and ChaCha20-Poly1305 (OpenSSL: 'ECDHE+AESGCM:ECDHE+CHACHA20')."),
    "dhe_suites": ("low", "it accepts finite-field DHE key exchange: {suites}",
                   "DHE is forward secret but slow, and only as strong as the server's DH parameters; Mozilla's intermediate "
                   "profile still tolerates DHE with AES-GCM, this course's profiles want ECDHE only.",
                   "prefer ECDHE (OpenSSL: 'ECDHE+AESGCM:ECDHE+CHACHA20')."),
    "no_forward_secrecy": ("high", "it accepts suites without forward secrecy: {suites}",
                           "A key exchange that is not ephemeral lets a stolen server key decrypt past sessions.",
                           "allow only ECDHE key exchange."),
}

_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


# --- report parts -----------------------------------------------------------------------------


@dataclass
class CertificateReport:
    """The server's certificate, as the scanner judged it."""

    chain: list[x509.Certificate] = field(repr=False)
    subject: str
    issuer: str
    names: tuple[str, ...]
    key: str
    signature_algorithm: str
    not_before: dt.datetime
    not_after: dt.datetime
    lifetime_days: int
    validity: str  # "valid now", "expired", "not yet valid"
    host: str | None
    host_ok: bool
    host_detail: str
    trust: str  # "trusted", "untrusted", "not checked"
    trust_detail: str
    verdict: ChainVerdict | None = field(default=None, repr=False)

    def rows(self) -> list[tuple[str, str]]:
        sent = " → ".join(_cn(c) for c in self.chain)
        rows = [
            ("subject", self.subject),
            ("issuer", self.issuer),
            ("names (SAN)", ", ".join(self.names) or "(none)"),
            ("chain sent", f"{len(self.chain)} certificate{'s' if len(self.chain) != 1 else ''}: {sent}"),
            ("key", self.key),
            ("signature", self.signature_algorithm),
            ("validity", f"{self.validity}; lifetime {_days(self.lifetime_days)}"),
            ("host name", f"{'ok' if self.host_ok else 'MISMATCH'}: {self.host_detail}"),
            ("trust", f"{self.trust}: {self.trust_detail}"),
        ]
        return rows


@dataclass
class ClientAuthReport:
    """Whether the server asks for, and insists on, a client certificate."""

    policy: str  # "none", "optional", "required", "unknown"
    with_cert: str | None = None  # what happened when the scanner presented --cert
    diagnosis: Diagnosis | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        words = {
            "none": "not requested: any client may connect",
            "optional": "requested, but clients without one are accepted",
            "required": "required: a client without a certificate is refused",
            "unknown": "could not tell",
        }[self.policy]
        if self.with_cert:
            words += f"; with the given certificate: {self.with_cert}"
        return words


@dataclass
class ResumptionReport:
    """Session resumption: ``True`` resumed, ``False`` not resumed, ``None`` not tested."""

    tls12_session_id: bool | None = None
    tls12_ticket: bool | None = None
    tls13_ticket: bool | None = None
    note: str = ""

    @property
    def text(self) -> str:
        def word(value: bool | None) -> str:
            return "not tested" if value is None else ("yes" if value else "no")

        parts = []
        if self.tls12_session_id is not None or self.tls12_ticket is not None:
            parts.append(f"TLS 1.2 session IDs {word(self.tls12_session_id)}, session tickets {word(self.tls12_ticket)}")
        if self.tls13_ticket is not None:
            parts.append(f"TLS 1.3 tickets {word(self.tls13_ticket)}")
        text = "; ".join(parts) or "not tested"
        return f"{text} ({self.note})" if self.note else text


# --- the result -------------------------------------------------------------------------------


@dataclass
class ScanResult:
    """Everything a scan found, graded against ``profile``.

    ``str(result)`` is the full report; ``repr`` one line. Neither shows the port, timings or
    anything random, so a notebook shows the same report on every run.
    """

    host: str
    port: int
    servername: str | None
    profile: Profile
    versions: dict[str, VersionProbe] = field(default_factory=dict)
    suites: list[SuiteInfo] = field(default_factory=list)  # TLS 1.2 suites accepted
    suites_probed: int = 0
    certificate: CertificateReport | None = None
    client_auth: ClientAuthReport | None = None
    resumption: ResumptionReport | None = None
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    probes: int = 0

    # Verdict
    @property
    def counted(self) -> list[Finding]:
        """The findings that fail a scan (all but ``info``)."""
        return [f for f in self.findings if f.severity != "info"]

    @property
    def clean(self) -> bool:
        return self.error is None and not self.counted

    @property
    def exit_code(self) -> int:
        """For CI: 0 clean, 1 findings, 2 could not scan."""
        if self.error is not None:
            return 2
        return 1 if self.counted else 0

    def has(self, key: str) -> bool:
        """Is there a finding with this key?"""
        return any(f.key == key for f in self.findings)

    def finding(self, key: str) -> Finding | None:
        return next((f for f in self.findings if f.key == key), None)

    @property
    def keys(self) -> list[str]:
        """The finding keys, worst first."""
        return [f.key for f in self.findings]

    @property
    def accepted_versions(self) -> list[str]:
        return [v for v in VERSIONS if v in self.versions and self.versions[v].accepted]

    def against(self, profile: str | Profile) -> "ScanResult":
        """The same scan graded against another profile (no new probes)."""
        chosen = _profile(profile)
        regraded = replace(self, profile=chosen, findings=[])
        if regraded.error is None:
            regraded.findings = grade(regraded, chosen)
        return regraded

    # Texts
    @property
    def summary(self) -> str:
        if self.error is not None:
            return "could not scan (exit code 2)"
        counted = self.counted
        if not counted:
            return f"clean against the {self.profile.label} profile (exit code 0)"
        by = [f"{sum(f.severity == s for f in counted)} {s}" for s in SEVERITIES[:-1] if any(f.severity == s for f in counted)]
        return f"{len(counted)} finding{'s' if len(counted) != 1 else ''} against the {self.profile.label} profile ({', '.join(by)}): exit code 1"

    def _target_label(self) -> str:
        name = self.servername or self.host
        return f"{name} ({self.host})" if name != self.host else self.host

    def version_rows(self) -> list[tuple[str, str]]:
        rows = []
        for version in VERSIONS:
            probe = self.versions.get(version)
            if probe is None:
                rows.append((version, "not probed"))
            elif probe.accepted:
                rows.append((version, f"accepted ({probe.suite})" if probe.suite else "accepted"))
            else:
                rows.append((version, "refused"))
        rows.append(("SSL 3.0", "not probed (OpenSSL 3 cannot speak it)"))
        return rows

    def suite_rows(self) -> list[tuple[str, str]]:
        """(suite, verdict) for every accepted TLS 1.2 suite, problems first."""
        def verdict(s: SuiteInfo) -> str:
            problems = s.problems
            return "ok (ECDHE + AEAD)" if not problems else ", ".join(_PROBLEM_WORDS.get(p, p) for p in problems)

        ordered = sorted(self.suites, key=lambda s: (not s.problems, s.name))
        return [(s.name, verdict(s)) for s in ordered]

    def __str__(self) -> str:
        lines = [f"TLS scan of {self._target_label()}, graded against the {self.profile.label} profile"]
        if self.error is not None:
            lines.append(f"Could not scan: {self.error}")
            lines.append("Verdict: " + self.summary)
            return "\n".join(lines)
        lines.append("Protocol versions")
        lines += [f"  {v:<8} {text}" for v, text in self.version_rows()]
        if "TLS 1.2" in self.accepted_versions:
            rows = self.suite_rows()
            lines.append(f"TLS 1.2 cipher suites accepted ({len(rows)}, probed one by one)")
            width = max((len(name) for name, _ in rows), default=0)
            lines += [f"  {name:<{width}}  {why}" for name, why in rows] or ["  (none)"]
        if self.certificate is not None:
            lines.append("Certificate")
            width = max(len(k) for k, _ in self.certificate.rows())
            lines += [f"  {k:<{width}}  {v}" for k, v in self.certificate.rows()]
        if self.client_auth is not None:
            lines.append(f"Client certificate: {self.client_auth.text}")
        if self.resumption is not None:
            lines.append(f"Session resumption: {self.resumption.text}")
        if self.findings:
            lines.append("Findings")
            for f in self.findings:
                lines.append(f"  [{f.severity}] {f.what}")
                lines.append(f"      why: {f.why}")
                lines.append(f"      fix: {f.fix}")
        lines.append("Verdict: " + self.summary)
        return "\n".join(lines)

    def __repr__(self) -> str:
        if self.error is not None:
            return f"<ScanResult {self._target_label()}: could not scan: {self.error}>"
        keys = f": {', '.join(self.keys)}" if self.findings else ""
        return f"<ScanResult {self._target_label()} vs {self.profile.label}: exit code {self.exit_code}{keys}>"

    def _repr_html_(self) -> str:
        esc = html.escape
        colour = "#c0392b" if self.exit_code else "#27ae60"
        title = f"TLS scan of {self._target_label()} — {self.summary}"

        def table(rows: Iterable[tuple[str, str]], bad: Callable[[str, str], bool] = lambda k, v: False) -> str:
            return "<table>" + "".join(
                f"<tr><th style='text-align:left;padding-right:1em;vertical-align:top'>{esc(k)}</th>"
                f"<td style='text-align:left{';color:#c0392b' if bad(k, v) else ''}'>{esc(v)}</td></tr>"
                for k, v in rows
            ) + "</table>"

        parts = [f"<div class='tlslab-scan' style='border-left:4px solid {colour};padding-left:.6em'><b>{esc(title)}</b>"]
        if self.error is None:
            allowed = set(self.profile.versions)
            parts.append("<h4 style='margin:.4em 0 .1em'>Protocol versions</h4>")
            parts.append(table(self.version_rows(), lambda k, v: v.startswith("accepted") and k not in allowed))
            if "TLS 1.2" in self.accepted_versions:
                parts.append(f"<h4 style='margin:.4em 0 .1em'>TLS 1.2 cipher suites accepted ({len(self.suites)}, probed one by one)</h4>")
                parts.append(table(self.suite_rows(), lambda k, v: not v.startswith("ok")))
            if self.certificate is not None:
                parts.append("<h4 style='margin:.4em 0 .1em'>Certificate</h4>")
                parts.append(table(self.certificate.rows(), lambda k, v: v.startswith(("MISMATCH", "untrusted", "expired", "not yet"))))
            extra = []
            if self.client_auth is not None:
                extra.append(("client certificate", self.client_auth.text))
            if self.resumption is not None:
                extra.append(("session resumption", self.resumption.text))
            if extra:
                parts.append("<h4 style='margin:.4em 0 .1em'>Clients</h4>" + table(extra))
            if self.findings:
                head = "".join(f"<th style='text-align:left'>{h}</th>" for h in ("severity", "what", "why it matters", "how to fix"))
                body = "".join(
                    f"<tr><td style='color:{_SEVERITY_COLOUR[f.severity]};font-weight:bold;vertical-align:top'>{esc(f.severity)}</td>"
                    f"<td style='text-align:left;vertical-align:top'>{esc(f.what)}</td>"
                    f"<td style='text-align:left;vertical-align:top'>{esc(f.why)}</td>"
                    f"<td style='text-align:left;vertical-align:top'>{esc(f.fix)}</td></tr>"
                    for f in self.findings
                )
                parts.append(f"<h4 style='margin:.4em 0 .1em'>Findings</h4><table><tr>{head}</tr>{body}</table>")
        parts.append("</div>")
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Everything, for ``--json`` (this one does include the port and the run time)."""
        cert = self.certificate
        return {
            "target": f"{self.host}:{self.port}",
            "servername": self.servername,
            "profile": self.profile.label,
            "exit_code": self.exit_code,
            "error": self.error,
            "versions": {v: self.versions[v].accepted for v in VERSIONS if v in self.versions},
            "negotiated": {v: self.versions[v].suite for v in VERSIONS if v in self.versions and self.versions[v].accepted},
            "tls12_suites": [
                {"name": s.name, "iana": s.iana, "kex": s.kex, "aead": s.aead, "problems": list(s.problems)} for s in self.suites
            ],
            "certificate": None if cert is None else {
                "subject": cert.subject,
                "issuer": cert.issuer,
                "names": list(cert.names),
                "chain": [c.subject.rfc4514_string() for c in cert.chain],
                "key": cert.key,
                "signature_algorithm": cert.signature_algorithm,
                "not_before": cert.not_before.isoformat(),
                "not_after": cert.not_after.isoformat(),
                "lifetime_days": cert.lifetime_days,
                "validity": cert.validity,
                "host_ok": cert.host_ok,
                "trust": cert.trust,
                "trust_detail": cert.trust_detail,
            },
            "client_certificate": None if self.client_auth is None else {
                "policy": self.client_auth.policy, "with_cert": self.client_auth.with_cert,
            },
            "resumption": None if self.resumption is None else {
                "tls12_session_id": self.resumption.tls12_session_id,
                "tls12_ticket": self.resumption.tls12_ticket,
                "tls13_ticket": self.resumption.tls13_ticket,
            },
            "findings": [{"key": f.key, "severity": f.severity, "what": f.what, "why": f.why, "fix": f.fix} for f in self.findings],
            "probes": self.probes,
            "seconds": round(self.seconds, 3),
        }


_SEVERITY_COLOUR = {"critical": "#8e44ad", "high": "#c0392b", "medium": "#d35400", "low": "#b7950b", "info": "#2c3e50"}
_PROBLEM_WORDS = {
    "null_cipher": "NO ENCRYPTION",
    "anonymous": "anonymous",
    "export": "export grade",
    "rc4_suites": "RC4",
    "3des_suites": "3DES",
    "static_rsa_suites": "static RSA (no forward secrecy)",
    "cbc_suites": "CBC",
    "dhe_suites": "DHE",
    "no_forward_secrecy": "no forward secrecy",
}


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.subject.rfc4514_string()


def _days(days: int) -> str:
    if days >= 730 and days % 365 in (0, 1, 2, 3, 4, 5):
        return f"{days} days (about {days // 365} years)"
    return f"{days} day{'s' if days != 1 else ''}"


# --- the certificate ---------------------------------------------------------------------------

TrustLike = Union[CertificateAuthority, x509.Certificate, Sequence[x509.Certificate], bytes, str, Path, None]


def _roots(ca: TrustLike) -> list[x509.Certificate]:
    if ca is None:
        return []
    if isinstance(ca, CertificateAuthority):
        return [ca.root.certificate]
    if isinstance(ca, x509.Certificate):
        return [ca]
    if isinstance(ca, (str, Path)):
        try:
            data = Path(ca).read_bytes()
        except OSError as exc:
            raise ScanError(f"cannot read the CA file {ca}: {exc.strerror or exc}") from None
        return _pem_certificates(data, str(ca))
    if isinstance(ca, bytes):
        return _pem_certificates(ca, "the CA PEM")
    roots = list(ca)
    if not all(isinstance(c, x509.Certificate) for c in roots):
        raise ScanError("ca must be a CertificateAuthority, certificates, PEM bytes or a PEM file")
    return roots


def _pem_certificates(data: bytes, where: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ScanError(f"{where} holds no PEM certificate") from None
    return certs


def _signature_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    return getattr(oid, "_name", None) or oid.dotted_string


def _key_bits(key: object) -> tuple[str, int | None]:
    if isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)):
        return ("RSA" if isinstance(key, rsa.RSAPublicKey) else "DSA"), key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return "EdDSA", None
    return type(key).__name__, None


def _certificate_report(chain: list[x509.Certificate], roots: list[x509.Certificate], host: str | None, now: dt.datetime) -> CertificateReport:
    leaf = chain[0]
    verdict = verify_chain(leaf, chain[1:], roots, host=host)  # "now", in the verdict's words
    host_step = next((s for s in verdict.steps if s.check == "host name (SAN)"), None)
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    validity = "not yet valid" if now < start else "expired" if now > end else "valid now"
    if not roots:
        trust, trust_detail = "untrusted", "no CA given (--ca): nothing to verify the chain against"
    elif verdict.ok or all(s.ok or s.key in _OWN_CHECKS and s.depth == 0 for s in verdict.steps):
        trust, trust_detail = "trusted", f"the chain leads to the given root {_cn(verdict.path[-1])!r}"
    else:
        failure = next(s for s in verdict.failures if not (s.key in _OWN_CHECKS and s.depth == 0))
        trust, trust_detail = "untrusted", f"{failure.key}: {failure.detail}"
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n.value) for n in san)
    except x509.ExtensionNotFound:
        names = ()
    return CertificateReport(
        chain=list(chain),
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        names=names,
        key=describe_key(leaf.public_key()),
        signature_algorithm=_signature_name(leaf),
        not_before=start,
        not_after=end,
        lifetime_days=math.ceil((end - start).total_seconds() / 86400),
        validity=validity,
        host=host,
        host_ok=host_step.ok if host_step else True,
        host_detail=host_step.detail if host_step else "not checked",
        trust=trust,
        trust_detail=trust_detail,
        verdict=verdict,
    )


# Leaf checks the scanner words itself (so they are not counted twice from the chain verdict).
_OWN_CHECKS = {"expired", "not_yet_valid", "hostname_mismatch", "key_too_small", "wrong_usage"}


# --- grading -------------------------------------------------------------------------------


def grade(result: ScanResult, profile: Profile) -> list[Finding]:
    """The findings for ``result`` against ``profile``, worst first."""
    out: list[Finding] = []
    add = out.append
    accepted = result.accepted_versions

    # Versions
    legacy = [v for v in ("TLS 1.0", "TLS 1.1") if v in accepted]
    if legacy:
        add(Finding(
            "legacy_versions", "high", f"it accepts {' and '.join(sorted(legacy))}",
            "TLS 1.0 and 1.1 are deprecated (RFC 8996, 2021): they rely on SHA-1 and MD5 in the handshake, have no "
            "AEAD ciphers, and are open to downgrade and CBC attacks (BEAST, POODLE-TLS). Browsers dropped them in 2020.",
            "set the minimum version to TLS 1.2: ctx.minimum_version = ssl.TLSVersion.TLSv1_2.",
        ))
    if "TLS 1.2" in accepted and "TLS 1.2" not in profile.versions:
        add(Finding(
            "tls12_enabled", "medium", "it accepts TLS 1.2, and this profile is TLS 1.3 only",
            "TLS 1.2 brings back cipher suite choices (and their mistakes) and an unencrypted handshake; "
            "the modern profile is for services whose clients all speak TLS 1.3.",
            "set ctx.minimum_version = ssl.TLSVersion.TLSv1_3 (or grade against the intermediate profile if old clients need TLS 1.2).",
        ))
    if "TLS 1.3" not in accepted:
        add(Finding(
            "no_tls13", "high" if profile.versions == ("TLS 1.3",) else "medium", "it does not accept TLS 1.3",
            "TLS 1.3 is faster (one round trip), always forward secret, encrypts most of the handshake and has only AEAD suites.",
            "allow TLS 1.3: ctx.maximum_version = ssl.TLSVersion.TLSv1_3 (or leave the maximum unset).",
        ))

    # TLS 1.2 suites
    if "TLS 1.2" in accepted:
        for key, (severity, what, why, fix) in _SUITE_FINDINGS.items():
            hits = [s.name for s in result.suites if key in s.problems]
            if hits:
                add(Finding(key, severity, what.format(suites=_list(hits)), why, fix))

    # The certificate
    cert = result.certificate
    if cert is not None:
        leaf = cert.chain[0]
        if cert.validity == "expired":
            add(Finding("expired", "critical", f"its certificate expired on {cert.not_after:%Y-%m-%d}",
                        "Every verifying client refuses it; clients that still connect have turned verification off.",
                        "issue a fresh certificate, and automate renewal (ACME) so it never lapses again."))
        elif cert.validity == "not yet valid":
            add(Finding("not_yet_valid", "high", f"its certificate is not valid before {cert.not_before:%Y-%m-%d}",
                        "Verifying clients refuse it until then (or this machine's clock is wrong).",
                        "issue the certificate with a start date in the past, or fix the clock."))
        if not cert.host_ok:
            add(Finding("hostname_mismatch", "high", f"its certificate does not name {cert.host!r}",
                        f"{cert.host_detail}. A verifying client refuses it; one that skips the check would accept any certificate its CA ever signed.",
                        f"issue a certificate whose subjectAltName lists {cert.host!r}."))
        purpose = next((s for s in cert.verdict.steps if s.check == "purpose (EKU)"), None) if cert.verdict else None
        if purpose is not None and not purpose.ok:
            add(Finding("wrong_usage", "high", "its certificate is not meant for a TLS server",
                        f"{purpose.detail}.", "issue a certificate with extended key usage serverAuth."))
        kind, bits = _key_bits(leaf.public_key())
        if kind in ("RSA", "DSA") and bits is not None and bits < profile.min_rsa_bits:
            add(Finding("weak_key", "high", f"its certificate has {'an' if kind == 'RSA' else 'a'} {kind} {bits} key",
                        f"{kind} keys below {profile.min_rsa_bits} bits give less than 112 bits of security; RSA-1024 is within reach of a well-funded attacker.",
                        "issue the certificate with an ECDSA P-256 key (or RSA ≥ 2048)."))
        elif kind == "EC" and bits is not None and bits < profile.min_ec_bits:
            add(Finding("weak_key", "high", f"its certificate has a {bits}-bit elliptic-curve key",
                        f"Curves below {profile.min_ec_bits} bits are below the profile's strength.",
                        "issue the certificate with an ECDSA P-256 (or P-384) key."))
        weak_hash = [c for c in cert.chain if c.issuer != c.subject and _weak_hash(c)]
        if weak_hash:
            md5 = any(_weak_hash(c) == "md5" for c in weak_hash)
            add(Finding("weak_signature", "critical" if md5 else "high",
                        f"a certificate in its chain is signed with {'MD5' if md5 else 'SHA-1'}: {_list([_cn(c) for c in weak_hash])}",
                        "Collisions for MD5 and SHA-1 have been computed in practice (Flame, SHAttered): a forged certificate can share the signature.",
                        "re-issue the certificate signed with SHA-256."))
        if cert.lifetime_days > profile.max_lifetime_days:
            add(Finding("long_lifetime", "medium",
                        f"its certificate is valid for {_days(cert.lifetime_days)}; the profile allows at most {profile.max_lifetime_days}",
                        "A long-lived certificate outlives the knowledge of who holds its key: a leaked key stays usable for years, "
                        "and revocation barely works. Browsers refuse public certificates over 398 days, and the CA/Browser Forum "
                        "is bringing that down to 47 days by 2029.",
                        f"issue certificates for {profile.recommended_lifetime_days} days or less and renew them automatically (ACME)."))
        elif cert.lifetime_days > profile.recommended_lifetime_days:
            add(Finding("lifetime_over_recommended", "info",
                        f"its certificate is valid for {_days(cert.lifetime_days)}; {profile.recommended_lifetime_days} days is recommended",
                        "Short lifetimes limit how long a leaked key stays useful; they need automated renewal.",
                        f"automate renewal and go down to {profile.recommended_lifetime_days} days."))
        elif cert.validity == "valid now" and cert.not_after - _now() < dt.timedelta(days=14) and not result.error:
            add(Finding("expires_soon", "low", "its certificate expires within 14 days",
                        "Clients start refusing it the moment it expires.", "renew it now (and automate renewal)."))
        if cert.trust == "untrusted" and cert.verdict is not None and "no CA given" not in cert.trust_detail:
            add(Finding("untrusted", "high", f"its certificate chain does not verify: {cert.trust_detail}",
                        "Clients that trust this CA refuse the server: it only works for clients that skip verification.",
                        "serve the full chain (leaf + intermediates) issued under the CA your clients trust."))
        elif cert.trust == "untrusted":
            add(Finding("trust_not_checked", "info", "the certificate's chain was not verified: no CA was given",
                        "Without the CA your clients trust, the scanner cannot tell a real certificate from a forged one.",
                        "scan with --ca FILE (the root your clients trust)."))

    # Client certificates
    auth = result.client_auth
    if profile.require_client_cert and auth is not None:
        if auth.policy == "none":
            add(Finding("no_client_auth", "high", "it does not ask clients for a certificate",
                        "Any program that can reach the port may call the service: nothing proves who the client is "
                        "(the mTLS policy of lesson 05 has nothing to check).",
                        "require client certificates: ctx.verify_mode = ssl.CERT_REQUIRED and ctx.load_verify_locations(the clients' CA)."))
        elif auth.policy == "optional":
            add(Finding("client_auth_optional", "medium", "it asks for a client certificate but accepts clients without one",
                        "An optional certificate proves nothing about the clients that leave it out.",
                        "make it required: ctx.verify_mode = ssl.CERT_REQUIRED."))
    if auth is not None and auth.with_cert and auth.with_cert.startswith("refused"):
        add(Finding("client_cert_refused", "info", f"the client certificate given to the scanner was {auth.with_cert}",
                    "The scanner presented --cert/--key and the server did not accept it.",
                    auth.diagnosis.fix if auth.diagnosis else "check the certificate was issued by the CA the server trusts."))

    out.sort(key=lambda f: _SEVERITY_RANK[f.severity])
    return out


def _weak_hash(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:
        return None
    name = getattr(algorithm, "name", "")
    return name if name in ("md5", "sha1") else None


def _list(items: Sequence[str], limit: int = 6) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- the scan ----------------------------------------------------------------------------------


def scan(
    target: object,
    *,
    ca: TrustLike = None,
    cert: ClientCert = None,
    profile: str | Profile = "intermediate",
    require_client_cert: bool = False,
    servername: str | None = "localhost",
    workers: int = 4,
    timeout: float = 3.0,
) -> ScanResult:
    """Scan the TLS server at ``target`` and grade it against ``profile``.

    ``target``: ``"127.0.0.1:8443"``, ``("127.0.0.1", 8443)`` or a running server (loopback only:
    anything else raises :class:`ScanError` before a byte is sent). ``ca``: the root the server's
    clients trust (a :class:`CertificateAuthority`, certificates, PEM bytes or a PEM file); without
    it the certificate is reported untrusted. ``cert``: a client certificate to present in a second
    probe (a :class:`Credential` or a ``(certificate file, key file)`` pair). ``profile``:
    ``"modern"`` or ``"intermediate"`` (or a :class:`Profile`); ``require_client_cert=True`` (or a
    ``"+mtls"`` profile) also demands mutual TLS. ``servername``: the name sent (SNI) and checked
    against the certificate. ``workers``: probes in flight at once.
    """
    address = parse_target(target)
    chosen = _profile(profile, require_client_cert)
    roots = _roots(ca)
    if cert is not None and not isinstance(cert, Credential):
        scanner_probe_context(cert=cert)  # load it once now: a bad file is a clear error, before any probe
    started = time.perf_counter()
    result = ScanResult(host=address[0], port=address[1], servername=servername, profile=chosen)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # 1. Versions, all at once.
        probes = list(pool.map(lambda v: probe_version(address, v, servername=servername, timeout=timeout), VERSIONS))
        result.probes += len(probes)
        result.versions = {p.version: p for p in probes}
        accepted = [p for p in probes if p.accepted]
        if not accepted:
            result.error = _why_not(probes)
            result.seconds = time.perf_counter() - started
            return result
        best = accepted[0]  # the newest version the server speaks
        # 2. Suites, the client certificate, resumption: all at once.
        suites = tls12_suites() if "TLS 1.2" in result.versions and result.versions["TLS 1.2"].accepted else ()
        suite_jobs = [pool.submit(_probe_suite, address, s.name, servername, timeout) for s in suites]
        cert_job = pool.submit(probe_version, address, best.version, servername=servername, cert=cert, timeout=timeout) if cert is not None else None
        policy = _client_policy(best)
        resumable = policy != "required" or cert is not None
        resumption_jobs: dict[str, Any] = {}
        if resumable:
            for kind, version in (("tls12_session_id", "TLS 1.2"), ("tls12_ticket", "TLS 1.2"), ("tls13_ticket", "TLS 1.3")):
                if version in result.versions and result.versions[version].accepted:
                    resumption_jobs[kind] = pool.submit(_resumes, address, version, kind, servername, cert, timeout)
        result.suites = [s for s, job in zip(suites, suite_jobs) if job.result()]
        result.suites_probed = len(suites)
        result.probes += len(suites)
        auth = ClientAuthReport(policy=policy)
        if cert_job is not None:
            with_cert = cert_job.result()
            result.probes += 1
            if with_cert.completed:
                auth.with_cert = "accepted"
            else:
                auth.diagnosis = with_cert.diagnosis
                auth.with_cert = f"refused ({with_cert.diagnosis.key})" if with_cert.diagnosis else "refused"
        result.client_auth = auth
        resumption = ResumptionReport()
        for kind, job in resumption_jobs.items():
            setattr(resumption, kind, job.result())
            result.probes += 2
        if not resumable:
            resumption.note = "needs a client certificate: scan with --cert and --key"
        result.resumption = resumption
    chain = list(best.chain) or next((list(p.chain) for p in accepted if p.chain), [])
    if chain:
        result.certificate = _certificate_report(chain, roots, servername, _now())
    result.findings = grade(result, chosen)
    result.seconds = time.perf_counter() - started
    return result


def _why_not(probes: list[VersionProbe]) -> str:
    if not any(p.connected for p in probes):
        d = probes[0].diagnosis
        return f"nothing answers: {d.what}" if d else "nothing answers on that port"
    return "the server accepted no TLS version from 1.0 to 1.3 (is it a TLS server at all?)"


def _client_policy(best: VersionProbe) -> str:
    if not best.certificate_requested:
        return "none" if best.completed or best.accepted else "unknown"
    if best.completed:
        return "optional"
    d = best.diagnosis
    return "required" if d is not None and d.who == "server" else "unknown"


def _resumes(address: tuple[str, int], version: str, kind: str, servername: str | None, cert: ClientCert, timeout: float) -> bool:
    """Connect, then connect again offering the session: was it resumed?"""
    ctx = scanner_probe_context(version, cert=cert)
    if kind == "tls12_session_id":
        ctx.options |= ssl.OP_NO_TICKET  # no ticket offered: the server must find the session ID in its cache
    first = connect(address, context=ctx, server_hostname=servername or "localhost", timeout=timeout)
    if not first.ok or first.session is None:
        return False
    if kind == "tls12_ticket" and not first.session.has_ticket:
        return False
    second = connect(address, session=first, server_hostname=servername or "localhost", timeout=timeout)
    return bool(second.ok and second.session_reused)


# --- the command line ---------------------------------------------------------------------------

_DESCRIPTION = (
    "Scan a TLS server on this machine (127.0.0.1, ::1 or localhost only) and grade it against a profile "
    "after Mozilla's server-side TLS guidance: protocol versions, TLS 1.2 cipher suites, the certificate, "
    "client certificates and session resumption. Exit status: 0 clean, 1 findings, 2 could not scan."
)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="HOST:PORT", help="the server, e.g. 127.0.0.1:8443 or localhost:8443")
    parser.add_argument("--ca", type=Path, metavar="FILE", help="PEM file with the root CA the server's clients trust")
    parser.add_argument("--cert", type=Path, metavar="FILE", help="a client certificate (PEM) to present in a second probe")
    parser.add_argument("--key", type=Path, metavar="FILE", help="the private key (PEM) of --cert")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="intermediate",
        help="modern: TLS 1.3 only; intermediate: TLS 1.2 and 1.3, ECDHE + AEAD suites (default: intermediate)",
    )
    parser.add_argument(
        "--require-client-cert", action="store_true", help="the server must require client certificates (mutual TLS)"
    )
    parser.add_argument(
        "--servername", default="localhost", metavar="NAME",
        help="the host name to send (SNI) and check the certificate against (default: localhost)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of the report")


def add_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``tlslab scan`` to a ``tlslab`` parser's subcommands (``func(args) -> exit code``)."""
    parser = subparsers.add_parser(
        "scan", help="scan a TLS server on this machine and grade it", description=_DESCRIPTION
    )
    _add_arguments(parser)
    parser.set_defaults(func=cmd_scan)
    return parser


def cmd_scan(args: argparse.Namespace) -> int:
    """``tlslab scan``: print the report (or JSON); exit 0 clean, 1 findings, 2 could not scan."""
    if (args.cert is None) != (args.key is None):
        return _fail("--cert and --key go together: give both, or neither")
    try:
        cert = (args.cert, args.key) if args.cert is not None else None
        result = scan(
            args.target, ca=args.ca, cert=cert, profile=args.profile,
            require_client_cert=args.require_client_cert, servername=args.servername,
        )
    except ScanError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2), flush=True)
    else:
        print(result, flush=True)
    if result.error is not None:
        print(f"tlslab scan: error: could not scan {args.target}: {result.error}", file=sys.stderr, flush=True)
    return result.exit_code


def _fail(message: str) -> int:
    print(f"tlslab scan: error: {message}", file=sys.stderr, flush=True)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``tlslab scan`` on its own: ``main(["127.0.0.1:8443", "--ca", "ca.pem"])`` → exit status."""
    parser = argparse.ArgumentParser(prog="tlslab scan", description=_DESCRIPTION)
    _add_arguments(parser)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    return cmd_scan(args)


if __name__ == "__main__":
    sys.exit(main())
