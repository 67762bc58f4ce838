"""Unit tests of tlslab.pki: real keys, real certificates, real files (no mocks)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import stat
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tlslab.pki import (
    COURSE_VALIDITY,
    KEY_TYPES,
    CertificateAuthority,
    Credential,
    PKIError,
    describe_key,
    generate_key,
    load_certificate,
    load_private_key,
    make_csr,
    private_folder,
    self_signed_cert,
    summarize,
)

UTC = dt.timezone.utc


def utc(year: int, month: int = 1, day: int = 1) -> dt.datetime:
    return dt.datetime(year, month, day, tzinfo=UTC)


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return CertificateAuthority("Test Root CA")


@pytest.fixture(scope="module")
def inter(root: CertificateAuthority) -> CertificateAuthority:
    return root.intermediate("Test Issuing CA")


def ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def san_of(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return ext(cert, x509.SubjectAlternativeName).value


def eku_of(cert: x509.Certificate) -> list:
    try:
        return list(ext(cert, x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return []


def server_verifier(root_ca: CertificateAuthority, host: str):
    """cryptography's own (Rust) path validator, independent from OpenSSL and from tlslab."""
    subject = (
        verification.IPAddress(ipaddress.ip_address(host))
        if host[0].isdigit()
        else verification.DNSName(host)
    )
    return (
        verification.PolicyBuilder()
        .store(verification.Store([root_ca.certificate]))
        .time(utc(2030))
        .build_server_verifier(subject)
    )


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key_type, cls, name",
    [
        ("ecdsa", ec.EllipticCurvePrivateKey, "ECDSA P-256"),
        ("rsa", rsa.RSAPrivateKey, "RSA 2048"),
        ("rsa2048", rsa.RSAPrivateKey, "RSA 2048"),
        ("rsa3072", rsa.RSAPrivateKey, "RSA 3072"),
        ("rsa1024", rsa.RSAPrivateKey, "RSA 1024"),
        ("ed25519", ed25519.Ed25519PrivateKey, "Ed25519"),
    ],
)
def test_key_types_and_describe_key(root, key_type, cls, name):
    key = generate_key(key_type)
    assert isinstance(key, cls)
    assert describe_key(key.public_key()) == name
    if key_type == "ecdsa":
        assert key.curve.name == "secp256r1"
    # the same name shows up in a certificate's summary
    leaf = root.issue_server_cert("localhost", key_type=key_type)
    assert summarize(leaf.certificate)["key"] == name
    assert describe_key(leaf.certificate.public_key()) == name


def test_default_key_type_is_ecdsa_p256(root):
    assert describe_key(generate_key().public_key()) == "ECDSA P-256"
    assert describe_key(root.private_key.public_key()) == "ECDSA P-256"
    assert describe_key(root.issue_server_cert("localhost").certificate.public_key()) == "ECDSA P-256"
    assert set(KEY_TYPES) == {"ecdsa", "rsa", "rsa1024", "rsa2048", "rsa3072", "ed25519"}


def test_ed25519_ca_signs_without_a_hash():
    ca = CertificateAuthority("Ed CA", key_type="ed25519")
    leaf = ca.issue_server_cert("localhost")
    assert describe_key(ca.certificate.public_key()) == "Ed25519"
    assert leaf.certificate.signature_hash_algorithm is None
    leaf.certificate.verify_directly_issued_by(ca.certificate)


def test_unknown_key_type_is_a_pki_error():
    with pytest.raises(PKIError, match="unknown key type"):
        generate_key("dsa")
    with pytest.raises(PKIError):
        CertificateAuthority("x", key_type="rsa512")


# --- root, intermediate, chains --------------------------------------------------------------


def test_root_is_a_self_signed_ca_without_path_length_limit(root):
    cert = root.certificate
    assert root.is_root and root.root is root and root.parent is None
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length is None
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test Root CA"
    cert.verify_directly_issued_by(cert)  # signed by its own key
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(root.private_key.public_key()).digest
    assert root.intermediates == []
    assert "root" in repr(root) and "ECDSA P-256" in repr(root)


def test_intermediate_has_path_length_0_and_points_at_root(root, inter):
    cert = inter.certificate
    assert not inter.is_root and inter.parent is root and inter.root is root
    bc = ext(cert, x509.BasicConstraints).value
    assert bc.ca is True and bc.path_length == 0
    assert cert.issuer == root.certificate.subject
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    root_ski = ext(root.certificate, x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest
    cert.verify_directly_issued_by(root.certificate)
    # the intermediate's own chain excludes the root
    assert inter.intermediates == [cert]
    assert root.certificate not in inter.intermediates
    assert "intermediate" in repr(inter)


def test_leaf_chain_order_leaf_then_intermediate_never_root(root, inter):
    leaf = inter.issue_server_cert("localhost")
    assert leaf.chain == [leaf.certificate, inter.certificate]
    assert root.certificate not in leaf.chain
    aki = ext(leaf.certificate, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(inter.certificate, x509.SubjectKeyIdentifier).value.digest
    leaf.certificate.verify_directly_issued_by(inter.certificate)
    pems = x509.load_pem_x509_certificates(leaf.chain_pem)
    assert pems == [leaf.certificate, inter.certificate]
    assert x509.load_pem_x509_certificates(leaf.cert_pem) == [leaf.certificate]
    # an independent path validator accepts the chain the credential presents
    chain = server_verifier(root, "localhost").verify(leaf.certificate, leaf.intermediates)
    assert chain[-1] == root.certificate


def test_leaf_from_root_has_no_intermediates(root):
    leaf = root.issue_server_cert("localhost")
    assert leaf.intermediates == [] and leaf.chain == [leaf.certificate]


def test_intermediate_of_intermediate_is_refused_or_works(root, inter):
    with pytest.raises(PKIError, match="path length"):
        inter.intermediate("Sub CA")  # inter has path length 0: it may sign only leaves
    policy = root.intermediate("Policy CA", path_length=1)
    sub = policy.intermediate("Issuing CA")
    leaf = sub.issue_server_cert("localhost")
    assert [c.subject for c in leaf.chain[1:]] == [sub.certificate.subject, policy.certificate.subject]
    server_verifier(root, "localhost").verify(leaf.certificate, leaf.intermediates)


# --- leaf certificates -------------------------------------------------------------------------


def test_server_cert_sans_for_dns_and_ip(root):
    leaf = root.issue_server_cert("localhost", "127.0.0.1", "::1", "api.course.test")
    san = san_of(leaf.certificate)
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "api.course.test"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert leaf.identities == ["DNS:localhost", "IP:127.0.0.1", "IP:::1", "DNS:api.course.test"]
    assert eku_of(leaf.certificate) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = ext(leaf.certificate, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    assert leaf.common_name == "localhost"
    # both kinds of name verify with an independent validator
    server_verifier(root, "localhost").verify(leaf.certificate, [])
    server_verifier(root, "127.0.0.1").verify(leaf.certificate, [])
    with pytest.raises(verification.VerificationError):
        server_verifier(root, "other.test").verify(leaf.certificate, [])


def test_server_cert_needs_a_host(root):
    with pytest.raises(PKIError):
        root.issue_server_cert()


def test_key_encipherment_only_for_rsa(root):
    ecdsa = ext(root.issue_server_cert("localhost").certificate, x509.KeyUsage).value
    rsa_ku = ext(root.issue_server_cert("localhost", key_type="rsa").certificate, x509.KeyUsage).value
    assert ecdsa.digital_signature and not ecdsa.key_encipherment
    assert rsa_ku.digital_signature and rsa_ku.key_encipherment
    assert not ecdsa.key_cert_sign and not rsa_ku.key_cert_sign


def test_spiffe_client_cert(root):
    cred = root.issue_client_cert("spiffe://course.test/orders")
    cert = cred.certificate
    san = san_of(cert)
    assert len(list(san)) == 1
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://course.test/orders"]
    assert cred.identities == ["URI:spiffe://course.test/orders"]
    assert ext(cert, x509.BasicConstraints).value.ca is False
    ku = ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    assert eku_of(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cred.common_name == "orders"
    assert cred.private_key is not None


@pytest.mark.parametrize(
    "usage, expected",
    [
        ("server", [ExtendedKeyUsageOID.SERVER_AUTH]),
        ("client", [ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("both", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("none", []),
    ],
)
def test_usage_parameter(root, usage, expected):
    leaf = root.issue_server_cert("localhost", usage=usage)
    assert eku_of(leaf.certificate) == expected


def test_wrong_usage_defect_server_cert_for_clients_only(root):
    leaf = root.issue_server_cert("localhost", usage="client")
    assert ExtendedKeyUsageOID.SERVER_AUTH not in eku_of(leaf.certificate)
    assert "clientAuth" in summarize(leaf.certificate)["usages"]
    with pytest.raises(verification.VerificationError):
        server_verifier(root, "localhost").verify(leaf.certificate, [])


def test_unknown_usage_is_a_pki_error(root):
    with pytest.raises(PKIError, match="usage"):
        root.issue_server_cert("localhost", usage="email")


# --- validity --------------------------------------------------------------------------------


def test_default_validity_is_fixed(root, inter):
    start, end = COURSE_VALIDITY
    assert (start, end) == (utc(2025), utc(2045))
    for cert in (
        root.certificate,
        inter.certificate,
        root.issue_server_cert("localhost").certificate,
        root.issue_client_cert("spiffe://course.test/x").certificate,
        self_signed_cert("localhost").certificate,
    ):
        assert cert.not_valid_before_utc == start
        assert cert.not_valid_after_utc == end


def test_validity_defects_are_parameters(root):
    expired = root.issue_server_cert("localhost", not_before=utc(2020), not_after=utc(2021))
    assert expired.certificate.not_valid_before_utc == utc(2020)
    assert expired.certificate.not_valid_after_utc == utc(2021)
    future = root.issue_server_cert("localhost", not_before=utc(2040))
    assert future.certificate.not_valid_before_utc == utc(2040)
    assert future.certificate.not_valid_after_utc == COURSE_VALIDITY[1]
    s = summarize(expired.certificate)
    assert s["valid from"] == "2020-01-01 00:00 UTC" and s["valid until"] == "2021-01-01 00:00 UTC"


@pytest.mark.parametrize("not_before, not_after", [(utc(2030), utc(2030)), (utc(2030), utc(2029))])
def test_not_after_must_follow_not_before(root, not_before, not_after):
    with pytest.raises(PKIError, match="must come after"):
        root.issue_server_cert("localhost", not_before=not_before, not_after=not_after)
    with pytest.raises(PKIError):
        CertificateAuthority("bad dates", not_before=not_before, not_after=not_after)
    with pytest.raises(PKIError):
        self_signed_cert("localhost", not_before=not_before, not_after=not_after)


def test_self_signed_cert():
    cred = self_signed_cert("localhost", "127.0.0.1")
    cert = cred.certificate
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert ext(cert, x509.BasicConstraints).value.ca is False
    assert cred.intermediates == [] and cred.chain == [cert]
    assert cred.private_key is not None
    assert cred.identities == ["DNS:localhost", "IP:127.0.0.1"]
    assert eku_of(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert describe_key(cert.public_key()) == "ECDSA P-256"
    assert describe_key(self_signed_cert("x", key_type="rsa").certificate.public_key()) == "RSA 2048"


# --- CSRs ------------------------------------------------------------------------------------


def test_csr_signed_copies_subject_and_san(root, inter):
    csr_pem, key = make_csr("spiffe://course.test/device-7")
    assert csr_pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    csr = x509.load_pem_x509_csr(csr_pem)
    cred = inter.sign_csr(csr_pem)
    cert = cred.certificate
    assert cred.private_key is None  # the key never left the device
    assert cert.public_key() == key.public_key()
    assert cert.subject == csr.subject
    assert san_of(cert).get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://course.test/device-7"]
    assert len(list(san_of(cert))) == 1
    assert eku_of(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.issuer == inter.certificate.subject
    assert cred.chain == [cert, inter.certificate]
    cert.verify_directly_issued_by(inter.certificate)


@pytest.mark.parametrize("identity, kind, value", [
    ("device-9.course.test", x509.DNSName, "device-9.course.test"),
    ("10.0.0.7", x509.IPAddress, ipaddress.ip_address("10.0.0.7")),
    ("sensor@course.test", x509.RFC822Name, "sensor@course.test"),
])
def test_csr_san_kinds_are_copied(root, identity, kind, value):
    csr_pem, _ = make_csr(identity, key_type="ed25519")
    cred = root.sign_csr(csr_pem, usage="both")
    assert san_of(cred.certificate).get_values_for_type(kind) == [value]
    assert eku_of(cred.certificate) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def _pem(der: bytes, label: str) -> bytes:
    return f"-----BEGIN {label}-----\n".encode() + base64.encodebytes(der) + f"-----END {label}-----\n".encode()


def test_csr_with_a_bad_signature_is_refused(root):
    csr_pem, _ = make_csr("spiffe://course.test/device-7")
    der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    assert der.count(b"device-7") == 2  # in the subject's CN and the SAN
    tampered = _pem(der.replace(b"device-7", b"device-8"), "CERTIFICATE REQUEST")
    assert x509.load_pem_x509_csr(tampered).is_signature_valid is False  # the tamper parses
    with pytest.raises(PKIError, match="signature"):
        root.sign_csr(tampered)


@pytest.mark.parametrize("garbage", [
    b"",
    b"not a csr at all",
    b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    b"\x00\xff" * 64,
])
def test_csr_garbage_is_a_pki_error(root, garbage):
    with pytest.raises(PKIError):
        root.sign_csr(garbage)


def test_csr_given_a_certificate_instead_is_a_pki_error(root):
    with pytest.raises(PKIError):
        root.sign_csr(root.cert_pem)


def test_csr_as_text_works_or_is_a_pki_error(root):
    csr_pem, _ = make_csr("device-3.course.test")
    try:
        cred = root.sign_csr(csr_pem.decode())  # type: ignore[arg-type]
    except PKIError:
        return
    assert cred.identities == ["DNS:device-3.course.test"]


# --- files -----------------------------------------------------------------------------------


def test_files_modes_and_contents(inter):
    cred = inter.issue_server_cert("files-test.course.test")
    cert_path, key_path = cred.files()
    folder = private_folder()
    assert cert_path.parent == folder and key_path.parent == folder
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cert_path).st_mode) & 0o077 in (0o044, 0o000)  # never writable by others
    assert cert_path.read_bytes() == cred.chain_pem
    assert x509.load_pem_x509_certificates(cert_path.read_bytes()) == [cred.certificate, inter.certificate]
    key = load_private_key(key_path.read_bytes())
    assert key.public_key() == cred.certificate.public_key()
    # stem parameter
    c2, k2 = cred.files("custom-stem")
    assert (c2.name, k2.name) == ("custom-stem.pem", "custom-stem.key")


def test_files_tightens_a_loose_key_file(root):
    cred = root.issue_server_cert("loose.course.test")
    _, key_path = cred.files()
    os.chmod(key_path, 0o644)
    _, key_path2 = cred.files()
    assert key_path2 == key_path
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600


def test_files_of_a_certificate_without_key_is_a_pki_error(root):
    csr_pem, _ = make_csr("nokey.course.test")
    cred = root.sign_csr(csr_pem)
    with pytest.raises(PKIError, match="no private key"):
        cred.key_pem()
    with pytest.raises(PKIError):
        cred.files()


def test_files_of_two_credentials_with_the_same_name_do_not_clash(root):
    first = root.issue_server_cert("localhost")
    second = root.issue_server_cert("localhost")
    first_cert, first_key = first.files()
    second_cert, second_key = second.files()
    assert {first_cert, first_key}.isdisjoint({second_cert, second_key})
    assert first_cert.read_bytes() == first.chain_pem
    assert second_cert.read_bytes() == second.chain_pem
    assert load_private_key(first_key.read_bytes()).public_key() == first.certificate.public_key()


def test_private_folder_is_stable_and_private():
    a, b = private_folder(), private_folder()
    assert a == b and a.is_dir()
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o700
    assert a.name.startswith("tlslab-")


# The audit hook is permanent for the process; it records only while a test arms it.
_audit_armed = threading.Event()
_audit_writes: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if not _audit_armed.is_set():
        return
    if event == "os.rename":  # os.rename and os.replace: the destination is written too
        _audit_writes.append(os.fsdecode(args[1]))
        return
    if event != "open":
        return
    path, mode, flags = args
    if not isinstance(path, (str, bytes, os.PathLike)):
        return
    writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC)) or (
        isinstance(mode, str) and any(ch in mode for ch in "wax+")
    )
    if writing:
        _audit_writes.append(os.fsdecode(path))


sys.addaudithook(_audit)


def test_private_keys_are_never_written_outside_the_private_folder(root, inter):
    from tlslab.servers import TLSServer

    folder = private_folder().resolve()
    _audit_writes.clear()
    _audit_armed.set()
    try:
        cred = inter.issue_server_cert("audit.course.test", "127.0.0.1")
        cred.files()
        cred.files("other-name")
        client = root.issue_client_cert("spiffe://course.test/audit")
        client.key_pem(b"secret")
        root.cert_file()
        root.revoke(client)
        with TLSServer(cred, client_cert="required", client_ca=root, crl=root.crl_pem()):
            pass
        with TLSServer(self_signed_cert("localhost", key_type="ed25519")):
            pass
    finally:
        _audit_armed.clear()
    writes = list(_audit_writes)
    assert writes, "the audit hook saw no write at all: the test would prove nothing"
    outside = [p for p in writes if not Path(p).resolve().is_relative_to(folder)]
    assert outside == []
    # files are written under a temporary name and renamed: none of those may be left behind
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []
    existing = [Path(p) for p in dict.fromkeys(writes) if Path(p).exists()]
    key_files = [p for p in existing if b"PRIVATE KEY" in p.read_bytes()]
    assert key_files, "expected at least one key file"
    for p in key_files:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p


# --- loading keys and certificates -----------------------------------------------------------


def test_key_pem_with_password_round_trips(root):
    cred = root.issue_server_cert("localhost", key_type="rsa")
    pem = cred.key_pem(b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in pem
    key = load_private_key(pem, b"correct horse")
    assert key.public_key() == cred.certificate.public_key()
    plain = cred.key_pem()
    assert b"-----BEGIN PRIVATE KEY-----" in plain
    assert load_private_key(plain).public_key() == cred.certificate.public_key()


@pytest.mark.parametrize("stored, given", [
    (b"correct horse", b"wrong horse"),  # wrong password
    (b"correct horse", None),  # missing password
    (None, b"correct horse"),  # password for an unencrypted key
])
def test_password_errors_are_pki_errors(root, stored, given):
    pem = root.issue_server_cert("localhost").key_pem(stored)
    with pytest.raises(PKIError, match="private key") as info:
        load_private_key(pem, given)
    assert type(info.value) is PKIError
    assert info.value.__cause__ is None  # no raw cryptography traceback for the learner


@pytest.mark.parametrize("garbage", [
    b"",
    b"junk",
    b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
])
def test_broken_key_pem_is_a_pki_error(garbage):
    with pytest.raises(PKIError):
        load_private_key(garbage)


def test_load_certificate(root):
    cert = load_certificate(root.cert_pem)
    assert cert == root.certificate
    assert load_certificate(root.cert_pem.decode()) == root.certificate  # text works too


@pytest.mark.parametrize("broken", [
    b"",
    b"hello",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "truncated",  # replaced below by half a real certificate
    "a key",  # replaced below by a private key PEM
])
def test_load_certificate_broken_pem_is_a_pki_error(root, broken):
    if broken == "truncated":
        broken = root.cert_pem[: len(root.cert_pem) // 2]
    elif broken == "a key":
        broken = root.issue_server_cert("localhost").key_pem()
    with pytest.raises(PKIError, match="not a PEM certificate"):
        load_certificate(broken)


# --- revocation ------------------------------------------------------------------------------


def test_revoke_and_crl(inter):
    good = inter.issue_client_cert("spiffe://course.test/good")
    bad = inter.issue_client_cert("spiffe://course.test/bad")
    inter.revoke(bad, when=utc(2026, 3, 1))
    assert inter.is_revoked(bad) and not inter.is_revoked(good)
    crl = x509.load_pem_x509_crl(inter.crl_pem())
    assert crl.issuer == inter.certificate.subject
    assert crl.is_signature_valid(inter.certificate.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(bad.certificate.serial_number)
    assert entry is not None and entry.revocation_date_utc == utc(2026, 3, 1)
    assert crl.get_revoked_certificate_by_serial_number(good.certificate.serial_number) is None
    assert crl.last_update_utc == COURSE_VALIDITY[0] and crl.next_update_utc == COURSE_VALIDITY[1]


def test_empty_crl_and_revoking_a_bare_certificate(root):
    ca = CertificateAuthority("CRL CA")
    assert len(x509.load_pem_x509_crl(ca.crl_pem())) == 0
    leaf = ca.issue_server_cert("localhost")
    ca.revoke(leaf.certificate)
    crl = x509.load_pem_x509_crl(ca.crl_pem())
    assert [r.serial_number for r in crl] == [leaf.certificate.serial_number]


def test_revoking_a_foreign_certificate_is_a_pki_error(root):
    other = CertificateAuthority("Someone Else's CA")
    foreign = other.issue_server_cert("localhost")
    with pytest.raises(PKIError, match="did not issue"):
        root.revoke(foreign)
    assert not root.is_revoked(foreign)
    crl = x509.load_pem_x509_crl(root.crl_pem())
    assert crl.get_revoked_certificate_by_serial_number(foreign.certificate.serial_number) is None


def test_revoking_a_foreign_certificate_from_a_same_named_ca_is_a_pki_error():
    mine, theirs = CertificateAuthority(), CertificateAuthority()  # both 'TLS Lab Root CA'
    foreign = theirs.issue_server_cert("localhost")
    with pytest.raises(PKIError):
        mine.revoke(foreign)


# --- summaries -------------------------------------------------------------------------------


def test_summarize_fields(inter):
    cred = inter.issue_server_cert("localhost", "127.0.0.1", key_type="rsa")
    s = summarize(cred.certificate)
    assert s["subject"] == "CN=localhost,O=TLS Lab"
    assert s["issuer"] == "CN=Test Issuing CA,O=TLS Lab"
    assert s["names (SAN)"] == "DNS:localhost, IP:127.0.0.1"
    assert s["valid from"] == "2025-01-01 00:00 UTC"
    assert s["valid until"] == "2045-01-01 00:00 UTC"
    assert s["key"] == "RSA 2048"
    assert s["CA"] == "no"
    assert s["usages"] == "digital signature, key encipherment, serverAuth"
    assert s["SHA-256 fingerprint"].endswith("…")
    assert cred.summary() == s
    ca_summary = summarize(inter.certificate)
    assert ca_summary["CA"] == "yes" and "key cert sign" in ca_summary["usages"]
    assert summarize(inter.issue_server_cert("x", usage="none").certificate)["usages"] == "digital signature"


def test_repr_html_contains_the_fields(root):
    cred = root.issue_client_cert("spiffe://course.test/<orders>&co")
    page = cred._repr_html_()
    assert page.startswith("<table") and page.endswith("</table>")
    for needle in (
            r"CN=\&lt;orders\&gt;&amp;co,O=TLS Lab",  # RFC 4514 escapes < and > with a backslash
        "URI:spiffe://course.test/&lt;orders&gt;&amp;co",
        "2025-01-01 00:00 UTC",
        "2045-01-01 00:00 UTC",
        "ECDSA P-256",
        "digital signature, clientAuth",
    ):
        assert needle in page, needle
    assert "<orders>" not in page  # escaped
    ca_page = root._repr_html_()
    assert "CN=Test Root CA,O=TLS Lab" in ca_page and "key cert sign" in ca_page
    assert repr(cred) == "<Credential '<orders>&co' URI:spiffe://course.test/<orders>&co>"
