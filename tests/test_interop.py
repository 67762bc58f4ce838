"""``tlslab serve`` against the tools people really use: curl and ``openssl s_client``.

These prove that the course's servers are ordinary TLS servers, and that the commands
``tlslab serve`` prints work exactly as printed.
"""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

import pytest

from _tools import ServeProcess, require_tool, run

PAGE = "Hello from the TLS Lab server"


@pytest.fixture
def curl() -> str:
    return require_tool("curl")


@pytest.fixture
def openssl() -> str:
    return require_tool("openssl")


def _curl(command: str, curl: str) -> list[str]:
    """A printed curl command, made quiet about progress and told to print the status code last."""
    words = shlex.split(command)
    assert words[0] == "curl"
    return [curl, "--silent", "--show-error", "--write-out", "\n%{http_code}", *words[1:]]


def _s_client(openssl: str, port: int, ca: Path, *extra: str) -> list[str]:
    return [
        openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca), "-servername", "localhost",
        "-verify_hostname", "localhost", "-verify_return_error", *extra,
    ]


def _negotiated(output: str) -> str | None:
    """The version s_client reports: ``New, TLSv1.3, Cipher is …`` or ``Protocol  : TLSv1.3``."""
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("New, TLSv"):
            return line.split(",")[1].strip()
        if line.startswith("Protocol") and ":" in line:
            return line.split(":", 1)[1].strip()
    return None


# --- curl ----------------------------------------------------------------------------------


def test_curl_fetches_the_page_with_the_printed_command(tmp_path: Path, curl: str) -> None:
    with ServeProcess(tmp_path / "d") as served:
        done = run(_curl(served.line_starting("curl "), curl))
        assert done.returncode == 0, done.stderr
        body, _, status = done.stdout.rpartition("\n")
        assert status == "200"
        assert PAGE in body and "You presented no client certificate." in body
        assert served.stop()[0] == 0


def test_curl_without_the_ca_refuses_the_server(tmp_path: Path, curl: str) -> None:
    with ServeProcess(tmp_path) as served:
        # curl's own trust store (the system's CAs) knows nothing of this course's CA.
        done = run([curl, "--silent", "--show-error", f"https://localhost:{served.port}/"])
    assert done.returncode == 60  # CURLE_PEER_FAILED_VERIFICATION
    assert PAGE not in done.stdout


def test_curl_mtls_needs_the_client_certificate(tmp_path: Path, curl: str) -> None:
    with ServeProcess(tmp_path / "d", "--mtls") as served:
        ca = tmp_path / "d" / "ca.pem"
        refused = run([curl, "--silent", "--show-error", "--cacert", str(ca), f"https://localhost:{served.port}/"])
        assert refused.returncode != 0
        assert PAGE not in refused.stdout

        printed = served.line_starting("curl ")
        assert "--cert" in printed and "--key" in printed
        done = run(_curl(printed, curl))
        assert done.returncode == 0, done.stderr
        body, _, status = done.stdout.rpartition("\n")
        assert status == "200"
        assert "Your client certificate says you are spiffe://course.test/learner." in body

        status_code, log, _ = served.stop()
    assert status_code == 0
    assert "client spiffe://course.test/learner" in log  # the server's own log of the good one


# --- openssl s_client ----------------------------------------------------------------------


def test_s_client_negotiates_tls13_by_default(tmp_path: Path, openssl: str) -> None:
    with ServeProcess(tmp_path) as served:
        done = run(_s_client(openssl, served.port, tmp_path / "ca.pem"), input="Q\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _negotiated(done.stdout) == "TLSv1.3"
    assert "Verify return code: 0 (ok)" in done.stdout


def test_the_printed_s_client_command_works(tmp_path: Path, openssl: str) -> None:
    with ServeProcess(tmp_path, "--mtls") as served:
        words = shlex.split(served.line_starting("openssl s_client"))
        done = run([openssl, *words[1:], "-verify_return_error"], input="Q\n")
        assert done.returncode == 0, done.stdout + done.stderr
        assert _negotiated(done.stdout) == "TLSv1.3"
        _, log, _ = served.stop()
    assert "client spiffe://course.test/learner" in log


def test_s_client_tls12_works(tmp_path: Path, openssl: str) -> None:
    with ServeProcess(tmp_path) as served:
        done = run(_s_client(openssl, served.port, tmp_path / "ca.pem", "-tls1_2"), input="Q\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _negotiated(done.stdout) == "TLSv1.2"
    assert "Verify return code: 0 (ok)" in done.stdout


def test_the_server_refuses_tls11(tmp_path: Path, openssl: str) -> None:
    with ServeProcess(tmp_path) as served:
        # SECLEVEL=0 lets OpenSSL 3's client offer TLS 1.1 at all, so it is the *server* that says no.
        done = run(
            _s_client(openssl, served.port, tmp_path / "ca.pem", "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"),
            input="Q\n",
        )
        status, log, _ = served.stop(signal.SIGINT)
    assert done.returncode != 0
    assert "alert protocol version" in done.stderr  # the server's protocol_version alert reached the client
    assert status == 0
    assert "✗ 127.0.0.1:" in log and "the server refused" in log and "UNSUPPORTED_PROTOCOL" in log


def test_pinned_tls12_server_refuses_a_tls13_only_client(tmp_path: Path, openssl: str) -> None:
    with ServeProcess(tmp_path, "--tls-version", "1.2") as served:
        done = run(_s_client(openssl, served.port, tmp_path / "ca.pem", "-tls1_3"), input="Q\n")
    assert done.returncode != 0
    assert "alert protocol version" in done.stderr


@pytest.mark.parametrize(("key_type", "key_name"), [("rsa", "RSA 2048"), ("ed25519", "Ed25519"), ("ecdsa", "ECDSA P-256")])
@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_key_types_verify_with_s_client(tmp_path: Path, openssl: str, key_type: str, key_name: str, version: str) -> None:
    with ServeProcess(tmp_path, "--key-type", key_type) as served:
        assert f"{key_name} key" in served.banner
        done = run(_s_client(openssl, served.port, tmp_path / "ca.pem", version), input="Q\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verify return code: 0 (ok)" in done.stdout
    assert _negotiated(done.stdout) == version.replace("-tls1_", "TLSv1.")
