"""Certificate authorities and certificates for the course, made with ``cryptography``.

A few nouns and verbs, in the spirit of trustme::

    >>> ca = CertificateAuthority("TLS Lab Root CA")
    >>> server = ca.issue_server_cert("localhost", "127.0.0.1")
    >>> client = ca.issue_client_cert("spiffe://course.test/orders")
    >>> server.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    True

Every certificate has fixed validity dates by default (``COURSE_VALIDITY``), so a notebook shows the
same dates every time it runs. Deliberate defects, for the gallery of broken servers, are
parameters: ``not_before``/``not_after`` in the past or future, hosts that don't match, a
self-signed certificate (``self_signed_cert``), or the wrong extended key usage (``usage="client"``
on a server).

Keys and certificates can be written to files (``Credential.files()``): they land in one private
temporary folder (mode 0700, keys 0600) that is removed when Python exits.
"""

from __future__ import annotations

import atexit
import datetime as dt
import html
import ipaddress
import os
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "COURSE_VALIDITY",
    "KEY_TYPES",
    "CertificateAuthority",
    "Credential",
    "KeyType",
    "PKIError",
    "Usage",
    "generate_key",
    "load_certificate",
    "make_csr",
    "private_folder",
    "self_signed_cert",
    "summarize",
]

KeyType = Literal["ecdsa", "rsa", "rsa1024", "rsa2048", "rsa3072", "ed25519"]
KEY_TYPES: tuple[str, ...] = ("ecdsa", "rsa", "rsa1024", "rsa2048", "rsa3072", "ed25519")
Usage = Literal["server", "client", "both", "none"]
PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]

#: Fixed dates: outputs stay the same from one run to the next, and nothing expires mid-course.
COURSE_VALIDITY = (
    dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
    dt.datetime(2045, 1, 1, tzinfo=dt.timezone.utc),
)


class PKIError(ValueError):
    """Bad input to the PKI helpers: broken PEM, a wrong password, an unknown key type."""


# --- the private folder --------------------------------------------------------------------

_folder_lock = threading.Lock()
_folder: Path | None = None


def private_folder() -> Path:
    """The one private folder (mode 0700) where key and certificate files go.

    It is created on first use and removed when the Python process exits.
    """
    global _folder
    with _folder_lock:
        if _folder is None or not _folder.exists():
            _folder = Path(tempfile.mkdtemp(prefix="tlslab-"))  # mkdtemp makes it 0700
            atexit.register(shutil.rmtree, _folder, True)
        return _folder


def _write_private(path: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` to ``path`` atomically; the file never has wider rights than ``mode``."""
    # mkstemp creates the file 0600 under a unique name: nobody else can read a key even for a
    # moment, and two threads writing the same path never see a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".writing-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- keys ----------------------------------------------------------------------------------


def generate_key(key_type: str = "ecdsa") -> PrivateKey:
    """A new private key: ``ecdsa`` (P-256, the fast default), ``rsa``/``rsa2048``, ``rsa3072``,
    ``ed25519``, or ``rsa1024`` (too small: for the demo of a key OpenSSL rejects)."""
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in ("rsa", "rsa2048"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if key_type == "rsa1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise PKIError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _key_pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def describe_key(public_key: object) -> str:
    """A short human name for a public key: ``ECDSA P-256``, ``RSA 2048``, ``Ed25519``."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ECDSA P-256", "secp384r1": "ECDSA P-384"}.get(
            public_key.curve.name, f"ECDSA {public_key.curve.name}"
        )
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(public_key).__name__


# --- loading -------------------------------------------------------------------------------


def load_certificate(pem: bytes | str) -> x509.Certificate:
    """Parse one PEM certificate, with a clear error for anything that isn't one."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PKIError(f"not a PEM certificate ({exc})") from None


def load_private_key(pem: bytes, password: bytes | None = None) -> PrivateKey:
    """Parse a PEM private key; a wrong or missing password is a clear error."""
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError as exc:  # password given for an unencrypted key, or missing for an encrypted one
        raise PKIError(f"cannot load the private key: {exc}") from None
    except ValueError as exc:
        raise PKIError(f"cannot load the private key: wrong password or broken PEM ({exc})") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise PKIError(f"unsupported key type {type(key).__name__}")
    return key


# --- credentials ---------------------------------------------------------------------------


@dataclass
class Credential:
    """A certificate (with the intermediates to send along) and, usually, its private key.

    ``chain`` is what a server or client presents: the leaf first, then intermediates (never
    the root: the peer must already have it).
    """

    certificate: x509.Certificate
    private_key: PrivateKey | None = None
    intermediates: list[x509.Certificate] = field(default_factory=list)

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.certificate, *self.intermediates]

    @property
    def cert_pem(self) -> bytes:
        """The leaf certificate alone, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def chain_pem(self) -> bytes:
        """The leaf and its intermediates, PEM: what goes in a server's certificate file."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def key_pem(self, password: bytes | None = None) -> bytes:
        """The private key, PEM (PKCS#8), encrypted when a password is given."""
        if self.private_key is None:
            raise PKIError("this credential has no private key (a certificate alone proves nothing)")
        if password is not None and not password:
            raise PKIError("an empty password would leave the key unencrypted; give a real one, or None")
        return _key_pem(self.private_key, password)

    def files(self, stem: str | None = None) -> tuple[Path, Path]:
        """Write ``(certificate chain, private key)`` into the private folder; returns the paths.

        The key file is created with mode 0600.
        """
        # The serial number keeps two certificates with the same name from sharing files.
        stem = stem or f"{_safe_stem(self.common_name)}-{self.certificate.serial_number:x}"[:80]
        folder = private_folder()
        cert_path = _write_private(folder / f"{stem}.pem", self.chain_pem, 0o644)
        key_path = _write_private(folder / f"{stem}.key", self.key_pem(), 0o600)
        return cert_path, key_path

    def configure_cert(self, ctx: ssl.SSLContext) -> None:
        """Make ``ctx`` present this certificate chain and key."""
        cert_path, key_path = self.files()
        ctx.load_cert_chain(cert_path, key_path)

    # Descriptions
    @property
    def common_name(self) -> str:
        return _common_name(self.certificate.subject) or "certificate"

    @property
    def identities(self) -> list[str]:
        """The names in subjectAltName: DNS names, IP addresses, emails and URIs."""
        return _san_strings(self.certificate)

    def summary(self) -> dict[str, str]:
        return summarize(self.certificate)

    def __repr__(self) -> str:
        return f"<Credential {self.common_name!r} {', '.join(self.identities) or '(no SAN)'}>"

    def _repr_html_(self) -> str:
        return _summary_html(self.certificate)


def _safe_stem(name: str) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name).strip("-.")
    return stem or "certificate"


def _common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _san_strings(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    for general_name in san:
        if isinstance(general_name, x509.DNSName):
            out.append(f"DNS:{general_name.value}")
        elif isinstance(general_name, x509.IPAddress):
            out.append(f"IP:{general_name.value}")
        elif isinstance(general_name, x509.RFC822Name):
            out.append(f"email:{general_name.value}")
        elif isinstance(general_name, x509.UniformResourceIdentifier):
            out.append(f"URI:{general_name.value}")
    return out


def _general_names(identities: Sequence[str]) -> list[x509.GeneralName]:
    """Turn ``localhost``, ``127.0.0.1``, ``a@b.test`` or ``spiffe://…`` into SAN entries."""
    names: list[x509.GeneralName] = []
    for ident in identities:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ident)))
            continue
        except ValueError:
            pass
        if "://" in ident:
            names.append(x509.UniformResourceIdentifier(ident))
        elif "@" in ident:
            names.append(x509.RFC822Name(ident))
        else:
            names.append(x509.DNSName(ident))
    return names


_EKU = {
    "server": [ExtendedKeyUsageOID.SERVER_AUTH],
    "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
    "both": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    "none": [],
}


def _name(common_name: str, organization: str | None = "TLS Lab") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _validity(not_before: dt.datetime | None, not_after: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    # Give one date and the other follows: a lone past `not_after` makes an expired certificate,
    # a lone future `not_before` one that is not valid yet (each valid for a year).
    year = dt.timedelta(days=365)
    start = not_before or (not_after - year if not_after and not_after <= COURSE_VALIDITY[0] else COURSE_VALIDITY[0])
    end = not_after or (not_before + year if not_before and not_before >= COURSE_VALIDITY[1] else COURSE_VALIDITY[1])
    if end <= start:
        raise PKIError(f"not_after ({end:%Y-%m-%d}) must come after not_before ({start:%Y-%m-%d})")
    return start, end


def _leaf_builder(
    subject: x509.Name,
    public_key: object,
    issuer: x509.Name,
    identities: Sequence[str],
    usage: str,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
) -> x509.CertificateBuilder:
    if usage not in _EKU:
        raise PKIError(f"unknown usage {usage!r}; choose server, client, both or none")
    start, end = _validity(not_before, not_after)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                # RSA key exchange (TLS 1.2 static RSA) encrypts to the key itself.
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
    )
    if identities:
        # SPIFFE (X.509-SVID) and RFC 6125 both want the SAN critical only when the subject is empty.
        builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(identities)), critical=False)
    if _EKU[usage]:
        builder = builder.add_extension(x509.ExtendedKeyUsage(_EKU[usage]), critical=False)
    return builder


# --- the certificate authority -------------------------------------------------------------


class CertificateAuthority:
    """A certificate authority: a root, or an intermediate made with :meth:`intermediate`.

    >>> root = CertificateAuthority("Course Root")
    >>> issuing = root.intermediate("Course Issuing CA")
    >>> leaf = issuing.issue_server_cert("localhost")
    >>> [c.subject.rfc4514_string() for c in leaf.chain]
    ['CN=localhost,O=TLS Lab', 'CN=Course Issuing CA,O=TLS Lab']
    """

    def __init__(
        self,
        name: str = "TLS Lab Root CA",
        *,
        key_type: str = "ecdsa",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        _parent: CertificateAuthority | None = None,
        _path_length: int | None = None,
    ) -> None:
        self.name = name
        self.key_type = key_type
        self.parent = _parent
        self.path_length = _path_length  # how many CAs may sit below this one (None: no limit)
        self.private_key: PrivateKey = generate_key(key_type)
        self._revoked: dict[int, dt.datetime] = {}
        self._lock = threading.Lock()
        start, end = _validity(not_before, not_after)
        public_key = self.private_key.public_key()
        issuer_key = _parent.private_key if _parent else self.private_key
        issuer_name = _parent.certificate.subject if _parent else _name(name)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(issuer_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=_path_length), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        if _parent:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(_parent.private_key.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        self.certificate = builder.sign(issuer_key, _hash_for(issuer_key))  # type: ignore[arg-type]

    # Chain bookkeeping
    @property
    def is_root(self) -> bool:
        return self.parent is None

    @property
    def root(self) -> CertificateAuthority:
        return self if self.parent is None else self.parent.root

    @property
    def intermediates(self) -> list[x509.Certificate]:
        """Certificates between this CA and the root (this one included, the root excluded)."""
        return [] if self.parent is None else [self.certificate, *self.parent.intermediates]

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def intermediate(
        self, name: str = "TLS Lab Intermediate CA", *, key_type: str | None = None, path_length: int = 0
    ) -> CertificateAuthority:
        """A CA signed by this one. By default it may sign only leaves (path length 0); give
        ``path_length=1`` to let it have an intermediate of its own."""
        if self.path_length is not None and path_length >= self.path_length:
            raise PKIError(
                f"{self.name!r} has path length {self.path_length}: the CAs below it must have a smaller one "
                f"(asked for {path_length}); a chain that breaks this rule fails verification"
            )
        return CertificateAuthority(name, key_type=key_type or self.key_type, _parent=self, _path_length=path_length)

    # Issuing
    def _sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        return builder.sign(self.private_key, _hash_for(self.private_key))  # type: ignore[arg-type]

    def issue_cert(
        self,
        *identities: str,
        common_name: str | None = None,
        usage: str = "server",
        key_type: str = "ecdsa",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Credential:
        """A leaf certificate (and a fresh key) for ``identities``, which go in subjectAltName."""
        key = generate_key(key_type)
        subject = _name(common_name or (identities[0] if identities else "leaf"))
        builder = _leaf_builder(
            subject, key.public_key(), self.certificate.subject, identities, usage, not_before, not_after
        )
        return Credential(self._sign(builder), key, self.intermediates)

    def issue_server_cert(self, *hosts: str, **kwargs: object) -> Credential:
        """A server certificate for DNS names and IP addresses, e.g. ``("localhost", "127.0.0.1")``.

        Defects are parameters: ``not_after=`` a past date (expired), ``usage="client"`` (wrong
        extended key usage), hosts that the client won't ask for (wrong host).
        """
        if not hosts:
            raise PKIError("a server certificate needs at least one host name or IP address")
        kwargs.setdefault("usage", "server")
        return self.issue_cert(*hosts, **kwargs)  # type: ignore[arg-type]

    def issue_client_cert(self, identity: str, **kwargs: object) -> Credential:
        """A client certificate for one identity: a DNS name, an email, or a URI such as
        ``spiffe://course.test/orders`` (SPIFFE IDs get exactly one URI SAN, as X.509-SVIDs must)."""
        kwargs.setdefault("usage", "client")
        if "://" in identity:
            kwargs.setdefault("common_name", identity.rsplit("/", 1)[-1] or identity)
        return self.issue_cert(identity, **kwargs)  # type: ignore[arg-type]

    def sign_csr(
        self,
        csr_pem: bytes | str,
        *,
        usage: str = "client",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Credential:
        """Sign a certificate signing request. The CSR's signature is checked first (proof that the
        requester holds the private key); its subject and SANs are copied. No private key here:
        it never left the requester."""
        data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
        try:
            csr = x509.load_pem_x509_csr(data)
        except (ValueError, TypeError) as exc:
            raise PKIError(f"not a PEM certificate signing request ({exc})") from None
        if not csr.is_signature_valid:
            raise PKIError("the CSR's signature does not verify: the requester does not hold the key")
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            identities = _san_strings_from(san)
        except x509.ExtensionNotFound:
            identities = []
        builder = _leaf_builder(
            csr.subject, csr.public_key(), self.certificate.subject, identities, usage, not_before, not_after
        )
        return Credential(self._sign(builder), None, self.intermediates)

    # Revocation
    def revoke(self, credential: Credential | x509.Certificate, when: dt.datetime | None = None) -> None:
        """Put a certificate this CA issued on its revocation list."""
        cert = credential.certificate if isinstance(credential, Credential) else credential
        try:  # names can collide; only the signature proves who issued it
            cert.verify_directly_issued_by(self.certificate)
        except (InvalidSignature, ValueError, TypeError):
            raise PKIError("this CA did not issue that certificate, so it cannot revoke it") from None
        with self._lock:
            self._revoked[cert.serial_number] = when or COURSE_VALIDITY[0]

    def is_revoked(self, credential: Credential | x509.Certificate) -> bool:
        cert = credential.certificate if isinstance(credential, Credential) else credential
        return cert.serial_number in self._revoked

    def crl_pem(self, *, last_update: dt.datetime | None = None, next_update: dt.datetime | None = None) -> bytes:
        """The certificate revocation list, signed by this CA, PEM."""
        last = last_update or COURSE_VALIDITY[0]
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(last)
            .next_update(next_update or COURSE_VALIDITY[1])
        )
        with self._lock:
            for serial, when in sorted(self._revoked.items()):
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
                )
        crl = builder.sign(self.private_key, _hash_for(self.private_key))  # type: ignore[arg-type]
        return crl.public_bytes(serialization.Encoding.PEM)

    # Trust
    def cert_file(self) -> Path:
        """This CA's certificate as a file in the private folder (for curl's ``--cacert``)."""
        stem = f"{_safe_stem(self.name)}-{self.certificate.serial_number:x}"[:80]
        return _write_private(private_folder() / f"{stem}.ca.pem", self.cert_pem, 0o644)

    def configure_trust(self, ctx: ssl.SSLContext) -> None:
        """Make ``ctx`` trust certificates issued under this CA's root."""
        ctx.load_verify_locations(cadata=self.root.cert_pem.decode())

    def __repr__(self) -> str:
        kind = "root" if self.is_root else "intermediate"
        return f"<CertificateAuthority {self.name!r} ({kind}, {describe_key(self.private_key.public_key())})>"

    def _repr_html_(self) -> str:
        return _summary_html(self.certificate)


def _san_strings_from(san: x509.SubjectAlternativeName) -> list[str]:
    out: list[str] = []
    for general_name in san:
        value = general_name.value
        out.append(str(value))
    return out


def self_signed_cert(
    *hosts: str,
    key_type: str = "ecdsa",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Credential:
    """A certificate that vouches for itself: signed by its own key, trusted by nobody."""
    key = generate_key(key_type)
    subject = _name(hosts[0] if hosts else "self-signed")
    builder = _leaf_builder(subject, key.public_key(), subject, hosts, "server", not_before, not_after)
    return Credential(builder.sign(key, _hash_for(key)), key)  # type: ignore[arg-type]


def make_csr(identity: str, *, key_type: str = "ecdsa") -> tuple[bytes, PrivateKey]:
    """What a device does to enroll: make a key, and a CSR for ``identity`` signed with it."""
    key = generate_key(key_type)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(identity.rsplit("/", 1)[-1] or identity, organization=None))
        .add_extension(x509.SubjectAlternativeName(_general_names([identity])), critical=False)
        .sign(key, _hash_for(key))  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM), key


# --- summaries -----------------------------------------------------------------------------


def _usages(cert: x509.Certificate) -> str:
    names = []
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        for attr in ("digital_signature", "key_encipherment", "key_cert_sign", "crl_sign"):
            if getattr(ku, attr):
                names.append(attr.replace("_", " "))
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        labels = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
        names += [labels.get(oid, oid.dotted_string) for oid in eku]
    except x509.ExtensionNotFound:
        pass
    return ", ".join(names) or "(none)"


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def summarize(cert: x509.Certificate) -> dict[str, str]:
    """The fields a person reads first, as plain strings."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "names (SAN)": ", ".join(_san_strings(cert)) or "(none)",
        "valid from": f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
        "valid until": f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        "key": describe_key(cert.public_key()),
        "CA": "yes" if _is_ca(cert) else "no",
        "usages": _usages(cert),
        "SHA-256 fingerprint": cert.fingerprint(hashes.SHA256()).hex(":")[:23] + "…",
    }


def _summary_html(cert: x509.Certificate) -> str:
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td style='text-align:left'><code>{html.escape(v)}</code></td></tr>"
        for k, v in summarize(cert).items()
    )
    return f"<table class='tlslab-cert'>{rows}</table>"
