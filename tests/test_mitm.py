"""The man in the middle reads plaintext only from a client that does not verify."""

from __future__ import annotations

import os
import threading

import pytest

from tlslab import CertificateAuthority, TLSServer, connect
from tlslab.client import insecure_connect_demo
from tlslab.mitm import Interceptor


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("MITM Test CA")


@pytest.fixture()
def bank(ca):
    with TLSServer(ca.issue_server_cert("localhost"), name="mitm-test-bank") as server:
        yield server


def test_verifying_client_refuses_and_leaks_nothing(ca, bank) -> None:
    secret = "password=" + os.urandom(6).hex()
    with Interceptor(bank) as mitm:
        report = connect(mitm, trust=ca, send=secret)
    assert not report.ok and report.diagnosis.key == "unknown_issuer" and report.diagnosis.who == "client"
    assert not mitm.stolen.contains(secret) and mitm.stolen.client_bytes == b""
    assert len(mitm.connections) == 1 and not mitm.connections[0].ok
    assert mitm.connections[0].failure.key == "unknown_ca"  # the victim's alert, as the attacker logs it


def test_non_verifying_client_is_read_in_full(ca, bank) -> None:
    secret = "password=" + os.urandom(6).hex()
    with Interceptor(bank) as mitm:
        report = insecure_connect_demo(mitm, send=secret)
    assert report.ok and report.reply == secret.encode()  # the victim notices nothing
    assert report.peer.issuer == "CN=Totally Legit Root CA,O=TLS Lab"  # …unless it looks at the issuer
    stolen = mitm.stolen
    assert stolen.contains(secret) and stolen.client_bytes == secret.encode() and stolen.server_bytes == secret.encode()


def test_the_real_server_saw_the_attacker_not_the_victim(ca, bank) -> None:
    with Interceptor(bank) as mitm:
        insecure_connect_demo(mitm, send="hello")
    records = bank.wait_for_connections(1)
    assert records[-1].ok  # the interceptor completed a genuine handshake with the bank


def test_pinning_the_real_certificate_defeats_the_interceptor(ca) -> None:
    credential = ca.issue_server_cert("localhost")
    with TLSServer(credential, name="mitm-test-pinned") as server, Interceptor(server) as mitm:
        assert connect(server, trust=credential).ok
        assert not connect(mitm, trust=credential).ok


def test_concurrent_victims_are_kept_apart(ca, bank) -> None:
    with Interceptor(bank) as mitm:
        threads = [threading.Thread(target=insecure_connect_demo, args=(mitm,), kwargs={"send": f"victim-{i}"}) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    stolen = mitm.stolen
    for i in range(8):
        assert stolen.contains(f"victim-{i}")
    for index in range(8):
        one = stolen.for_connection(index)
        assert one.client_bytes == one.server_bytes and one.client_bytes.startswith(b"victim-")
