"""Hardening: weak and hardened server configurations, and a checklist proven live.

A :class:`ServerConfig` is a handful of choices (versions, TLS 1.2 suites, client certificates,
certificate lifetime) that builds a real server and prints the ``SSLContext`` code it implies::

    >>> config = ServerConfig(min_version="1.2", suites="aead", client_cert="required", lifetime_days=90)
    >>> print(config.code())                                 # doctest: +SKIP
    >>> with config.build() as server:                       # doctest: +SKIP
    ...     scan(server, ca=hardening_ca(), cert=client_credential())

:data:`WEAK` is what the capstone starts from (TLS 1.0 and 1.1, CBC and static-RSA suites, no
client authentication, a certificate for 825 days); :data:`HARDENED` is where it ends.
:func:`weak_server` and :func:`hardened_server` build them.

The checklist (:data:`CHECKLIST`, :func:`run_checklist`) has one item per rule; each item is
demonstrated with a weak and a hardened example side by side, and the weak one must fail where the
hardened one passes:

==========================  ===============================================================
``minimum_version``         TLS 1.0 and 1.1 refused
``cipher_policy``           TLS 1.2 suites: ECDHE key exchange and AEAD ciphers only
``verification``            no ``verify=False``/``CERT_NONE``/``check_hostname=False``: a man in the middle wins only against them
``key_permissions``         private key files 0600 and owned by you
``certificate_lifetime``    short certificates, renewed automatically
``client_authentication``   mutual TLS: clients without a certificate refused
``pinning``                 (a trade-off, not a rule) what pinning buys and what it costs
``scan``                    scan your own services: the weak one fails, the hardened one is clean
==========================  ===============================================================

Each check is a plain function returning a :class:`Check` (``passed`` and one stable line of
evidence), so a lab can run it on a student's server, context or file.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import os
import re
import ssl
import stat
import threading
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Iterator, Literal, Sequence

from cryptography import x509

from .client import client_context, connect
from .pki import CertificateAuthority, Credential, _write_private, private_folder
from .scan import (
    ScanResult,
    _client_policy,
    accepted_suites,
    parse_target,
    probe_version,
    scan,
)
from .servers import TLSServer, parse_version

__all__ = [
    "CHECKLIST",
    "HARDENED",
    "LIFETIMES",
    "SUITE_PRESETS",
    "WEAK",
    "Check",
    "Checklist",
    "ChecklistItem",
    "ItemResult",
    "ServerConfig",
    "Smell",
    "SuitePreset",
    "check_certificate_lifetime",
    "check_cipher_policy",
    "check_client_auth",
    "check_client_context",
    "check_key_file",
    "check_min_version",
    "check_scan",
    "check_source",
    "client_credential",
    "demonstrate",
    "find_verification_smells",
    "hardened_server",
    "hardening_ca",
    "pinning_demo",
    "run_checklist",
    "weak_server",
]

# --- suites ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuitePreset:
    """A named TLS 1.2 cipher policy: an OpenSSL cipher string (``None``: Python's default)."""

    name: str
    ciphers: str | None
    description: str

    @property
    def needs_rsa(self) -> bool:
        """Does the policy need an RSA certificate (static RSA, or RSA-signed suites only)?"""
        return _needs_rsa(self.ciphers)


@functools.lru_cache(maxsize=64)
def _needs_rsa(ciphers: str | None) -> bool:
    """RSA when the TLS 1.2 suites include static RSA key exchange or no ECDSA-signed suite."""
    if ciphers is None:
        return False
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.set_ciphers(ciphers + ":@SECLEVEL=0")
    except ssl.SSLError:
        raise ValueError(f"no cipher suite matches {ciphers!r}; use one of {', '.join(SUITE_PRESETS)} or an OpenSSL cipher string") from None
    suites = [c for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"]
    return any(c["kea"] == "kx-rsa" for c in suites) or not any(c["auth"] == "auth-ecdsa" for c in suites)


SUITE_PRESETS: dict[str, SuitePreset] = {
    p.name: p
    for p in (
        SuitePreset("aead", "ECDHE+AESGCM:ECDHE+CHACHA20",
                    "ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only (Mozilla intermediate, without DHE)"),
        SuitePreset("python-default", None,
                    "Python's default list: AEAD suites, but also AES-CBC with SHA-256/384"),
        SuitePreset("cbc", "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES",
                    "ECDHE with AEAD, plus the AES-CBC suites"),
        SuitePreset("static-rsa", "ECDHE+AESGCM:ECDHE+CHACHA20:kRSA+AESGCM",
                    "adds static RSA key exchange (no forward secrecy)"),
        SuitePreset("legacy", "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:kRSA+AES",
                    "what old servers allowed: CBC suites and static RSA key exchange"),
    )
}

#: Certificate lifetimes the builder offers, in days.
LIFETIMES: dict[str, int] = {
    "7 days": 7,
    "90 days": 90,
    "1 year": 365,
    "398 days (the browser limit)": 398,
    "825 days (sold until 2020)": 825,
    "20 years (the course's default)": 7305,
}

_VERSION_ATTR = {"1.0": "TLSv1", "1.1": "TLSv1_1", "1.2": "TLSv1_2", "1.3": "TLSv1_3"}


def _version_key(version: str) -> str:
    return {v: k for k, v in _VERSION_ATTR.items()}[parse_version(version).name]


# --- the course's hardening CA and credentials --------------------------------------------------

_lock = threading.Lock()
_ca: CertificateAuthority | None = None
_credentials: dict[tuple, Credential] = {}


def hardening_ca() -> CertificateAuthority:
    """The CA behind every :class:`ServerConfig` server (made once): trust it to verify them."""
    global _ca
    with _lock:
        if _ca is None:
            _ca = CertificateAuthority("TLS Lab Hardening CA")
        return _ca


def client_credential(identity: str = "spiffe://course.test/scanner") -> Credential:
    """A client certificate from :func:`hardening_ca`, for servers that require one."""
    key = ("client", identity)
    with _lock:
        found = _credentials.get(key)
    if found is None:
        found = hardening_ca().issue_client_cert(identity)
        with _lock:
            found = _credentials.setdefault(key, found)
    return found


def _server_credential(key_type: str, lifetime_days: int, ca: CertificateAuthority) -> Credential:
    # Starts at today's midnight (UTC): valid now, and the same certificate all day long.
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    key = ("server", key_type, lifetime_days, today, id(ca))
    with _lock:
        found = _credentials.get(key)
    if found is None:
        found = ca.issue_server_cert(
            "localhost", "127.0.0.1", key_type=key_type, not_before=today, not_after=today + dt.timedelta(days=lifetime_days)
        )
        with _lock:
            found = _credentials.setdefault(key, found)
    return found


# --- server configurations -------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """A server's TLS settings: ``build()`` makes the server, ``code()`` shows the ``SSLContext`` code.

    ``suites``: a :data:`SUITE_PRESETS` name or an OpenSSL cipher string (TLS 1.2 and older; TLS
    1.3 suites are always AEAD and Python cannot change them). ``client_cert``: ``"none"``,
    ``"optional"`` or ``"required"``. ``key_type``: ``None`` picks RSA when the suites need it
    (static RSA), else ECDSA P-256; ``"rsa1024"`` is a too-small key that only loads at OpenSSL
    security level 0 (an insecure demo).
    """

    min_version: str = "1.2"
    max_version: str = "1.3"
    suites: str = "aead"
    client_cert: Literal["none", "optional", "required"] = "none"
    lifetime_days: int = 90
    key_type: str | None = None

    def __post_init__(self) -> None:
        low, high = parse_version(self.min_version), parse_version(self.max_version)
        if low > high:
            raise ValueError(f"the minimum version ({self.min_version}) is above the maximum ({self.max_version})")
        if self.client_cert not in ("none", "optional", "required"):
            raise ValueError("client_cert must be 'none', 'optional' or 'required'")
        if not isinstance(self.lifetime_days, int) or self.lifetime_days < 1:
            raise ValueError("lifetime_days must be a whole number of days, at least 1")
        if not self.suites:
            raise ValueError(f"suites must be one of {', '.join(SUITE_PRESETS)} or an OpenSSL cipher string")
        _needs_rsa(self.cipher_string)  # an unknown cipher string is an error now, not at build time

    # What the settings imply
    @property
    def legacy(self) -> bool:
        """An insecure demo: TLS 1.0/1.1 allowed, or a key only security level 0 accepts."""
        return parse_version(self.min_version) < ssl.TLSVersion.TLSv1_2 or self.key == "rsa1024"

    @property
    def preset(self) -> SuitePreset | None:
        return SUITE_PRESETS.get(self.suites)

    @property
    def cipher_string(self) -> str | None:
        """The OpenSSL cipher string for TLS 1.2 and older (``None``: Python's default)."""
        return self.preset.ciphers if self.preset else self.suites

    @property
    def _effective_ciphers(self) -> str | None:
        # A TLS 1.3-only server has no use for a TLS 1.2 cipher string.
        return self.cipher_string if parse_version(self.min_version) <= ssl.TLSVersion.TLSv1_2 else None

    @property
    def key(self) -> str:
        """The key type of the server certificate (``key_type``, or what the suites need)."""
        if self.key_type:
            return self.key_type
        return "rsa" if _needs_rsa(self.cipher_string) else "ecdsa"

    def replace(self, **changes: object) -> "ServerConfig":
        return replace(self, **changes)  # type: ignore[arg-type]

    # Building
    def credential(self, ca: CertificateAuthority | None = None) -> Credential:
        """The server certificate: ``lifetime_days`` long from today (UTC midnight), for localhost."""
        return _server_credential(self.key, self.lifetime_days, ca or hardening_ca())

    def build(self, *, name: str | None = None, handler: object = "echo", ca: CertificateAuthority | None = None) -> TLSServer:
        """A :class:`~tlslab.servers.TLSServer` configured this way (not started: use ``with``)."""
        ca = ca or hardening_ca()
        return TLSServer(
            self.credential(ca),
            name=name,
            min_version=self.min_version,
            max_version=self.max_version,
            ciphers=self._effective_ciphers,
            client_cert=self.client_cert,
            client_ca=ca if self.client_cert != "none" else None,
            handler=handler,  # type: ignore[arg-type]
            legacy=self.legacy,
        )

    def code(self) -> str:
        """The Python ``ssl`` code for a server configured this way."""
        low, high = _version_key(self.min_version), _version_key(self.max_version)
        lines = ["import ssl", "", "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)"]
        if parse_version(low) < ssl.TLSVersion.TLSv1_2:
            lines.append(f"# INSECURE (demo only): TLS {low} is deprecated (RFC 8996)")
        lines.append(f"ctx.minimum_version = ssl.TLSVersion.{_VERSION_ATTR[low]}")
        lines.append(f"ctx.maximum_version = ssl.TLSVersion.{_VERSION_ATTR[high]}")
        ciphers = self._effective_ciphers
        if parse_version(low) <= ssl.TLSVersion.TLSv1_2 and self.preset is not None:
            scope = "TLS 1.2" if low == "1.2" else f"TLS {low}–1.2"
            lines.append(f"# {scope} suites: {self.preset.description}")
        if self.legacy:
            why = "SHA-1 handshakes and small keys" if parse_version(low) < ssl.TLSVersion.TLSv1_2 else "a too-small key"
            lines.append(f'ctx.set_ciphers("{ciphers or "DEFAULT"}:@SECLEVEL=0")  # INSECURE: security level 0 allows {why}')
        elif ciphers is not None:
            lines.append(f'ctx.set_ciphers("{ciphers}")')
        elif parse_version(low) <= ssl.TLSVersion.TLSv1_2:
            lines.append("# (no set_ciphers call: Python's default list applies)")
        if high == "1.3":
            lines.append("# TLS 1.3 suites are all AEAD; Python keeps OpenSSL's defaults for them")
        lifetime = f"{self.lifetime_days}-day" if self.lifetime_days != 1 else "1-day"
        lines.append(f'ctx.load_cert_chain("server.pem", "server.key")  # {self._key_words()}, {lifetime} certificate; key file mode 0600')
        if self.client_cert == "none":
            lines.append("# no client certificates: any client that reaches the port may connect")
        else:
            mode = "CERT_REQUIRED" if self.client_cert == "required" else "CERT_OPTIONAL"
            lines.append(f"ctx.verify_mode = ssl.{mode}" + ("  # asks, but accepts clients without one" if mode == "CERT_OPTIONAL" else ""))
            lines.append('ctx.load_verify_locations("clients-ca.pem")  # the CA whose client certificates you accept')
        return "\n".join(lines)

    def _key_words(self) -> str:
        return {"ecdsa": "ECDSA P-256", "rsa": "RSA 2048", "rsa2048": "RSA 2048", "rsa3072": "RSA 3072",
                "rsa1024": "RSA 1024 (too small)", "ed25519": "Ed25519"}.get(self.key, self.key)


#: What the capstone starts from: every mistake at once.
WEAK = ServerConfig(min_version="1.0", max_version="1.3", suites="legacy", client_cert="none", lifetime_days=825)
#: Where it ends: TLS 1.2+, ECDHE + AEAD, mutual TLS, a 90-day certificate.
HARDENED = ServerConfig(min_version="1.2", max_version="1.3", suites="aead", client_cert="required", lifetime_days=90)


def _server_from(base: ServerConfig, changes: dict[str, object]) -> TLSServer:
    names = {f.name for f in fields(ServerConfig)}
    build_args = {k: changes.pop(k) for k in ("name", "handler", "ca") if k in changes}
    unknown = set(changes) - names
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(names | {'name', 'handler', 'ca'}))}")
    return base.replace(**changes).build(**build_args)  # type: ignore[arg-type]


def weak_server(**changes: object) -> TLSServer:
    """A server configured like :data:`WEAK` (with ``changes``); not started, use ``with``."""
    return _server_from(WEAK, dict(changes))


def hardened_server(**changes: object) -> TLSServer:
    """A server configured like :data:`HARDENED` (with ``changes``); not started, use ``with``."""
    return _server_from(HARDENED, dict(changes))


# --- checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """The outcome of one check: passed or not, and one line of evidence (stable text)."""

    name: str
    passed: bool
    evidence: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"<Check {self.name}: {'passed' if self.passed else 'FAILED'}: {self.evidence}>"

    def __str__(self) -> str:
        return f"{'✓' if self.passed else '✗'} {self.name}: {self.evidence}"


def check_min_version(target: object, *, servername: str = "localhost") -> Check:
    """Passes when the server refuses TLS 1.0 and TLS 1.1 (a handshake offering only that version)."""
    parse_target(target)
    accepted = [v for v in ("1.0", "1.1") if probe_version(target, v, servername=servername).accepted]
    if accepted:
        return Check("minimum version", False, f"accepts {' and '.join('TLS ' + v for v in accepted)}")
    return Check("minimum version", True, "refuses TLS 1.0 and TLS 1.1")


def check_cipher_policy(target: object, *, servername: str = "localhost") -> Check:
    """Passes when every TLS 1.2 suite the server accepts is ECDHE with an AEAD cipher."""
    if not probe_version(target, "1.2", servername=servername).accepted:
        return Check("cipher policy", True, "TLS 1.2 is off: only TLS 1.3's AEAD suites remain")
    suites = accepted_suites(target, servername=servername)
    bad = [s for s in suites if s.problems]
    if bad:
        kinds = sorted({p for s in bad for p in s.problems}, key=_PROBLEM_ORDER.index)
        words = ", ".join(_PROBLEM_NAMES[k] for k in kinds)
        return Check("cipher policy", False, f"accepts {len(bad)} weak TLS 1.2 suite{'s' if len(bad) != 1 else ''} ({words}), e.g. {bad[0].name}")
    return Check("cipher policy", True, f"accepts {len(suites)} TLS 1.2 suite{'s' if len(suites) != 1 else ''}, all ECDHE + AEAD")


_PROBLEM_NAMES = {
    "null_cipher": "no encryption", "anonymous": "anonymous", "export": "export grade", "rc4_suites": "RC4",
    "3des_suites": "3DES", "static_rsa_suites": "static RSA", "cbc_suites": "CBC", "dhe_suites": "DHE",
    "no_forward_secrecy": "no forward secrecy",
}
_PROBLEM_ORDER = list(_PROBLEM_NAMES)


def check_client_auth(target: object, *, servername: str = "localhost") -> Check:
    """Passes when the server refuses a client that presents no certificate."""
    for version in ("1.3", "1.2"):
        probe = probe_version(target, version, servername=servername)
        if probe.accepted:
            policy = _client_policy(probe)
            break
    else:
        return Check("client authentication", False, "no TLS 1.2 or 1.3 handshake at all")
    words = {
        "none": "never asks for a client certificate: any client may connect",
        "optional": "asks for a client certificate, but accepts clients without one",
        "required": "refuses a client without a certificate",
        "unknown": "could not tell whether it requires a client certificate",
    }[policy]
    return Check("client authentication", policy == "required", words)


def check_certificate_lifetime(subject: object, *, max_days: int = 398) -> Check:
    """Passes when the certificate lives at most ``max_days``; ``subject``: a running server (its
    certificate is fetched with a handshake), a :class:`Credential` or an ``x509.Certificate``."""
    if isinstance(subject, Credential):
        cert = subject.certificate
    elif isinstance(subject, x509.Certificate):
        cert = subject
    else:
        probe = next((p for p in (probe_version(subject, v) for v in ("1.3", "1.2")) if p.chain), None)
        if probe is None:
            return Check("certificate lifetime", False, "no certificate: no TLS 1.2 or 1.3 handshake")
        cert = probe.chain[0]
    days = round((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400)
    if days > max_days:
        return Check("certificate lifetime", False, f"the certificate is valid for {days} days: more than {max_days}")
    return Check("certificate lifetime", True, f"the certificate is valid for {days} days: at most {max_days} (renew it automatically)")


def check_key_file(path: str | Path) -> Check:
    """Passes when ``path`` is a regular file owned by you that only you can read (mode 0600 or 0400)."""
    path = Path(path)
    try:
        info = path.lstat()
    except OSError as exc:
        return Check("key file permissions", False, f"{path.name}: cannot read its permissions ({exc.strerror or exc})")
    if not stat.S_ISREG(info.st_mode):
        return Check("key file permissions", False, f"{path.name}: not a regular file (a symbolic link or a folder)")
    mode = stat.S_IMODE(info.st_mode)
    problems = []
    if mode & 0o077:
        who = " and ".join(w for w, bits in (("group", 0o070), ("others", 0o007)) if mode & bits)
        problems.append(f"mode {mode:04o}: {who} can {'read' if mode & 0o044 else 'access'} it")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        problems.append("owned by another user")
    if problems:
        return Check("key file permissions", False, f"{path.name}: {'; '.join(problems)}")
    return Check("key file permissions", True, f"{path.name}: mode {mode:04o}, owned by you")


# Code smells: lines that turn certificate verification off.
_SMELL_PATTERNS: tuple[tuple[str, str, str], ...] = (
    (r"\bverify\s*=\s*False\b", "verify=False", "requests/httpx skip the certificate check: any certificate is accepted"),
    (r"\bCERT_NONE\b", "CERT_NONE", "the context accepts any certificate, even one the attacker made"),
    (r"\bcheck_hostname\s*=\s*False\b", "check_hostname=False", "any certificate from a trusted CA is accepted, for any host"),
    (r"_create_unverified_context", "ssl._create_unverified_context()", "a context that verifies nothing"),
    (r"\bdisable_warnings\s*\(", "urllib3.disable_warnings()", "hides the warning that verification is off"),
    (r"PYTHONHTTPSVERIFY['\"\]]*\s*[=,:]\s*['\"]?0", "PYTHONHTTPSVERIFY=0", "turns verification off for the whole process"),
    (r"(?:^|\s)(?:-k|--insecure)(?:\s|$)", "curl -k / --insecure", "curl accepts any certificate"),
)


@dataclass(frozen=True)
class Smell:
    """A line of code that disables certificate verification."""

    line: int
    code: str
    smell: str
    why: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.smell}: {self.why}  ({self.code})"


def find_verification_smells(source: str) -> list[Smell]:
    """Every line of ``source`` that turns certificate verification off (comments skipped)."""
    found = []
    for number, line in enumerate(source.splitlines(), start=1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        for pattern, name, why in _SMELL_PATTERNS:
            if code and re.search(pattern, code):
                found.append(Smell(number, line.strip(), name, why))
    return found


def check_source(source: str) -> Check:
    """Passes when ``source`` has no line that turns certificate verification off."""
    smells = find_verification_smells(source)
    if smells:
        return Check("no verification smells", False, "; ".join(f"line {s.line}: {s.smell}" for s in smells))
    return Check("no verification smells", True, "no line turns certificate verification off")


_SECRET = "password=correct-horse-battery-staple"


def check_client_context(ctx: ssl.SSLContext, *, server_hostname: str = "localhost") -> Check:
    """Passes when the client context verifies certificates and host names, proven live: a
    man in the middle (:class:`tlslab.mitm.Interceptor`) with a forged certificate must fail to
    read what the client sends."""
    from .mitm import Interceptor  # the attacker sits above the servers it attacks

    settings = []
    if ctx.verify_mode != ssl.CERT_REQUIRED:
        settings.append(f"verify_mode {ssl.VerifyMode(ctx.verify_mode).name}")
    if not ctx.check_hostname:
        settings.append("check_hostname False")
    server = HARDENED.replace(client_cert="none").build(name="hardening-verification-target")
    with server, Interceptor(server, name="hardening-interceptor") as mitm:
        report = connect(mitm, context=ctx, server_hostname=server_hostname, send=_SECRET)
        stolen = mitm.stolen.contains(_SECRET)
    if stolen:
        why = f" ({', '.join(settings)})" if settings else ""
        return Check("verification", False, f"the client accepted the forged certificate{why}: the man in the middle read the password")
    if settings:
        return Check("verification", False, f"{', '.join(settings)}: the forged certificate was refused this time, but verification is weakened")
    refused = f" ({report.diagnosis.key})" if report.diagnosis else ""
    return Check("verification", True, f"the client refused the forged certificate{refused}: the man in the middle read nothing")


def check_scan(target: object, **scan_options: object) -> Check:
    """Passes when :func:`tlslab.scan.scan` finds nothing (``scan_options`` go to it)."""
    result: ScanResult = scan(target, **scan_options)  # type: ignore[arg-type]
    if result.error is not None:
        return Check("scan", False, f"could not scan: {result.error}")
    if result.counted:
        return Check("scan", False, f"exit code {result.exit_code}: {', '.join(f.key for f in result.counted)}")
    return Check("scan", True, f"exit code 0: clean against the {result.profile.label} profile")


def pinning_demo() -> list[tuple[str, str]]:
    """Pinning's trade-off, live: a client pinned to the server's certificate and a client that
    trusts the CA, before and after the server renews its certificate. Returns (moment, outcome) rows."""
    ca = hardening_ca()
    first = ca.issue_server_cert("localhost", "127.0.0.1")
    rows = []
    with TLSServer(first, name="hardening-pinning") as server:
        for moment in ("before renewal", "after renewal"):
            pinned = connect(server, trust=first)  # trusts this one certificate, and nothing else
            by_ca = connect(server, trust=ca)
            rows.append((f"{moment}: pinned client", _outcome(pinned)))
            rows.append((f"{moment}: client trusting the CA", _outcome(by_ca)))
            if moment == "before renewal":
                server.reload_certificate(ca.issue_server_cert("localhost", "127.0.0.1"))
    return rows


def _outcome(report: object) -> str:
    if getattr(report, "ok", False):
        return "connected"
    diagnosis = getattr(report, "diagnosis", None)
    return f"refused ({diagnosis.key})" if diagnosis else "refused"


# --- the checklist ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChecklistItem:
    """One rule of the checklist. ``kind``: ``"rule"`` (weak fails, hardened passes) or ``"trade-off"``."""

    key: str
    title: str
    why: str
    fix: str
    kind: Literal["rule", "trade-off"] = "rule"


CHECKLIST: dict[str, ChecklistItem] = {
    item.key: item
    for item in (
        ChecklistItem(
            "minimum_version", "Minimum version: TLS 1.2",
            "TLS 1.0 and 1.1 are deprecated (RFC 8996): SHA-1/MD5 in the handshake, no AEAD ciphers, downgrade attacks.",
            "ctx.minimum_version = ssl.TLSVersion.TLSv1_2 (or TLSv1_3 when every client can)."),
        ChecklistItem(
            "cipher_policy", "TLS 1.2 suites: ECDHE + AEAD only",
            "Static RSA has no forward secrecy (a stolen key decrypts recorded traffic); CBC suites have a long record of padding oracles.",
            'ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20"); TLS 1.3 suites are all AEAD already.'),
        ChecklistItem(
            "verification", "Verification never disabled",
            "verify=False and CERT_NONE accept any certificate, check_hostname=False any trusted one for any name: a man in the middle reads everything (lesson 02).",
            "keep ssl.create_default_context()'s settings; trust your own CA with cafile= instead of turning checks off."),
        ChecklistItem(
            "key_permissions", "Private key files: 0600, owned by you",
            "Anyone who can read the key can impersonate the server, and decrypt recorded static-RSA sessions.",
            "chmod 600 server.key; create key files with that mode from the start (Credential.files() does)."),
        ChecklistItem(
            "certificate_lifetime", "Short certificates, renewed automatically",
            "A long-lived certificate keeps a leaked key useful for years, and revocation barely works; browsers refuse "
            "public certificates over 398 days.",
            "issue 90-day (or shorter) certificates and renew them automatically (ACME; lesson 05's rotation)."),
        ChecklistItem(
            "client_authentication", "Services require client certificates (mutual TLS)",
            "Without a client certificate a service cannot tell who calls it: anything that reaches the port gets in.",
            "ctx.verify_mode = ssl.CERT_REQUIRED; ctx.load_verify_locations(the clients' CA)."),
        ChecklistItem(
            "pinning", "Pinning: a trade-off",
            "Pinning a certificate (or key) defeats a mis-issuing CA, but every renewal breaks pinned clients unless "
            "they were updated first; browsers gave up HPKP (2018) after sites locked themselves out.",
            "prefer a private CA you control (mTLS inside, lesson 05) to pinning; if you pin, pin the CA or a backup "
            "key, never only the current leaf, and ship the new pin before you rotate.",
            kind="trade-off"),
        ChecklistItem(
            "scan", "Scan your own services",
            "Configuration drifts: a scan in CI catches the legacy version or the CBC suite someone re-enabled.",
            "run `tlslab scan HOST:PORT --ca ca.pem` in CI; it exits 1 on findings."),
    )
}


@dataclass
class ItemResult:
    """A checklist item demonstrated: the weak example's check and the hardened one's."""

    item: ChecklistItem
    weak: Check | None = None
    hardened: Check | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def demonstrated(self) -> bool:
        """The weak example fails and the hardened one passes (a trade-off: the demo ran)."""
        if self.item.kind == "trade-off":
            return bool(self.notes)
        return self.weak is not None and self.hardened is not None and not self.weak.passed and self.hardened.passed

    def rows(self) -> list[tuple[str, str]]:
        rows = []
        if self.weak is not None:
            rows.append(("weak", f"{'✓' if self.weak.passed else '✗'} {self.weak.evidence}"))
        if self.hardened is not None:
            rows.append(("hardened", f"{'✓' if self.hardened.passed else '✗'} {self.hardened.evidence}"))
        rows += self.notes
        rows += [("why", self.item.why), ("fix", self.item.fix)]
        return rows

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        return "\n".join([self.item.title] + [f"  {k:<{width}}  {v}" for k, v in self.rows()])

    def __repr__(self) -> str:
        state = "demonstrated" if self.demonstrated else "NOT demonstrated"
        return f"<ItemResult {self.item.key}: {state}>"

    def _repr_html_(self) -> str:
        return _items_html([self])


@dataclass
class Checklist:
    """Every item demonstrated, in order."""

    results: list[ItemResult]

    def __iter__(self) -> Iterator[ItemResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, key: str | int) -> ItemResult:
        if isinstance(key, int):
            return self.results[key]
        for result in self.results:
            if result.item.key == key:
                return result
        raise KeyError(key)

    @property
    def all_demonstrated(self) -> bool:
        return all(r.demonstrated for r in self.results)

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.results)

    def __repr__(self) -> str:
        lines = []
        for r in self.results:
            weak = "—" if r.weak is None else ("pass" if r.weak.passed else "fail")
            hard = "—" if r.hardened is None else ("pass" if r.hardened.passed else "fail")
            lines.append(f"{'✓' if r.demonstrated else '✗'} {r.item.title:<52} weak {weak:<4}  hardened {hard}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return _items_html(self.results)


def _items_html(results: Sequence[ItemResult]) -> str:
    esc = html.escape

    def cell(check: Check | None) -> str:
        if check is None:
            return "<td style='text-align:left;vertical-align:top'>—</td>"
        colour = "#27ae60" if check.passed else "#c0392b"
        return (f"<td style='text-align:left;vertical-align:top;color:{colour}'>"
                f"{'✓' if check.passed else '✗'} {esc(check.evidence)}</td>")

    head = "".join(f"<th style='text-align:left'>{h}</th>" for h in ("rule", "weak", "hardened", "why, and how to fix"))
    body = ""
    for r in results:
        notes = "".join(f"<br>{esc(k)}: <b>{esc(v)}</b>" for k, v in r.notes)
        body += (
            f"<tr><td style='text-align:left;vertical-align:top'><b>{esc(r.item.title)}</b></td>"
            f"{cell(r.weak)}{cell(r.hardened)}"
            f"<td style='text-align:left;vertical-align:top'>{esc(r.item.why)}<br><i>Fix:</i> {esc(r.item.fix)}{notes}</td></tr>"
        )
    return f"<table class='tlslab-checklist'><tr>{head}</tr>{body}</table>"


_WEAK_SOURCE = '''import requests, ssl
requests.get("https://localhost:8443/", verify=False)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
'''
_HARDENED_SOURCE = '''import requests, ssl
requests.get("https://localhost:8443/", verify="ca.pem")
ctx = ssl.create_default_context(cafile="ca.pem")
'''


def _insecure_context() -> ssl.SSLContext:
    """DEMO OF A MISTAKE: the client context of ``verify=False`` (never copy it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _demo(key: str, weak: TLSServer, hardened: TLSServer) -> ItemResult:
    item = CHECKLIST[key]
    result = ItemResult(item)
    if key == "minimum_version":
        result.weak, result.hardened = check_min_version(weak), check_min_version(hardened)
    elif key == "cipher_policy":
        result.weak, result.hardened = check_cipher_policy(weak), check_cipher_policy(hardened)
    elif key == "verification":
        result.weak = check_client_context(_insecure_context())
        result.hardened = check_client_context(client_context(hardening_ca()))
        smells = find_verification_smells(_WEAK_SOURCE)
        result.notes.append(("code smells in the weak client", ", ".join(dict.fromkeys(s.smell for s in smells))))
    elif key == "key_permissions":
        credential = hardened.credential
        loose = _write_private(private_folder() / "weak-server.key", credential.key_pem(), 0o644)
        _, tight = credential.files("hardened-server")
        result.weak, result.hardened = check_key_file(loose), check_key_file(tight)
    elif key == "certificate_lifetime":
        result.weak, result.hardened = check_certificate_lifetime(weak), check_certificate_lifetime(hardened)
    elif key == "client_authentication":
        result.weak, result.hardened = check_client_auth(weak), check_client_auth(hardened)
    elif key == "pinning":
        result.notes = pinning_demo()
    elif key == "scan":
        options = dict(ca=hardening_ca(), cert=client_credential(), profile="intermediate", require_client_cert=True)
        result.weak, result.hardened = check_scan(weak, **options), check_scan(hardened, **options)
    else:  # pragma: no cover - CHECKLIST and this function list the same keys
        raise KeyError(key)
    return result


def demonstrate(key: str) -> ItemResult:
    """Demonstrate one checklist item (``CHECKLIST`` key) with a weak and a hardened server."""
    if key not in CHECKLIST:
        raise KeyError(f"unknown checklist item {key!r}; choose one of {', '.join(CHECKLIST)}")
    return run_checklist([key])[0]


def run_checklist(keys: Sequence[str] | None = None) -> Checklist:
    """Demonstrate the checklist items (all by default) with one :data:`WEAK` and one
    :data:`HARDENED` server, both stopped before this returns."""
    keys = list(keys or CHECKLIST)
    unknown = [k for k in keys if k not in CHECKLIST]
    if unknown:
        raise KeyError(f"unknown checklist item(s) {', '.join(unknown)}; choose from {', '.join(CHECKLIST)}")
    with weak_server(name="hardening-weak") as weak, hardened_server(name="hardening-hardened") as hardened:
        return Checklist([_demo(key, weak, hardened) for key in keys])

