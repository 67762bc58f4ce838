"""tlslab.verify: a chain verified by hand, step by step, checked against cryptography's own
verifier (``cryptography.x509.verification.PolicyBuilder``) and the live gallery."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from tlslab import gallery
from tlslab.pki import CertificateAuthority, Credential, self_signed_cert
from tlslab.verify import ChainVerdict, Step, verify_chain

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return CertificateAuthority("Verify Root")


@pytest.fixture(scope="module")
def issuing(root) -> CertificateAuthority:
    return root.intermediate("Verify Issuing CA")


@pytest.fixture(scope="module")
def good(issuing) -> Credential:
    return issuing.issue_server_cert("localhost", "127.0.0.1", "*.course.test")


def check(cert_or_cred, root: CertificateAuthority, **kwargs) -> ChainVerdict:
    cred = cert_or_cred
    return verify_chain(cred.certificate, cred.intermediates, [root.certificate], **{"host": "localhost", "at": NOW, **kwargs})


def failed_at(verdict: ChainVerdict) -> tuple[str | None, int, str]:
    step = verdict.failure
    assert step is not None, verdict
    return step.key, step.depth, step.check


# --- a good chain -----------------------------------------------------------------------------


def test_a_good_chain_is_ok_step_by_step(root, issuing, good):
    verdict = check(good, root)
    assert verdict.ok and bool(verdict) and verdict.key is None and verdict.failure is None
    assert verdict.path == [good.certificate, issuing.certificate, root.certificate]
    checks = [(s.depth, s.check) for s in verdict.steps]
    assert checks == [
        (0, "host name (SAN)"), (0, "purpose (EKU)"), (0, "validity"), (0, "key strength"),
        (0, "issuer found"), (0, "signature"),
        (1, "validity"), (1, "key strength"), (1, "is a CA"), (1, "key usage"), (1, "path length"),
        (1, "issuer found"), (1, "signature"),
        (2, "validity"), (2, "key strength"), (2, "is a CA"), (2, "key usage"), (2, "trust anchor"),
    ]
    assert all(isinstance(s, Step) and s.ok and s.key is None for s in verdict.steps)
    assert verdict.steps[0].certificate == "localhost"
    assert "Verify Issuing CA" in verdict.steps[5].detail and "ECDSA P-256" in verdict.steps[5].detail
    assert "trust store" in verdict.steps[-1].detail


def test_reprs(root, good):
    verdict = check(good, root)
    assert repr(verdict) == "<ChainVerdict ok: 18 checks passed, 3 certificates up to a trusted root>"
    assert str(verdict).startswith("✓ chain verified\n✓ [0] localhost: host name (SAN):")
    assert "tlslab-verdict" in verdict._repr_html_() and "#27ae60" in verdict._repr_html_()
    bad = check(good, root, host="other.test")
    assert repr(bad).startswith("<ChainVerdict failed: hostname_mismatch at depth 0 (host name (SAN)):")
    assert "✗ chain refused: hostname_mismatch" in str(bad)
    assert "✗" in bad._repr_html_() and "#c0392b" in bad._repr_html_()
    assert "FAILED (hostname_mismatch)" in repr(bad.failure)


def test_the_default_time_is_now_and_stays_out_of_the_texts(root, issuing):
    expired = issuing.issue_server_cert("localhost", not_after=dt.datetime(2025, 1, 1, tzinfo=UTC))
    verdict = verify_chain(expired.certificate, expired.intermediates, [root.certificate], host="localhost")
    assert verdict.key == "expired"
    assert verdict.failure.detail == "expired on 2025-01-01 00:00 UTC; checked now"
    at_noon = verify_chain(expired.certificate, expired.intermediates, [root.certificate], at=dt.datetime(2026, 1, 2, 12, 0))
    assert at_noon.failure.detail == "expired on 2025-01-01 00:00 UTC; checked at 2026-01-02 12:00 UTC"  # naive = UTC
    assert at_noon.at.tzinfo is not None


# --- host names: the SAN, never the CN ----------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "api.course.test"])
def test_host_names_that_match(root, good, host):
    assert check(good, root, host=host).ok


@pytest.mark.parametrize("host", ["other.test", "course.test", "a.b.course.test", "127.0.0.2", "::1"])
def test_host_names_that_do_not_match(root, good, host):
    assert failed_at(check(good, root, host=host)) == ("hostname_mismatch", 0, "host name (SAN)")


def test_the_cn_is_not_checked(root, issuing):
    # A certificate whose CN says localhost but whose SAN does not.
    cred = issuing.issue_server_cert("api.course.test", common_name="localhost")
    verdict = check(cred, root)
    assert failed_at(verdict) == ("hostname_mismatch", 0, "host name (SAN)")
    assert "the CN 'localhost' is not checked" in verdict.failure.detail


def test_no_san_at_all(root, issuing):
    cred = issuing.issue_cert(common_name="localhost")
    verdict = check(cred, root)
    assert failed_at(verdict) == ("hostname_mismatch", 0, "host name (SAN)")
    assert "no subjectAltName" in verdict.failure.detail
    assert check(cred, root, host=None).ok  # no host given: no host check


# --- each defect, at its step --------------------------------------------------------------------


def test_expired_and_not_yet_valid_leaf(root, issuing):
    expired = issuing.issue_server_cert("localhost", not_after=dt.datetime(2025, 1, 1, tzinfo=UTC))
    assert failed_at(check(expired, root)) == ("expired", 0, "validity")
    later = issuing.issue_server_cert("localhost", not_before=dt.datetime(2040, 1, 1, tzinfo=UTC))
    assert failed_at(check(later, root)) == ("not_yet_valid", 0, "validity")
    assert check(later, root, at=dt.datetime(2040, 6, 1, tzinfo=UTC)).ok  # the same chain, later


def test_an_expired_intermediate(root):
    old = CertificateAuthority("Old Issuing CA", not_after=dt.datetime(2025, 1, 1, tzinfo=UTC), _parent=root, _path_length=0)
    cred = old.issue_server_cert("localhost")
    assert failed_at(check(cred, root)) == ("expired", 1, "validity")


def test_wrong_usage(root, issuing):
    client_only = issuing.issue_server_cert("localhost", usage="client")
    verdict = check(client_only, root)
    assert failed_at(verdict) == ("wrong_usage", 0, "purpose (EKU)")
    assert "clientAuth" in verdict.failure.detail
    # The same certificate is fine for a client.
    assert verify_chain(client_only.certificate, client_only.intermediates, [root.certificate], at=NOW, purpose="client").ok
    assert check(issuing.issue_server_cert("localhost", usage="none"), root).ok  # no EKU: any purpose


def test_self_signed(root):
    verdict = check(self_signed_cert("localhost"), root)
    assert failed_at(verdict) == ("self_signed", 0, "trust anchor")
    assert verdict.path == [verdict.path[0]]


def test_pinned_self_signed_is_trusted():
    pinned = self_signed_cert("localhost")
    assert verify_chain(pinned.certificate, [], [pinned.certificate], host="localhost", at=NOW).ok


def test_missing_intermediate(root, good):
    verdict = verify_chain(good.certificate, [], [root.certificate], host="localhost", at=NOW)
    assert failed_at(verdict) == ("missing_intermediate", 0, "issuer found")
    assert "'Verify Issuing CA' was not sent" in verdict.failure.detail


def test_unknown_root(root):
    stranger = CertificateAuthority("Stranger Root").intermediate("Stranger Issuing CA")
    cred = stranger.issue_server_cert("localhost")
    assert failed_at(check(cred, root)) == ("unknown_root", 1, "issuer found")
    # The server also sends its root: a self-signed root that is not trusted.
    with_root = verify_chain(cred.certificate, [*cred.intermediates, stranger.root.certificate], [root.certificate], at=NOW)
    assert failed_at(with_root) == ("unknown_root", 2, "trust anchor")


def test_no_trusted_roots_at_all(good):
    assert failed_at(verify_chain(good.certificate, good.intermediates, [], at=NOW)) == ("unknown_root", 1, "issuer found")


def test_intermediates_in_any_order_and_with_strangers(root, issuing, good):
    noise = CertificateAuthority("Noise CA").certificate
    verdict = verify_chain(good.certificate, [noise, issuing.certificate, good.certificate], [root.certificate], at=NOW)
    assert verdict.ok and verdict.path == [good.certificate, issuing.certificate, root.certificate]


def tampered(cert: x509.Certificate, old: bytes, new: bytes) -> x509.Certificate:
    der = cert.public_bytes(Encoding.DER)
    assert len(old) == len(new) and old in der
    return x509.load_der_x509_certificate(der.replace(old, new))


def test_a_tampered_certificate(root, issuing):
    real = issuing.issue_server_cert("api.course.test")
    forged = tampered(real.certificate, b"api.course.test", b"api.evilxx.test")
    verdict = verify_chain(forged, real.intermediates, [root.certificate], host="api.evilxx.test", at=NOW)
    assert [s.check for s in verdict.steps if s.ok][:2] == ["host name (SAN)", "purpose (EKU)"]  # the forger made it say so
    assert failed_at(verdict) == ("bad_signature", 0, "signature")
    assert "does not verify" in verdict.failure.detail


def test_a_tampered_signature(root, good):
    der = bytearray(good.certificate.public_bytes(Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature value
    forged = x509.load_der_x509_certificate(bytes(der))
    assert failed_at(verify_chain(forged, good.intermediates, [root.certificate], at=NOW)) == ("bad_signature", 0, "signature")


def test_a_same_named_impostor_ca(root, good):
    impostor = CertificateAuthority("Verify Issuing CA", _parent=root, _path_length=0)  # same name, other key
    verdict = verify_chain(good.certificate, [impostor.certificate], [root.certificate], at=NOW)
    assert failed_at(verdict) == ("bad_signature", 0, "signature")


def test_key_too_small(root, issuing):
    small = issuing.issue_server_cert("localhost", key_type="rsa1024")
    verdict = check(small, root)
    assert failed_at(verdict) == ("key_too_small", 0, "key strength")
    assert "RSA 1024" in verdict.failure.detail
    assert check(issuing.issue_server_cert("localhost", key_type="rsa2048"), root).ok


# --- CA rules: basicConstraints, keyUsage, path length ---------------------------------------------


def _issue(subject: str, key, issuer_cert: x509.Certificate | None, issuer_key, *, ca: bool, path_length=None,
           key_cert_sign: bool = True, hosts=()) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(dt.datetime(2045, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=ca and key_cert_sign, crl_sign=ca, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def hand_root():
    key = ec.generate_private_key(ec.SECP256R1())
    return _issue("Hand Root", key, None, key, ca=True), key


def test_a_leaf_that_signs_is_not_a_ca(hand_root):
    root, root_key = hand_root
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _issue("leaf that signs", leaf_key, root, root_key, ca=False, hosts=["leaf.test"])
    victim = _issue("localhost", ec.generate_private_key(ec.SECP256R1()), leaf, leaf_key, ca=False, hosts=["localhost"])
    verdict = verify_chain(victim, [leaf], [root], host="localhost", at=NOW)
    assert failed_at(verdict) == ("invalid_ca", 1, "is a CA")


def test_a_ca_without_key_cert_sign(hand_root):
    root, root_key = hand_root
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("No Cert Sign CA", ca_key, root, root_key, ca=True, key_cert_sign=False)
    leaf = _issue("localhost", ec.generate_private_key(ec.SECP256R1()), ca, ca_key, ca=False, hosts=["localhost"])
    assert failed_at(verify_chain(leaf, [ca], [root], host="localhost", at=NOW)) == ("invalid_ca", 1, "key usage")


def test_path_length_exceeded(hand_root):
    root, root_key = hand_root
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    first = _issue("First CA", k1, root, root_key, ca=True, path_length=0)  # may sign leaves only
    second = _issue("Second CA", k2, first, k1, ca=True, path_length=0)
    leaf = _issue("localhost", ec.generate_private_key(ec.SECP256R1()), second, k2, ca=False, hosts=["localhost"])
    verdict = verify_chain(leaf, [second, first], [root], host="localhost", at=NOW)
    assert failed_at(verdict) == ("path_length", 2, "path length")


# --- revocation --------------------------------------------------------------------------------


def test_revocation(root):
    issuing = root.intermediate("Revoking CA")
    kept, revoked = issuing.issue_server_cert("localhost"), issuing.issue_server_cert("localhost")
    issuing.revoke(revoked)
    crl = x509.load_pem_x509_crl(issuing.crl_pem())
    assert check(kept, root, crls=[crl]).steps[6].check == "revocation (CRL)"
    assert check(kept, root, crls=[crl]).ok
    verdict = check(revoked, root, crls=[crl])
    assert failed_at(verdict) == ("revoked", 0, "revocation (CRL)")
    assert "revoked 2025-01-01" in verdict.failure.detail
    assert check(revoked, root).ok  # no CRL given: revocation is not checked (the soft spot of revocation)
    assert check(revoked, root, crls=crl).key == "revoked"  # a single CRL is fine too


def test_revocation_problems(root, issuing, good):
    other = root.intermediate("Another CA")
    unrelated = x509.load_pem_x509_crl(other.crl_pem())
    assert failed_at(check(good, root, crls=[unrelated])) == ("crl_missing", 0, "revocation (CRL)")
    stale = x509.load_pem_x509_crl(issuing.crl_pem(next_update=dt.datetime(2025, 6, 1, tzinfo=UTC)))
    assert failed_at(check(good, root, crls=[stale])) == ("crl_expired", 0, "revocation (CRL)")
    # A CRL that names the right issuer but was signed by an impostor's key.
    impostor = CertificateAuthority("Verify Issuing CA", _parent=root, _path_length=0)
    forged = x509.load_pem_x509_crl(impostor.crl_pem())
    assert failed_at(check(good, root, crls=[forged])) == ("bad_signature", 0, "revocation (CRL)")


# --- wrong arguments raise; bad chains never do ---------------------------------------------------


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((b"-----BEGIN CERTIFICATE-----", [], []), {}),
        (("LEAF", [], []), {}),
        ((None, [], []), {}),
        (("GOOD", "not a list", []), {}),
        (("GOOD", [b"der"], []), {}),
        (("GOOD", [], b"pem"), {}),
        (("GOOD", [], [object()]), {}),
        (("GOOD", [], []), {"host": 42}),
        (("GOOD", [], []), {"at": "2026-01-01"}),
        (("GOOD", [], []), {"crls": [b"crl"]}),
    ],
)
def test_wrong_argument_types_raise_type_error(good, args, kwargs):
    args = tuple(good.certificate if a == "GOOD" else a for a in args)
    with pytest.raises(TypeError):
        verify_chain(*args, **kwargs)


def test_wrong_purpose_is_a_value_error(good, root):
    with pytest.raises(ValueError):
        verify_chain(good.certificate, [], [root.certificate], purpose="email")  # type: ignore[arg-type]


def test_a_single_certificate_is_accepted_for_the_lists(root, issuing, good):
    assert verify_chain(good.certificate, issuing.certificate, root.certificate, at=NOW).ok


def test_a_loop_of_cas_does_not_hang(hand_root):
    # Two CAs that name each other as issuer (cross-signed in a circle), neither trusted.
    ka, kb = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name_a = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Loop A")])
    name_b = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Loop B")])

    def ca(subject, issuer, key, issuer_key):
        return (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=UTC)).not_valid_after(dt.datetime(2045, 1, 1, tzinfo=UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )

    a, b = ca(name_a, name_b, ka, kb), ca(name_b, name_a, kb, ka)
    leaf = _issue("localhost", ec.generate_private_key(ec.SECP256R1()), a, ka, ca=False, hosts=["localhost"])
    verdict = verify_chain(leaf, [a, b], [hand_root[0]], host="localhost", at=NOW)
    assert not verdict.ok and verdict.key == "chain_too_long"


# --- cross-checks: cryptography's PolicyBuilder, and the live gallery -------------------------------


def policy_verdict(leaf, intermediates, roots, host: str, at: dt.datetime) -> str | None:
    """cryptography's web-PKI verifier, its error reduced to a class of defect (None: ok)."""
    verifier = PolicyBuilder().store(Store(roots)).time(at).build_server_verifier(x509.DNSName(host))
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        text = str(exc)
        for words, kind in (
            ("not valid at validation time", "validity"),
            ("no matching subjectAltName", "host"),
            ("candidates exhausted", "issuer"),
            ("EKU", "usage"),
        ):
            if words in text:
                return kind
        return f"other: {text}"
    return None


KIND = {
    None: None, "expired": "validity", "not_yet_valid": "validity", "hostname_mismatch": "host",
    "missing_intermediate": "issuer", "unknown_root": "issuer", "wrong_usage": "usage",
}

#: Cases where PolicyBuilder cannot be compared: it checks no revocation (no CRL support) and,
#: as of cryptography 50, no minimum RSA size; both are the client's policy (OpenSSL's here).
NOT_APPLICABLE = {"revoked", "key_too_small"}


@pytest.fixture(scope="module")
def gallery_table():
    return gallery.run_all()


@pytest.mark.parametrize("name", list(gallery.CASES))
def test_by_hand_and_policybuilder_agree_on_every_gallery_case(gallery_table, name):
    if name in NOT_APPLICABLE:
        pytest.skip(f"PolicyBuilder has no opinion on {name}")
    result = gallery_table[name]
    now = dt.datetime.now(UTC)
    mine = result.by_hand(at=now)
    theirs = policy_verdict(result.sent[0], result.sent[1:], [result.trusted_root], gallery.HOST, now)
    assert mine.key == result.case.expected  # by hand = the live handshake
    if name == "self_signed":
        # PolicyBuilder refuses it too, first for a reason of its own (web-PKI wants an authority key identifier).
        assert theirs is not None
    else:
        assert theirs == KIND[mine.key], (name, mine, theirs)


def test_by_hand_and_policybuilder_agree_on_more_chains(root, issuing, good):
    stranger = CertificateAuthority("Stranger Root 2").intermediate("Stranger Issuing CA 2")
    chains = {
        "good": (good, "localhost", NOW),
        "wrong host": (good, "elsewhere.test", NOW),
        "wildcard": (good, "api.course.test", NOW),
        "wildcard, another label": (good, "www.course.test", NOW),
        "before its time": (good, "localhost", dt.datetime(2024, 6, 1, tzinfo=UTC)),
        "after its time": (good, "localhost", dt.datetime(2046, 6, 1, tzinfo=UTC)),
        "stranger": (stranger.issue_server_cert("localhost"), "localhost", NOW),
        "client only": (issuing.issue_server_cert("localhost", usage="client"), "localhost", NOW),
    }
    for label, (cred, host, at) in chains.items():
        mine = verify_chain(cred.certificate, cred.intermediates, [root.certificate], host=host, at=at)
        theirs = policy_verdict(cred.certificate, cred.intermediates, [root.certificate], host, at)
        assert theirs == KIND[mine.key], (label, mine, theirs)
