"""Verify a certificate chain by hand, with ``cryptography``: what a TLS client does, step by step.

A client that receives a server's certificates walks *up* the chain, from the server's own
certificate (the leaf) to a root it already trusts, and checks at every step::

    >>> from tlslab.pki import CertificateAuthority
    >>> root = CertificateAuthority("Hand Root")
    >>> issuing = root.intermediate("Hand Issuing CA")
    >>> server = issuing.issue_server_cert("localhost")
    >>> verdict = verify_chain(server.certificate, server.intermediates, [root.certificate], host="localhost")
    >>> verdict.ok
    True
    >>> [step.check for step in verdict.steps][:3]
    ['host name (SAN)', 'purpose (EKU)', 'validity']

The checks, in the order a client makes them:

* the leaf: the host name the client asked for must be in its subjectAltName (the CN is *not*
  checked, RFC 6125 and every modern client), and its extended key usage must allow a TLS server;
* every certificate: valid at this moment (``at``), with a key strong enough (OpenSSL's default
  security level 2: RSA ≥ 2048 bits, elliptic curves ≥ 224 bits);
* every issuer: found (among the certificates the server sent, or in the trust store), marked as a
  CA (basicConstraints ``CA:TRUE``), allowed to sign certificates (keyUsage ``keyCertSign``), within
  its path length; and its public key must verify the signature on the certificate below it;
* optionally, revocation: the issuer's CRL (signed by the issuer) must not list the certificate;
* the walk ends at a *trust anchor*: a root in ``trusted_roots``. Its own self-signature is not
  what makes it trustworthy; being in the trust store is.

:func:`verify_chain` never raises for a bad chain: it returns a :class:`ChainVerdict` listing every
step, ok or not, and why. It raises ``TypeError`` only for arguments of the wrong type.

The failure keys are those of :mod:`tlslab.explain` and :mod:`tlslab.gallery` (``expired``,
``hostname_mismatch``, ``missing_intermediate``, …), so a verdict by hand can be compared with the
verdict of OpenSSL.
"""

from __future__ import annotations

import datetime as dt
import html
import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .pki import describe_key

__all__ = ["ChainVerdict", "Step", "verify_chain"]

Purpose = Literal["server", "client"]

#: OpenSSL's security level 2 (Python's default): at least 112 bits of security.
MIN_RSA_BITS = 2048
MIN_EC_BITS = 224
MAX_DEPTH = 10

_EKU = {"server": (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"), "client": (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth")}


@dataclass(frozen=True)
class Step:
    """One check of the walk: on which certificate, what was checked, the result and why.

    ``depth`` counts from the leaf (0) up; ``key`` names the defect when ``ok`` is false.
    """

    depth: int
    certificate: str
    check: str
    ok: bool
    detail: str
    key: str | None = None

    def __repr__(self) -> str:
        mark = "ok" if self.ok else f"FAILED ({self.key})"
        return f"<Step {self.depth} {self.certificate!r} {self.check}: {mark}: {self.detail}>"


@dataclass
class ChainVerdict:
    """The outcome of :func:`verify_chain`: every step, and the chain it built (leaf first)."""

    steps: list[Step]
    path: list[x509.Certificate] = field(repr=False)
    host: str | None
    at: dt.datetime

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def failures(self) -> list[Step]:
        return [step for step in self.steps if not step.ok]

    @property
    def failure(self) -> Step | None:
        """The first failed step (the one a client would report), or ``None``."""
        return next(iter(self.failures), None)

    @property
    def key(self) -> str | None:
        """The first defect's key, as :mod:`tlslab.explain` names it; ``None`` when ok."""
        failure = self.failure
        return failure.key if failure else None

    def __repr__(self) -> str:
        if self.ok:
            return f"<ChainVerdict ok: {len(self.steps)} checks passed, {len(self.path)} certificates up to a trusted root>"
        failure = self.failure
        assert failure is not None
        return f"<ChainVerdict failed: {failure.key} at depth {failure.depth} ({failure.check}): {failure.detail}>"

    def __str__(self) -> str:
        lines = [("✓ chain verified" if self.ok else f"✗ chain refused: {self.key}")]
        for step in self.steps:
            lines.append(f"{'✓' if step.ok else '✗'} [{step.depth}] {step.certificate}: {step.check}: {step.detail}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = "#27ae60" if self.ok else "#c0392b"
        title = "✓ Chain verified by hand" if self.ok else f"✗ Chain refused by hand: {html.escape(str(self.key))}"
        rows = "".join(
            f"<tr><td style='color:{'#27ae60' if s.ok else '#c0392b'};font-weight:bold'>{'✓' if s.ok else '✗'}</td>"
            f"<td style='text-align:left'>{s.depth}</td>"
            f"<td style='text-align:left'>{html.escape(s.certificate)}</td>"
            f"<td style='text-align:left'>{html.escape(s.check)}</td>"
            f"<td style='text-align:left'>{html.escape(s.detail)}</td></tr>"
            for s in self.steps
        )
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in ("", "depth", "certificate", "check", "why"))
        return (
            f"<div class='tlslab-verdict' style='border-left:4px solid {colour};padding-left:.6em'>"
            f"<b>{title}</b><table><tr>{head}</tr>{rows}</table></div>"
        )


# --- small readers ---------------------------------------------------------------------------


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.subject.rfc4514_string() or "(no subject)"


def _issuer_cn(cert: x509.Certificate) -> str:
    attrs = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.issuer.rfc4514_string()


def _extension(cert: x509.Certificate, kind: type) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _day(when: dt.datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M} UTC"


def _same(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a == b  # cryptography compares the DER encodings


# --- the checks ------------------------------------------------------------------------------


def _host_matches(pattern: str, host: str) -> bool:
    """A DNS name from the SAN against the host: exact, or ``*.`` covering exactly one left label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*.") and "." in host:
        return host.split(".", 1)[1] == pattern[2:] and host.split(".", 1)[0] != ""
    return False


def _check_host(cert: x509.Certificate, host: str) -> tuple[bool, str]:
    san = _extension(cert, x509.SubjectAlternativeName)
    cn = _cn(cert)
    if san is None:
        return False, f"the certificate has no subjectAltName; its CN {cn!r} is not checked (RFC 6125)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        listed = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]  # type: ignore[attr-defined]
        if address in san.get_values_for_type(x509.IPAddress):  # type: ignore[attr-defined]
            return True, f"{host} is listed as an IP address in the SAN"
        return False, f"{host} is not among the SAN's IP addresses ({', '.join(listed) or 'none'})"
    names = san.get_values_for_type(x509.DNSName)  # type: ignore[attr-defined]
    match = next((name for name in names if _host_matches(name, host)), None)
    if match is not None:
        return True, f"{host!r} matches the SAN entry {match!r}"
    also = f"; the CN {cn!r} is not checked" if cn.lower() == host.lower() else ""
    return False, f"{host!r} is not among the SAN's names ({', '.join(names) or 'none'}){also}"


def _check_purpose(cert: x509.Certificate, purpose: Purpose) -> tuple[bool, str]:
    oid, label = _EKU[purpose]
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is None:
        return True, "no extended key usage: any purpose is allowed (RFC 5280)"
    names = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
    listed = ", ".join(names.get(o, o.dotted_string) for o in eku) or "nothing"  # type: ignore[attr-defined]
    if oid in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku:  # type: ignore[operator]
        return True, f"extended key usage {listed} allows a TLS {purpose}"
    return False, f"extended key usage allows only {listed}, not {label}: this certificate is not for a TLS {purpose}"


def _check_validity(cert: x509.Certificate, at: dt.datetime, when: str) -> tuple[bool, str, str | None]:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if at < start:
        return False, f"not valid before {_day(start)}; checked {when}", "not_yet_valid"
    if at > end:
        return False, f"expired on {_day(end)}; checked {when}", "expired"
    return True, f"valid from {start:%Y-%m-%d} to {end:%Y-%m-%d}", None


def _check_key(cert: x509.Certificate) -> tuple[bool, str]:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        return False, f"the public key cannot be read ({exc})"
    name = describe_key(key)
    if isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)) and key.key_size < MIN_RSA_BITS:
        return False, f"{name} is below {MIN_RSA_BITS} bits (OpenSSL security level 2 wants 112 bits of security)"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
        return False, f"{name} is below {MIN_EC_BITS} bits (OpenSSL security level 2 wants 112 bits of security)"
    return True, f"{name} is strong enough"


def _check_ca(cert: x509.Certificate, cas_below: int) -> list[tuple[str, bool, str, str | None]]:
    """basicConstraints, keyUsage and path length of a certificate used to sign another one."""
    out: list[tuple[str, bool, str, str | None]] = []
    bc = _extension(cert, x509.BasicConstraints)
    if bc is None or not bc.ca:  # type: ignore[attr-defined]
        why = "it has no basicConstraints" if bc is None else "its basicConstraints say CA:FALSE"
        out.append(("is a CA", False, f"it signed a certificate, but {why}: only a CA may sign", "invalid_ca"))
        return out
    out.append(("is a CA", True, "basicConstraints CA:TRUE", None))
    ku = _extension(cert, x509.KeyUsage)
    if ku is not None and not ku.key_cert_sign:  # type: ignore[attr-defined]
        out.append(("key usage", False, "keyUsage lacks keyCertSign: this key may not sign certificates", "invalid_ca"))
    else:
        out.append(("key usage", True, "keyUsage allows keyCertSign" if ku is not None else "no keyUsage: any use", None))
    limit = bc.path_length  # type: ignore[attr-defined]
    if limit is not None and cas_below > limit:
        out.append(("path length", False, f"path length {limit}, but {cas_below} CA(s) sit below it", "path_length"))
    elif limit is not None:
        out.append(("path length", True, f"path length {limit}; {cas_below} CA(s) below it", None))
    return out


def _find_issuer(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> tuple[x509.Certificate | None, list[x509.Certificate]]:
    """The candidate whose signature verifies (and the name-matching ones that were tried)."""
    named = [c for c in candidates if c.subject == cert.issuer and not _same(c, cert)]
    for candidate in named:
        try:
            cert.verify_directly_issued_by(candidate)
            return candidate, named
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return None, named


def _check_crls(
    cert: x509.Certificate, issuer: x509.Certificate, crls: Sequence[x509.CertificateRevocationList], at: dt.datetime, depth: int
) -> tuple[bool, str, str | None] | None:
    """The revocation step for ``cert`` (or ``None``: no CRL to consult, and none required here)."""
    mine = [crl for crl in crls if crl.issuer == issuer.subject]
    if not mine:
        if depth == 0:  # like OpenSSL's CRL_CHECK_LEAF: checking was asked for, the leaf's CRL must be there
            return False, f"no CRL from {_cn(issuer)!r} was given, so revocation cannot be checked", "crl_missing"
        return None
    for crl in mine:
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            return False, f"the CRL claiming to come from {_cn(issuer)!r} is not signed by its key", "bad_signature"
        next_update = crl.next_update_utc
        if next_update is not None and next_update < at:
            return False, f"the CRL from {_cn(issuer)!r} expired on {_day(next_update)}", "crl_expired"
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            return False, (
                f"its serial number is on the CRL of {_cn(issuer)!r} (revoked {entry.revocation_date_utc:%Y-%m-%d})"
            ), "revoked"
    return True, f"not on the CRL of {_cn(issuer)!r}", None


# --- the walk --------------------------------------------------------------------------------


def _certificates(value: object, what: str) -> list[x509.Certificate]:
    if isinstance(value, x509.Certificate):
        return [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a list of cryptography x509.Certificate objects, not {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, x509.Certificate):
            raise TypeError(f"{what} must hold x509.Certificate objects, not {type(item).__name__}")
    return items


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Iterable[x509.Certificate] = (),
    trusted_roots: Iterable[x509.Certificate] = (),
    *,
    host: str | None = None,
    at: dt.datetime | None = None,
    crls: Iterable[x509.CertificateRevocationList] = (),
    purpose: Purpose = "server",
) -> ChainVerdict:
    """Walk from ``leaf`` up to a root in ``trusted_roots``, checking every link; see the module doc.

    ``intermediates``: what the server sent after its leaf (in any order). ``host``: the name the
    client asked for (``None`` skips the host check). ``at``: the moment to check validity at
    (default now; a naive datetime means UTC). ``crls``: revocation lists to consult; when given,
    the leaf's issuer must have one. ``purpose``: ``"server"`` (serverAuth) or ``"client"``.
    """
    if not isinstance(leaf, x509.Certificate):
        raise TypeError(f"leaf must be a cryptography x509.Certificate, not {type(leaf).__name__}")
    pool = _certificates(intermediates, "intermediates")
    anchors = _certificates(trusted_roots, "trusted_roots")
    crl_list = list(crls) if not isinstance(crls, x509.CertificateRevocationList) else [crls]
    for crl in crl_list:
        if not isinstance(crl, x509.CertificateRevocationList):
            raise TypeError(f"crls must hold x509.CertificateRevocationList objects, not {type(crl).__name__}")
    if host is not None and not isinstance(host, str):
        raise TypeError(f"host must be a string, not {type(host).__name__}")
    if at is None:
        # "now" stays a word in the steps' texts, so a notebook's output does not change every minute.
        at, when = dt.datetime.now(dt.timezone.utc), "now"
    elif not isinstance(at, dt.datetime):
        raise TypeError(f"at must be a datetime, not {type(at).__name__}")
    else:
        at = at if at.tzinfo is not None else at.replace(tzinfo=dt.timezone.utc)
        when = f"at {_day(at)}"
    if purpose not in _EKU:
        raise ValueError("purpose must be 'server' or 'client'")

    steps: list[Step] = []
    path = [leaf]

    def step(depth: int, cert: x509.Certificate, check: str, ok: bool, detail: str, key: str | None = None) -> None:
        steps.append(Step(depth, _cn(cert), check, ok, detail, None if ok else key))

    if host is not None:
        ok, why = _check_host(leaf, host)
        step(0, leaf, "host name (SAN)", ok, why, "hostname_mismatch")
    ok, why = _check_purpose(leaf, purpose)
    step(0, leaf, "purpose (EKU)", ok, why, "wrong_usage")

    cert, depth = leaf, 0
    while True:
        ok, why, key = _check_validity(cert, at, when)
        step(depth, cert, "validity", ok, why, key)
        ok, why = _check_key(cert)
        step(depth, cert, "key strength", ok, why, "key_too_small")
        if depth > 0:
            for check, ok, why, key in _check_ca(cert, cas_below=depth - 1):
                step(depth, cert, check, ok, why, key)
        if any(_same(cert, anchor) for anchor in anchors):
            step(depth, cert, "trust anchor", True, "in the client's trust store: the walk ends here")
            break
        if cert.issuer == cert.subject:
            try:
                cert.verify_directly_issued_by(cert)
                self_signed = True
            except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
                self_signed = False
            if self_signed:
                if depth == 0:
                    step(0, cert, "trust anchor", False, "self-signed: it vouches for itself, and it is not in the trust store", "self_signed")
                else:
                    step(depth, cert, "trust anchor", False, "a self-signed root that is not in the client's trust store", "unknown_root")
                break
        if depth >= MAX_DEPTH:
            step(depth, cert, "chain length", False, f"more than {MAX_DEPTH} certificates: giving up", "chain_too_long")
            break
        issuer, named = _find_issuer(cert, anchors + pool)
        if issuer is None and named:
            step(depth, cert, "signature", False,
                 f"{_issuer_cn(cert)!r} is there, but its public key does not verify this certificate's signature "
                 "(altered, or signed by another key with the same name)", "bad_signature")
            break
        if issuer is None:
            if depth == 0:
                why = (f"its issuer {_issuer_cn(cert)!r} was not sent and is not a trusted root: "
                       "the intermediate is missing (or the issuer is a CA the client does not know)")
                step(0, cert, "issuer found", False, why, "missing_intermediate")
            else:
                why = f"its issuer {_issuer_cn(cert)!r} is not in the client's trust store: an unknown root"
                step(depth, cert, "issuer found", False, why, "unknown_root")
            break
        where = "a trusted root" if any(_same(issuer, a) for a in anchors) else "sent by the server"
        step(depth, cert, "issuer found", True, f"{_cn(issuer)!r} ({where})")
        step(depth, cert, "signature", True, f"verified with the public key of {_cn(issuer)!r} ({describe_key(issuer.public_key())})")
        if crl_list:
            revocation = _check_crls(cert, issuer, crl_list, at, depth)
            if revocation is not None:
                ok, why, key = revocation
                step(depth, cert, "revocation (CRL)", ok, why, key)
        path.append(issuer)
        cert, depth = issuer, depth + 1
    return ChainVerdict(steps=steps, path=path, host=host, at=at)
