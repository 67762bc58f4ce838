"""Device enrollment: a device that cannot type a password gets its identity by CSR.

The device makes its own key pair — the private key never leaves it — and a certificate signing
request (CSR) for its name, signed with that key. The CA checks the CSR against its enrollment
policy and signs it, or refuses with a clear reason::

    >>> ca = CertificateAuthority("IoT CA")
    >>> device = Device("sensor-1")                       # key + CSR, made on the device
    >>> device.enroll(ca)                                 # doctest: +ELLIPSIS
    <Enrollment spiffe://course.test/device/sensor-1: signed (ECDSA P-256)>
    >>> device.connect(server, trust=ca)                  # doctest: +SKIP

The checks (:func:`check_csr`), in order:

1. **format**: the bytes are a PEM certificate signing request;
2. **proof of possession**: the CSR's signature verifies with the public key it carries, so the
   requester holds the matching private key;
3. **name**: it asks for exactly one name, and that name matches the policy's pattern
   (``spiffe://course.test/device/*``: ``*`` is one segment of letters, digits, ``-`` or ``_``);
4. **key type**: its key is one the policy allows (ECDSA P-256 or Ed25519 by default);
5. **not a CA**: it does not ask to be a certificate authority.

The first failed check is the :class:`EnrollmentError`'s ``reason``: ``malformed``,
``signature``, ``name``, ``key_type`` or ``ca_requested``.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .client import HandshakeReport, connect
from .pki import CertificateAuthority, Credential, PKIError, _san_strings_from, describe_key, make_csr

if TYPE_CHECKING:
    from .servers import TLSServer

__all__ = [
    "DEFAULT_POLICY",
    "Check",
    "Device",
    "Enrollment",
    "EnrollmentError",
    "EnrollmentPolicy",
    "check_csr",
    "corrupt_signature",
    "enroll",
    "swap_public_key",
]


@dataclass(frozen=True)
class Check:
    """One check of a CSR: its name, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str

    def __repr__(self) -> str:
        return f"<Check {self.name}: {'ok' if self.ok else 'FAILED'}: {self.detail}>"


#: The reason key of each check, as ``EnrollmentError.reason`` reports it.
REASONS = {
    "format": "malformed",
    "proof of possession": "signature",
    "name": "name",
    "key type": "key_type",
    "not a CA": "ca_requested",
}


class EnrollmentError(ValueError):
    """The CA refused to sign a CSR. ``reason`` is the key of the first failed check
    (``malformed``, ``signature``, ``name``, ``key_type``, ``ca_requested``); ``checks`` are all
    the checks, passed or not."""

    def __init__(self, reason: str, message: str, checks: Sequence[Check] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.checks = list(checks)

    def _repr_html_(self) -> str:
        return (f"<div class='tlslab-enrollment' style='border-left:4px solid #c0392b;padding-left:.6em'>"
                f"<b>✗ enrollment refused: {html.escape(str(self))}</b>{_checks_html(self.checks)}</div>")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    # `*` stands for one name segment: letters, digits, '-' or '_' (never '/', never '.').
    parts = (re.escape(p) for p in pattern.split("*"))
    return re.compile("^" + "[A-Za-z0-9_-]+".join(parts) + "$")


@dataclass(frozen=True)
class EnrollmentPolicy:
    """What the CA signs: names matching one of ``names`` (``*`` is one segment of letters,
    digits, ``-`` or ``_``), keys of one of ``key_types`` (as :func:`tlslab.pki.describe_key`
    names them), for ``lifetime`` seconds from now (``None``: the course's fixed dates)."""

    names: tuple[str, ...] = ("spiffe://course.test/device/*",)
    key_types: tuple[str, ...] = ("ECDSA P-256", "Ed25519")
    lifetime: float | None = None

    def name_allowed(self, name: str) -> bool:
        return any(_pattern_regex(p).match(name) for p in self.names)

    def __str__(self) -> str:
        life = f"{self.lifetime:g} s" if self.lifetime else "the course's fixed dates"
        return (f"names: {', '.join(self.names)}\nkey types: {', '.join(self.key_types)}\n"
                f"certificates valid for: {life}")


DEFAULT_POLICY = EnrollmentPolicy()


def _load_csr(csr_pem: bytes | str) -> x509.CertificateSigningRequest:
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    if not isinstance(data, bytes):
        raise TypeError(f"a CSR is PEM bytes or text, not {type(csr_pem).__name__}")
    return x509.load_pem_x509_csr(data)


def check_csr(csr_pem: bytes | str, policy: EnrollmentPolicy = DEFAULT_POLICY) -> list[Check]:
    """Run every check of the enrollment policy on a CSR; nothing raises (see each ``ok``)."""
    try:
        csr = _load_csr(csr_pem)
    except (ValueError, TypeError) as exc:
        return [Check("format", False, f"not a PEM certificate signing request ({exc})")]
    checks = [Check("format", True, "a PEM certificate signing request")]
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # an unknown algorithm, a mangled signature field
        valid, why = False, f"its signature cannot be checked ({exc})"
    else:
        why = "its signature does not verify with the public key it carries: the requester does not hold that key"
    checks.append(Check("proof of possession", True, "the signature verifies with the CSR's own public key")
                  if valid else Check("proof of possession", False, why))
    try:
        names = _san_strings_from(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        names = []
    except ValueError as exc:
        names, checks = [], checks + [Check("name", False, f"its extensions cannot be read ({exc})")]
    if not any(c.name == "name" for c in checks):
        if not names:
            checks.append(Check("name", False, "it asks for no name (no subjectAltName)"))
        elif len(names) > 1:
            checks.append(Check("name", False, f"it asks for {len(names)} names ({', '.join(names)}); a device gets exactly one"))
        elif not policy.name_allowed(names[0]):
            checks.append(Check("name", False, f"{names[0]} does not match {' or '.join(policy.names)}"))
        else:
            checks.append(Check("name", True, f"{names[0]} matches {' or '.join(policy.names)}"))
    key = describe_key(csr.public_key())
    if key in policy.key_types:
        checks.append(Check("key type", True, f"{key} is allowed"))
    else:
        checks.append(Check("key type", False, f"{key} is not allowed here (only {', '.join(policy.key_types)})"))
    try:
        asks_ca = csr.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        asks_ca = False
    checks.append(Check("not a CA", False, "it asks to be a certificate authority (CA=true)") if asks_ca
                  else Check("not a CA", True, "it asks for a leaf certificate"))
    return checks


def _checks_html(checks: Sequence[Check]) -> str:
    rows = "".join(
        f"<tr><td style='color:{'#27ae60' if c.ok else '#c0392b'}'>{'✓' if c.ok else '✗'}</td>"
        f"<th style='text-align:left;padding-right:1em'>{html.escape(c.name)}</th>"
        f"<td style='text-align:left'>{html.escape(c.detail)}</td></tr>"
        for c in checks
    )
    return f"<table>{rows}</table>"


@dataclass
class Enrollment:
    """A signed enrollment: the identity, the checks it passed, and the certificate (no private
    key: it never left the device)."""

    identity: str
    checks: list[Check]
    certificate: Credential = field(repr=False)

    def __repr__(self) -> str:
        return f"<Enrollment {self.identity}: signed ({describe_key(self.certificate.certificate.public_key())})>"

    def _repr_html_(self) -> str:
        return (f"<div class='tlslab-enrollment' style='border-left:4px solid #27ae60;padding-left:.6em'>"
                f"<b>✓ {html.escape(self.identity)} enrolled</b>{_checks_html(self.checks)}</div>")


def enroll(ca: CertificateAuthority, csr_pem: bytes | str, policy: EnrollmentPolicy = DEFAULT_POLICY) -> Enrollment:
    """The CA's side: check the CSR against ``policy``, then sign a client certificate for it;
    :class:`EnrollmentError` (with the reason) if any check fails."""
    checks = check_csr(csr_pem, policy)
    failed = next((c for c in checks if not c.ok), None)
    if failed is not None:
        raise EnrollmentError(REASONS[failed.name], f"{failed.name}: {failed.detail}", checks)
    dates: dict[str, dt.datetime] = {}
    if policy.lifetime:
        from .rotation import validity_from_now

        dates["not_before"], dates["not_after"] = validity_from_now(policy.lifetime)
    try:
        certificate = ca.sign_csr(csr_pem, usage="client", **dates)  # type: ignore[arg-type]
    except PKIError as exc:  # pragma: no cover - the checks above catch what sign_csr refuses
        raise EnrollmentError("malformed", str(exc), checks) from None
    identity = _san_strings_from(
        certificate.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    )[0]
    return Enrollment(identity, checks, certificate)


class Device:
    """A device that enrolls: it makes its key and CSR itself, sends only the CSR, and pairs the
    certificate it gets back with the key it kept.

    ``device_id`` becomes ``spiffe://course.test/device/<device_id>``; pass ``identity=`` to ask
    for any other name (e.g. ``device-7.iot.course.test``, or a wrong one for the demo).
    """

    def __init__(self, device_id: str = "sensor-1", *, key_type: str = "ecdsa", identity: str | None = None,
                 trust_domain: str = "course.test") -> None:
        self.identity = identity or f"spiffe://{trust_domain}/device/{device_id}"
        self.csr_pem, self._private_key = make_csr(self.identity, key_type=key_type)
        self.credential: Credential | None = None
        self.enrollment: Enrollment | None = None

    @property
    def public_key(self):
        return self._private_key.public_key()

    def enroll(self, ca: CertificateAuthority, policy: EnrollmentPolicy = DEFAULT_POLICY) -> Enrollment:
        """Send the CSR to ``ca``; keep the certificate it signs (raises :class:`EnrollmentError`)."""
        self.enrollment = enroll(ca, self.csr_pem, policy)
        cert = self.enrollment.certificate
        self.credential = Credential(cert.certificate, self._private_key, cert.intermediates)
        return self.enrollment

    def connect(self, server: "TLSServer | object", *, trust: CertificateAuthority, **kwargs: object) -> HandshakeReport:
        """Connect with mutual TLS, presenting the enrolled certificate."""
        if self.credential is None:
            raise RuntimeError("this device has not enrolled yet: call enroll(ca) first")
        return connect(server, trust=trust, cert=self.credential, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        state = "enrolled" if self.credential else "not enrolled"
        return f"<Device {self.identity} ({describe_key(self.public_key)}), {state}>"


# --- CSRs that must be refused (for the lesson's demos) -------------------------------------------


def _csr_der(csr_pem: bytes | str) -> bytes:
    return _load_csr(csr_pem).public_bytes(serialization.Encoding.DER)


def _pem(der: bytes) -> bytes:
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n".encode()


def corrupt_signature(csr_pem: bytes | str) -> bytes:
    """The same CSR with one bit of its signature flipped: it still parses, but no longer proves
    that the requester holds the key."""
    der = bytearray(_csr_der(csr_pem))
    der[-1] ^= 0x01  # the signature is the CSR's last field; its last byte is signature bits
    return _pem(bytes(der))


def swap_public_key(csr_pem: bytes | str, public_key: object) -> bytes:
    """The CSR with its public key replaced by ``public_key`` (someone else's), keeping the old
    signature: a request for a certificate on a key the requester does not hold. Both keys must
    be of the same kind and size (e.g. two ECDSA P-256 keys)."""
    csr = _load_csr(csr_pem)
    der = csr.public_bytes(serialization.Encoding.DER)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    old, new = csr.public_key().public_bytes(*fmt), public_key.public_bytes(*fmt)  # type: ignore[attr-defined]
    if len(old) != len(new) or der.count(old) != 1:
        raise PKIError("swap_public_key needs a key of the same kind and size as the CSR's")
    return _pem(der.replace(old, new))
