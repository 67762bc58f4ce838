"""Hardening: every checklist item demonstrated (weak fails, hardened passes), the checks on their
own, the server configurations and their SSLContext code, and the configuration-builder widget."""

from __future__ import annotations

import datetime as dt
import os
import ssl

import pytest

from tlslab import connect
from tlslab.client import client_context
from tlslab.hardening import (
    CHECKLIST,
    HARDENED,
    SUITE_PRESETS,
    WEAK,
    ServerConfig,
    check_certificate_lifetime,
    check_cipher_policy,
    check_client_auth,
    check_client_context,
    check_key_file,
    check_min_version,
    check_scan,
    check_source,
    client_credential,
    demonstrate,
    find_verification_smells,
    hardened_server,
    hardening_ca,
    pinning_demo,
    run_checklist,
    weak_server,
)
from tlslab.pki import _write_private, private_folder
from tlslab.scan import scan


@pytest.fixture(scope="module")
def checklist():
    return run_checklist()


# --- the checklist, item by item ---------------------------------------------------------------


def test_every_item_is_demonstrated(checklist):
    assert [r.item.key for r in checklist] == list(CHECKLIST)
    assert checklist.all_demonstrated, repr(checklist)


@pytest.mark.parametrize(
    ("key", "weak", "hardened"),
    [
        ("minimum_version", "accepts TLS 1.0 and TLS 1.1", "refuses TLS 1.0 and TLS 1.1"),
        ("cipher_policy", "weak TLS 1.2 suites (static RSA, CBC)", "accepts 3 TLS 1.2 suites, all ECDHE + AEAD"),
        ("verification", "the man in the middle read the password", "the man in the middle read nothing"),
        ("key_permissions", "weak-server.key: mode 0644: group and others can read it", "hardened-server.key: mode 0600, owned by you"),
        ("certificate_lifetime", "valid for 825 days: more than 398", "valid for 90 days: at most 398"),
        ("client_authentication", "never asks for a client certificate", "refuses a client without a certificate"),
        ("scan", "exit code 1: legacy_versions, static_rsa_suites, no_client_auth, cbc_suites, long_lifetime",
         "exit code 0: clean against the intermediate + mTLS profile"),
    ],
)
def test_weak_fails_and_hardened_passes(checklist, key, weak, hardened):
    result = checklist[key]
    assert not result.weak.passed and result.hardened.passed
    assert weak in result.weak.evidence
    assert hardened in result.hardened.evidence
    assert result.demonstrated


def test_pinning_is_a_trade_off_shown_live(checklist):
    pinning = checklist["pinning"]
    assert pinning.item.kind == "trade-off" and pinning.weak is None and pinning.hardened is None
    assert dict(pinning.notes) == {
        "before renewal: pinned client": "connected",
        "before renewal: client trusting the CA": "connected",
        "after renewal: pinned client": "refused (unknown_issuer)",
        "after renewal: client trusting the CA": "connected",
    }
    assert "HPKP" in pinning.item.why


def test_checklist_texts_are_stable(checklist):
    again = run_checklist(["minimum_version", "certificate_lifetime", "scan"])
    for result in again:
        assert str(result) == str(checklist[result.item.key])
    assert repr(checklist).splitlines()[0].startswith("✓ Minimum version: TLS 1.2")
    html = checklist._repr_html_()
    assert html.count("<tr>") == len(CHECKLIST) + 1 and "tlslab-checklist" in html
    assert "/tmp/" not in str(checklist)


def test_demonstrate_one_item():
    assert demonstrate("minimum_version").demonstrated
    with pytest.raises(KeyError, match="unknown checklist item"):
        demonstrate("vibes")


# --- the checks on their own ----------------------------------------------------------------------


def test_version_suite_auth_and_lifetime_checks():
    with weak_server(name="hc-weak") as weak, hardened_server(name="hc-hard", client_cert="optional") as optional:
        assert not check_min_version(weak) and check_min_version(optional)
        assert not check_cipher_policy(weak) and check_cipher_policy(optional)
        assert check_client_auth(optional).evidence == "asks for a client certificate, but accepts clients without one"
        assert not check_client_auth(optional)
        assert not check_certificate_lifetime(weak) and check_certificate_lifetime(optional)
    assert check_certificate_lifetime(HARDENED.credential())
    assert not check_certificate_lifetime(HARDENED.credential().certificate, max_days=30)
    with ServerConfig(min_version="1.3").build() as tls13:
        assert check_cipher_policy(tls13).evidence == "TLS 1.2 is off: only TLS 1.3's AEAD suites remain"


def test_key_file_check(tmp_path):
    key = HARDENED.credential().key_pem()
    tight = _write_private(private_folder() / "test-tight.key", key, 0o600)
    read_only = _write_private(private_folder() / "test-readonly.key", key, 0o400)
    group = _write_private(private_folder() / "test-group.key", key, 0o640)
    world = _write_private(private_folder() / "test-world.key", key, 0o604)
    assert check_key_file(tight) and check_key_file(read_only)
    assert check_key_file(group).evidence == "test-group.key: mode 0640: group can read it"
    assert check_key_file(world).evidence == "test-world.key: mode 0604: others can read it"
    link = tmp_path / "link.key"
    link.symlink_to(tight)
    assert "not a regular file" in check_key_file(link).evidence
    assert "cannot read its permissions" in check_key_file(tmp_path / "missing.key").evidence
    _, written = HARDENED.credential().files("test-files")
    assert check_key_file(written)  # Credential.files() writes keys 0600 from the start
    assert (os.stat(written).st_mode & 0o777) == 0o600


def test_verification_smells():
    source = "\n".join([
        "import requests, ssl, urllib3",
        "requests.get(url, verify=False)",
        "# requests.get(url, verify=False)  <- a comment is not code",
        "ctx.check_hostname = False",
        "ctx.verify_mode = ssl.CERT_NONE",
        "ctx = ssl._create_unverified_context()",
        "urllib3.disable_warnings()",
        "os.environ['PYTHONHTTPSVERIFY'] = '0'",
        "subprocess.run('curl -k https://localhost:8443/', shell=True)",
        "requests.get(url, verify='ca.pem')",
        "ctx.verify_mode = ssl.CERT_REQUIRED",
    ])
    smells = find_verification_smells(source)
    assert [(s.line, s.smell) for s in smells] == [
        (2, "verify=False"), (4, "check_hostname=False"), (5, "CERT_NONE"), (6, "ssl._create_unverified_context()"),
        (7, "urllib3.disable_warnings()"), (8, "PYTHONHTTPSVERIFY=0"), (9, "curl -k / --insecure"),
    ]
    assert not check_source(source)
    assert check_source("ctx = ssl.create_default_context(cafile='ca.pem')\n")


def test_client_context_check_is_live():
    assert check_client_context(client_context(hardening_ca()))
    half = client_context(hardening_ca())
    half.check_hostname = False  # the forged certificate is still refused (unknown CA), but the check is gone
    result = check_client_context(half)
    assert not result and result.evidence.startswith("check_hostname False")
    off = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    off.check_hostname = False
    off.verify_mode = ssl.CERT_NONE
    assert "read the password" in check_client_context(off).evidence


def test_check_scan(hardened_and_client=None):
    with hardened_server(name="hc-scan") as server:
        assert check_scan(server, ca=hardening_ca(), cert=client_credential(), require_client_cert=True)
        assert not check_scan(server, ca=hardening_ca(), profile="modern")


def test_pinning_demo_alone():
    assert pinning_demo()[2] == ("after renewal: pinned client", "refused (unknown_issuer)")


# --- server configurations ------------------------------------------------------------------------


def test_weak_and_hardened_configs_scan_as_promised():
    options = dict(ca=hardening_ca(), cert=client_credential(), require_client_cert=True)
    with weak_server() as weak, hardened_server() as hardened:
        assert scan(weak, **options).keys == ["legacy_versions", "static_rsa_suites", "no_client_auth", "cbc_suites", "long_lifetime"]
        assert scan(hardened, **options).clean
    assert WEAK.key == "rsa" and HARDENED.key == "ecdsa"
    assert WEAK.legacy and not HARDENED.legacy


def test_factories_take_changes():
    server = hardened_server(min_version="1.3", name="hc-factory")
    assert server.min_version == ssl.TLSVersion.TLSv1_3 and server.name == "hc-factory"
    with pytest.raises(TypeError, match="unknown setting"):
        weak_server(colour="red")


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"min_version": "1.3", "max_version": "1.2"}, "above the maximum"), ({"client_cert": "maybe"}, "client_cert"),
     ({"lifetime_days": 0}, "lifetime_days"), ({"suites": "NO-SUCH-SUITE"}, "no cipher suite matches"),
     ({"min_version": "0.9"}, "unknown TLS version")],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig(**changes)


def test_key_type_follows_the_suites():
    assert ServerConfig(suites="static-rsa").key == "rsa"
    assert ServerConfig(suites="ECDHE-RSA-AES128-GCM-SHA256").key == "rsa"
    assert ServerConfig(suites="ECDHE-ECDSA-AES128-GCM-SHA256").key == "ecdsa"
    assert ServerConfig(suites="cbc").key == "ecdsa"
    assert ServerConfig(suites="aead", key_type="ed25519").key == "ed25519"
    assert ServerConfig(key_type="rsa1024").legacy  # a too-small key loads only at security level 0


def test_certificates_start_today_and_last_lifetime_days():
    cert = ServerConfig(lifetime_days=7).credential().certificate
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    assert cert.not_valid_before_utc == today
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=7)
    assert ServerConfig(lifetime_days=7).credential() is ServerConfig(lifetime_days=7).credential()  # made once


def test_code_texts():
    weak = WEAK.code()
    assert "ctx.minimum_version = ssl.TLSVersion.TLSv1\n" in weak
    assert '# INSECURE (demo only): TLS 1.0 is deprecated (RFC 8996)' in weak
    assert 'ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:kRSA+AES:@SECLEVEL=0")' in weak
    assert "# no client certificates: any client that reaches the port may connect" in weak
    assert "RSA 2048, 825-day certificate" in weak
    hardened = HARDENED.code()
    assert 'ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")' in hardened
    assert "ctx.verify_mode = ssl.CERT_REQUIRED" in hardened and "INSECURE" not in hardened
    assert "set_ciphers" not in ServerConfig(min_version="1.3").code()
    assert "(no set_ciphers call: Python's default list applies)" in ServerConfig(suites="python-default").code()


@pytest.mark.parametrize("config", [WEAK, HARDENED, ServerConfig(suites="python-default", client_cert="optional"),
                                    ServerConfig(min_version="1.3", key_type="rsa1024")], ids=["weak", "hardened", "default", "tls13-rsa1024"])
def test_code_builds_the_same_context_as_the_server(config, tmp_path, monkeypatch):
    """Run the generated code with real files: it yields the context the built server uses."""
    credential = config.credential()
    (tmp_path / "server.pem").write_bytes(credential.chain_pem)
    (tmp_path / "server.key").write_bytes(credential.key_pem())
    (tmp_path / "clients-ca.pem").write_bytes(hardening_ca().cert_pem)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(config.code(), "config.code()", "exec"), namespace)
    ctx: ssl.SSLContext = namespace["ctx"]
    server = config.build()
    assert ctx.minimum_version == server.context.minimum_version
    assert ctx.maximum_version == server.context.maximum_version
    assert ctx.verify_mode == server.context.verify_mode
    assert [c["name"] for c in ctx.get_ciphers()] == [c["name"] for c in server.context.get_ciphers()]


def test_presets_are_valid_cipher_strings():
    for preset in SUITE_PRESETS.values():
        ServerConfig(suites=preset.name)  # validates the cipher string
    assert SUITE_PRESETS["legacy"].needs_rsa and not SUITE_PRESETS["aead"].needs_rsa


# --- the configuration-builder widget ------------------------------------------------------------


def test_config_builder_widget():
    ipywidgets = pytest.importorskip("ipywidgets")
    from tlslab.widgets import config_builder

    box = config_builder()
    low, high, suites, client, lifetime, profile, mtls, go, code, result = box.children
    assert not any(isinstance(child, ipywidgets.Output) for child in box.children)
    assert "clean against the intermediate + mTLS profile (exit code 0)" in result.value
    assert "ssl.CERT_REQUIRED" in code.value
    low.value, suites.value, client.value, lifetime.value = "1.0", "legacy", "none", 825
    assert "ssl.TLSVersion.TLSv1\n" in code.value and "press" in result.value
    go.click()
    assert "exit code 1" in result.value
    for finding in ("TLS 1.0 and TLS 1.1", "static RSA", "CBC-mode", "does not ask clients for a certificate", "825 days"):
        assert finding in result.value
    high.value = "1.0"
    low.value = "1.2"  # minimum above maximum: the error is shown where the code would be
    assert "ValueError" in code.value and "above the maximum" in code.value
    go.click()
    assert "ValueError" in result.value


def test_config_builder_without_scan():
    pytest.importorskip("ipywidgets")
    from tlslab.widgets import config_builder

    box = config_builder(WEAK, scan_now=False)
    assert "Press" in box.children[-1].value
    assert "INSECURE" in box.children[-2].value
    assert box.children[4].value == 825


def test_a_refused_connection_to_the_hardened_server_without_a_certificate():
    with hardened_server() as server:
        report = connect(server, trust=hardening_ca())
        assert not report.ok and report.diagnosis.key == "certificate_required"
        assert connect(server, trust=hardening_ca(), cert=client_credential()).ok
