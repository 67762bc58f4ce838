"""Short-lived certificates, the rotator under continuous load, and revocation by CRL reload."""

from __future__ import annotations

import math
import socket
import time

import pytest
from cryptography import x509

from tlslab import CertificateAuthority, TLSServer, connect, plots, running_servers, stop_all
from tlslab.client import client_context
from tlslab.enroll import Device
from tlslab.pki import Credential, PKIError
from tlslab.rotation import (
    Rotator,
    Timeline,
    revoke,
    run_rotation,
    short_lived_cert,
    stop_all_rotators,
    validity_from_now,
)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("Rotation Test CA")


def presented_serial(server: TLSServer, ca: CertificateAuthority, client: Credential | None = None) -> int:
    """The serial number of the certificate the server presents to a new connection."""
    ctx = client_context(ca, cert=client)
    with socket.create_connection(server.address, timeout=5) as sock, \
            ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


# --- short-lived certificates ---------------------------------------------------------------


def test_short_lived_certificates_use_real_now_based_dates(ca):
    before = time.time()
    cred = short_lived_cert(ca, "localhost", lifetime=7)
    start = cred.certificate.not_valid_before_utc.timestamp()
    assert start == math.floor(start) and math.floor(before) <= start <= time.time()
    assert cred.certificate.not_valid_after_utc.timestamp() - start == 7


def test_lifetimes_are_whole_seconds():
    begin, end = validity_from_now(2.4, now=1000.7)
    assert (begin.timestamp(), end.timestamp()) == (1000, 1002)
    assert validity_from_now(0.2, now=5)[1].timestamp() == 6  # at least one second
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="lifetime"):
            validity_from_now(bad)


def test_openssl_refuses_a_certificate_from_its_valid_until_second_on(ca):
    cred = short_lived_cert(ca, "localhost", "127.0.0.1", lifetime=1)
    expires = cred.certificate.not_valid_after_utc.timestamp()
    with TLSServer(cred, name="rotation-expiry") as server:
        assert connect(server, trust=ca).ok
        time.sleep(max(0.0, expires - time.time()) + 0.05)
        report = connect(server, trust=ca)
    assert (report.diagnosis.key, report.diagnosis.who) == ("expired", "client")


# --- the rotator ----------------------------------------------------------------------------


def test_rotator_issues_at_once_and_renews_at_two_thirds(ca):
    rotator = Rotator(ca, "localhost", lifetime=9, name="svc")
    cert = rotator.current.certificate
    due = cert.not_valid_before_utc.timestamp() + 6 - time.time()
    assert rotator.renews_in() == pytest.approx(due, abs=0.05)
    assert repr(rotator) == "<Rotator 'svc': 9 s certificates, renewed at 2/3 of their life; 0 rotation(s); stopped>"


def test_renewal_goes_into_the_running_server(ca):
    rotator = Rotator(ca, "localhost", "127.0.0.1", lifetime=30)
    seen: list[Credential] = []
    server = TLSServer(ca.issue_server_cert("localhost"), name="rotation-swap")
    rotator.attach(server).attach(seen.append)
    assert server.credential is rotator.current  # attaching hands over the current one at once
    with server:
        first = presented_serial(server, ca)
        assert first == rotator.current.certificate.serial_number
        fresh = rotator.renew()
        assert seen == [fresh] and rotator.rotations == 1
        assert presented_serial(server, ca) == fresh.certificate.serial_number != first


def test_an_open_connection_keeps_its_certificate_across_a_swap(ca):
    with TLSServer(ca.issue_server_cert("localhost"), name="rotation-open", handler="echo") as server:
        ctx = client_context(ca)
        with socket.create_connection(server.address, timeout=5) as sock, \
                ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            server.reload_certificate(ca.issue_server_cert("localhost"))
            tls.sendall(b"still here")
            assert tls.recv(100) == b"still here"


def test_the_rotator_thread_renews_by_itself_and_stops(ca):
    timeline = Timeline()
    rotator = Rotator(ca, "localhost", lifetime=1, renew_at=0.5, timeline=timeline, name="fast")
    with rotator:
        deadline = time.monotonic() + 4
        while rotator.rotations < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rotator.running
    assert rotator.rotations >= 2 and not rotator.running and rotator.errors == []
    assert [e.kind for e in timeline.events][:3] == ["issued", "renewed", "renewed"]
    assert [c.generation for c in timeline.certificates][:3] == [1, 2, 3]


def test_stop_all_stops_rotators(ca):
    if running_servers():
        pytest.skip(f"other tests' servers are running ({running_servers()}); stop_all() would stop them")
    rotator = Rotator(ca, "localhost", lifetime=60).start()
    assert rotator.running
    stop_all()
    assert not rotator.running
    stop_all_rotators()  # nothing left: no error


def test_rotator_arguments_are_checked(ca):
    with pytest.raises(ValueError, match="identity"):
        Rotator(ca, lifetime=5)
    with pytest.raises(ValueError, match="renew_at"):
        Rotator(ca, "localhost", renew_at=1.5)
    with pytest.raises(ValueError, match="lifetime"):
        Rotator(ca, "localhost", lifetime=0)
    with pytest.raises(ValueError, match="rotations"):
        run_rotation(rotations=0)


def test_reload_arguments_are_checked(ca):
    server = TLSServer(ca.issue_server_cert("localhost"))
    with pytest.raises(PKIError, match="private key"):
        server.reload_certificate(Credential(ca.issue_server_cert("localhost").certificate))
    with pytest.raises(ValueError, match="asks for none"):
        server.reload_crl(ca.crl_pem())


# --- rotation under continuous load ---------------------------------------------------------


def test_no_connection_fails_across_several_rotations():
    # 2-second certificates for server and client, renewed 3 times; a connection every 20 ms.
    result = run_rotation(lifetime=2, rotations=3, interval=0.02)
    assert result.rotations >= 3 and result.client_rotations >= 3
    assert result.made >= 50, result.rows()
    assert result.failed == 0, result.failure_kinds()
    assert result.ok
    # Every connection happened while some certificate was valid, and certificates overlapped.
    spans = [c for c in result.timeline.certificates if c.who == "server"]
    assert all(later.not_before < earlier.not_after for earlier, later in zip(spans, spans[1:]))
    # The run went on past the expiry of the first certificates: rotation was needed.
    assert result.timeline.connections[-1].t > spans[0].not_after
    assert repr(result) == "<RotationResult 2 s certificates, 3 rotation(s): no connection failed>"
    fig = plots.rotation_timeline(result.timeline)
    gids = {p.get_gid() for p in fig.axes[0].patches}
    assert {"rotation-cert-server-1", "rotation-cert-client-4"} <= gids


def test_without_a_rotator_connections_fail_once_the_certificates_expire():
    result = run_rotation(lifetime=2, rotations=1, rotate=False)
    assert result.rotations == 0 and result.failed > 0 and result.made > result.failed
    kinds = result.failure_kinds()
    # The client checks the server's certificate first; only a connection caught exactly at the
    # expiry second can see the server refuse the client's certificate instead.
    assert set(kinds) <= {("expired", "client"), ("expired", "server")} and kinds.get(("expired", "client"))
    first_failure = next(e.t for e in result.timeline.connections if not e.ok)
    assert first_failure >= result.timeline.certificates[0].not_after - 0.01
    assert "failed: expired (client refused)" in dict(result.rows())
    assert "connection(s) failed" in repr(result)


# --- revocation -------------------------------------------------------------------------------


def test_a_revoked_device_is_refused_on_its_next_connection(ca):
    stolen, honest = Device("stolen-1"), Device("honest-1")
    stolen.enroll(ca)
    honest.enroll(ca)
    timeline = Timeline()
    with TLSServer(ca.issue_server_cert("localhost"), name="rotation-revoke", client_cert="required",
                   client_ca=ca, crl=ca.crl_pem()) as server:
        assert stolen.connect(server, trust=ca).ok
        crl = revoke(ca, stolen.credential, server, timeline=timeline, who="stolen-1")
        refused = stolen.connect(server, trust=ca)
        assert (refused.diagnosis.key, refused.diagnosis.who) == ("revoked", "server")
        assert refused.diagnosis.code == "alert certificate_revoked (44) received"
        assert refused.server_view.failure.key == "revoked"
        assert honest.connect(server, trust=ca).ok  # the others are not affected
    assert x509.load_pem_x509_crl(crl).get_revoked_certificate_by_serial_number(
        stolen.credential.certificate.serial_number) is not None
    assert [(e.kind, e.who) for e in timeline.events] == [("revoked", "stolen-1")]


def test_revocation_needs_the_reload(ca):
    device = Device("late-1")
    device.enroll(ca)
    with TLSServer(ca.issue_server_cert("localhost"), name="rotation-noreload", client_cert="required",
                   client_ca=ca, crl=ca.crl_pem()) as server:
        ca.revoke(device.credential)
        assert device.connect(server, trust=ca).ok  # the server still holds the old list
        server.reload_crl(ca.crl_pem())
        assert device.connect(server, trust=ca).diagnosis.key == "revoked"


def test_a_server_can_start_checking_a_crl_while_serving(ca):
    device = Device("unchecked-1")
    device.enroll(ca)
    with TLSServer(ca.issue_server_cert("localhost"), name="rotation-nocrl", client_cert="required",
                   client_ca=ca) as server:
        assert device.connect(server, trust=ca).ok
        revoke(ca, device.credential, server)
        assert device.connect(server, trust=ca).diagnosis.key == "revoked"
