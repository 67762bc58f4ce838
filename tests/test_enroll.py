"""Device enrollment by CSR: the CA signs what its policy allows and refuses the rest, each
refusal with its own reason; an enrolled device then connects with mutual TLS."""

from __future__ import annotations

import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tlslab import CertificateAuthority, TLSServer
from tlslab.enroll import (
    DEFAULT_POLICY,
    Device,
    Enrollment,
    EnrollmentError,
    EnrollmentPolicy,
    check_csr,
    corrupt_signature,
    enroll,
    swap_public_key,
)
from tlslab.mesh import svid_id
from tlslab.pki import generate_key, make_csr


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("IoT Test CA")


def refusal(ca, csr, policy=DEFAULT_POLICY) -> EnrollmentError:
    with pytest.raises(EnrollmentError) as caught:
        enroll(ca, csr, policy)
    return caught.value


# --- accepted -------------------------------------------------------------------------------


def test_a_good_csr_is_signed(ca):
    csr, key = make_csr("spiffe://course.test/device/sensor-1")
    done = enroll(ca, csr)
    assert isinstance(done, Enrollment) and done.identity == "spiffe://course.test/device/sensor-1"
    assert all(c.ok for c in done.checks) and [c.name for c in done.checks] == [
        "format", "proof of possession", "name", "key type", "not a CA"]
    cert = done.certificate
    assert cert.private_key is None  # the key never left the device
    assert cert.certificate.public_key() == key.public_key()
    assert cert.certificate.issuer == ca.certificate.subject
    eku = cert.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert svid_id(cert) == done.identity  # a valid X.509-SVID
    assert repr(done) == "<Enrollment spiffe://course.test/device/sensor-1: signed (ECDSA P-256)>"
    assert "✓" in done._repr_html_()


def test_ed25519_is_allowed(ca):
    assert enroll(ca, make_csr("spiffe://course.test/device/e1", key_type="ed25519")[0]).identity.endswith("/e1")


def test_an_enrolled_device_connects_with_mutual_tls(ca):
    device = Device("sensor-7")
    assert repr(device) == "<Device spiffe://course.test/device/sensor-7 (ECDSA P-256), not enrolled>"
    with pytest.raises(RuntimeError, match="enroll"):
        device.connect(("127.0.0.1", 1), trust=ca)
    device.enroll(ca)
    assert device.credential.private_key is not None and device.enrollment.identity.endswith("sensor-7")
    with TLSServer(ca.issue_server_cert("localhost"), name="enroll-mtls", client_cert="required",
                   client_ca=ca) as server:
        report = device.connect(server, trust=ca, send=b"hello")
    assert report.ok and report.reply == b"hello"
    assert report.server_view.client_identity == "spiffe://course.test/device/sensor-7"
    assert repr(device).endswith("enrolled>") and "not" not in repr(device)


def test_a_dns_name_policy(ca):
    policy = EnrollmentPolicy(names=("device-*.iot.course.test",))
    assert enroll(ca, make_csr("device-42.iot.course.test")[0], policy).identity == "device-42.iot.course.test"
    assert refusal(ca, make_csr("device-42.evil.test")[0], policy).reason == "name"
    # '*' is one label: it does not stretch across dots
    assert refusal(ca, make_csr("device-4.2.iot.course.test")[0], policy).reason == "name"


def test_a_lifetime_policy_gives_short_lived_certificates(ca):
    done = enroll(ca, make_csr("spiffe://course.test/device/brief")[0], EnrollmentPolicy(lifetime=30))
    cert = done.certificate.certificate
    assert cert.not_valid_after_utc.timestamp() - cert.not_valid_before_utc.timestamp() == 30
    assert abs(cert.not_valid_before_utc.timestamp() - time.time()) < 2
    assert "30 s" in str(EnrollmentPolicy(lifetime=30))


# --- refused, each with its own reason ---------------------------------------------------------


@pytest.mark.parametrize("name", [
    "spiffe://course.test/orders",               # a service's name, not a device's
    "spiffe://course.test/device/a/b",           # two segments where the pattern has one
    "spiffe://other.test/device/sensor-1",       # another trust domain
    "device-1.iot.course.test",                  # a DNS name where a SPIFFE ID is expected
])
def test_a_wrong_name_is_refused(ca, name):
    error = refusal(ca, make_csr(name)[0])
    assert error.reason == "name"
    assert str(error) == f"name: {name} does not match spiffe://course.test/device/*"


def test_a_wrong_key_type_is_refused(ca):
    error = refusal(ca, make_csr("spiffe://course.test/device/rsa-1", key_type="rsa")[0])
    assert error.reason == "key_type"
    assert str(error) == "key type: RSA 2048 is not allowed here (only ECDSA P-256, Ed25519)"
    assert [c.ok for c in error.checks] == [True, True, True, False, True]
    # The same CSR passes where RSA is allowed.
    rsa_ok = EnrollmentPolicy(key_types=("RSA 2048",))
    assert enroll(ca, make_csr("spiffe://course.test/device/rsa-1", key_type="rsa")[0], rsa_ok)


def test_a_bad_signature_is_refused(ca):
    csr = corrupt_signature(make_csr("spiffe://course.test/device/sensor-9")[0])
    assert x509.load_pem_x509_csr(csr).subject  # it still parses
    error = refusal(ca, csr)
    assert error.reason == "signature"
    assert "does not hold that key" in str(error)


def test_a_csr_for_someone_elses_key_is_refused(ca):
    victim = generate_key()
    csr = swap_public_key(make_csr("spiffe://course.test/device/sensor-9")[0], victim.public_key())
    assert x509.load_pem_x509_csr(csr).public_key() == victim.public_key()
    assert refusal(ca, csr).reason == "signature"


def test_garbage_is_malformed(ca):
    error = refusal(ca, b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n")
    assert error.reason == "malformed" and len(error.checks) == 1
    assert refusal(ca, "not even PEM").reason == "malformed"


def _csr(builder_names, *, ca_flag=False, key=None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = key or generate_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")]))
    if builder_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(n) for n in builder_names]), critical=False)
    if ca_flag:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_two_names_or_none_are_refused(ca):
    two = refusal(ca, _csr(["spiffe://course.test/device/a", "spiffe://course.test/device/b"]))
    assert two.reason == "name" and "2 names" in str(two)
    none = refusal(ca, _csr([]))
    assert none.reason == "name" and "no name" in str(none)


def test_a_csr_asking_to_be_a_ca_is_refused(ca):
    error = refusal(ca, _csr(["spiffe://course.test/device/boss"], ca_flag=True))
    assert error.reason == "ca_requested" and "CA=true" in str(error)
    assert "✗" in error._repr_html_()


def test_check_csr_reports_every_check_without_raising(ca):
    csr = corrupt_signature(make_csr("spiffe://course.test/orders", key_type="rsa")[0])
    checks = check_csr(csr)
    assert [(c.name, c.ok) for c in checks] == [
        ("format", True), ("proof of possession", False), ("name", False), ("key type", False), ("not a CA", True)]
    # The first failure is the reason.
    assert refusal(ca, csr).reason == "signature"
