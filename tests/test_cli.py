"""The ``tlslab`` command, run for real: the doctor, a served HTTPS server, the lab launcher."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

import tlslab
from tlslab.cli import find_course_root, lab_command, main
from tlslab.doctor import CHECKS, Check, DoctorReport, check_python, run_checks
from tlslab.pki import load_certificate, load_private_key

from _tools import ServeProcess, free_port, run, tlslab_command, wait_until_listening

GET = b"GET / HTTP/1.0\r\n\r\n"


# --- tlslab doctor -------------------------------------------------------------------------


def test_doctor_command_passes_and_prints_one_line_per_check() -> None:
    done = run([*tlslab_command(), "doctor"])
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(CHECKS) + 1
    assert all(line.startswith("✓ ") for line in lines[:-1]), done.stdout
    assert lines[-1] == "All checks passed."
    python = ".".join(map(str, sys.version_info[:3]))
    assert f"✓ Python {python}" in lines
    assert "✓ TLS 1.3 handshake on 127.0.0.1 works" in lines
    assert any(line.startswith("✓ JupyterLab 4.") for line in lines)
    assert any(line.startswith("✓ ipywidgets 8.") for line in lines)


def test_doctor_exits_1_and_names_the_problem(tmp_path: Path) -> None:
    # A real environment with an old ipywidgets in front of the good one on the path.
    old = tmp_path / "old" / "ipywidgets"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text('__version__ = "7.8.5"\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "old")}
    done = subprocess.run([*tlslab_command(), "doctor"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert "✗ ipywidgets: 7.8.5 is not version 8 (pip install 'ipywidgets>=8,<9')" in lines
    assert lines[-1] == "1 problem(s)"


def test_doctor_output_is_stable_for_nbval() -> None:
    # A notebook shows this output and nbval compares it: no ports, paths, timings or randomness.
    first, second = str(run_checks()), str(run_checks())
    assert first == second
    assert "/" not in first and "\\" not in first
    assert "tlslab-" not in first


def test_doctor_report_repr_and_html() -> None:
    report = run_checks()
    assert report.ok and bool(report)
    assert repr(report) == f"<DoctorReport: all {len(CHECKS)} checks passed>"
    html = report._repr_html_()
    assert html.startswith("<table") and html.count("<tr>") == len(CHECKS)
    assert "✓" in html and "✗" not in html
    assert "All checks passed." in html
    assert repr(report.checks[0]) == f"<Check {str(report.checks[0])!r}>"


def test_a_failed_check_reads_as_a_complaint() -> None:
    missing = Check("JupyterLab", False, "not installed (pip install jupyterlab)")
    report = DoctorReport((check_python(), missing))
    assert not report.ok
    assert str(missing) == "✗ JupyterLab: not installed (pip install jupyterlab)"
    assert str(report).splitlines()[1] == str(missing)
    assert report.summary == "1 problem(s)"
    assert repr(report) == "<DoctorReport: 1 problem(s) in 2 checks: JupyterLab>"
    assert "✗" in report._repr_html_()


def test_a_crashing_check_becomes_a_failed_check() -> None:
    def check_gremlins() -> Check:
        raise RuntimeError("boom")

    report = run_checks((check_python, check_gremlins))
    assert [c.ok for c in report.checks] == [True, False]
    assert str(report.checks[1]) == "✗ gremlins: the check itself failed: RuntimeError: boom"


def test_main_runs_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    assert capsys.readouterr().out.endswith("All checks passed.\n")


# --- the parser ----------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    done = run([*tlslab_command(), "--help"])
    assert done.returncode == 0
    for command in ("doctor", "serve", "lab", "build-labs", "grade"):
        assert command in done.stdout


def test_no_command_prints_help_and_fails() -> None:
    done = run([*tlslab_command()])
    assert done.returncode == 2
    assert "usage: tlslab" in done.stderr


@pytest.mark.parametrize("port", ["70000", "http"])
def test_serve_rejects_a_bad_port(port: str) -> None:
    done = run([*tlslab_command(), "serve", "--port", port])
    assert done.returncode == 2
    assert "--port" in done.stderr


# --- tlslab serve --------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _port_is_free(port: int) -> bool:
    """Can a new server listen on ``port``? (Closed connections may linger in TIME_WAIT, which
    SO_REUSEADDR, as every server sets, allows; a listener still there would not.)"""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_serve_writes_files_and_answers_https(tmp_path: Path) -> None:
    out = tmp_path / "new" / "certs"  # created by serve, parents too
    with ServeProcess(out) as served:
        assert {p.name for p in out.iterdir()} == {"ca.pem", "server.pem", "server.key"}
        assert _mode(out / "server.key") == 0o600
        assert _mode(out / "ca.pem") == 0o644
        server_cert = load_certificate((out / "server.pem").read_bytes())
        assert "DNS:localhost" in tlslab.Credential(server_cert).identities
        assert "IP:127.0.0.1" in tlslab.Credential(server_cert).identities

        assert f"https://localhost:{served.port}/" in served.banner
        curl = served.line_starting("curl ")
        assert curl == f"curl --cacert {out.resolve() / 'ca.pem'} https://localhost:{served.port}/"

        report = tlslab.connect(("127.0.0.1", served.port), trust=out / "ca.pem", send=GET)
        assert report.ok, report
        assert report.version == "TLSv1.3"
        assert report.reply is not None and report.reply.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"You presented no client certificate." in report.reply

        started = time.monotonic()
        status, stdout, stderr = served.stop(signal.SIGINT)
    assert status == 0, stderr
    assert time.monotonic() - started < 3.0
    assert stderr == ""
    assert "✓ 127.0.0.1:" in stdout and "TLSv1.3" in stdout  # the connection log, from the main thread
    assert stdout.endswith("Server stopped.\n")
    assert _port_is_free(served.port)


def test_sigterm_also_stops_cleanly(tmp_path: Path) -> None:
    with ServeProcess(tmp_path) as served:
        status, stdout, _ = served.stop(signal.SIGTERM)
    assert status == 0
    assert stdout.endswith("Server stopped.\n")
    assert _port_is_free(served.port)


def test_stop_does_not_wait_for_idle_clients(tmp_path: Path) -> None:
    # One client connected but silent (mid-handshake), one done with the handshake but silent
    # (inside the HTTP handler): neither may hold the server up when it is told to stop.
    with ServeProcess(tmp_path) as served:
        silent = socket.create_connection(("127.0.0.1", served.port))
        context = tlslab.client_context(tmp_path / "ca.pem")
        idle = context.wrap_socket(socket.create_connection(("127.0.0.1", served.port)), server_hostname="localhost")
        try:
            time.sleep(0.3)  # let the server accept both
            started = time.monotonic()
            status, _, stderr = served.stop(signal.SIGINT)
            assert status == 0, stderr
            assert time.monotonic() - started < 3.0
        finally:
            silent.close()
            idle.close()
    assert _port_is_free(served.port)


def test_serve_without_out_uses_the_private_folder(tmp_path: Path) -> None:
    with ServeProcess(None) as served:
        folder_line = served.line_starting("Files in ")
        assert folder_line.endswith("(removed when the server stops):")
        folder = Path(folder_line.removeprefix("Files in ").split(" (")[0])
        assert folder.name.startswith("tlslab-") and _mode(folder) == 0o700
        assert _mode(folder / "server.key") == 0o600
        assert served.line_starting("curl ") == f"curl --cacert {folder / 'ca.pem'} https://localhost:{served.port}/"
        report = tlslab.connect(("127.0.0.1", served.port), trust=folder / "ca.pem", send=GET)
        assert report.ok and report.reply and report.reply.startswith(b"HTTP/1.1 200")
        status, _, _ = served.stop()
    assert status == 0
    assert not folder.exists()  # the keys went with the server


def test_serve_mtls_requires_the_client_certificate(tmp_path: Path) -> None:
    with ServeProcess(tmp_path, "--mtls") as served:
        assert _mode(tmp_path / "client.key") == 0o600
        client = tlslab.Credential(
            load_certificate((tmp_path / "client.pem").read_bytes()),
            load_private_key((tmp_path / "client.key").read_bytes()),
        )
        refused = tlslab.connect(("127.0.0.1", served.port), trust=tmp_path / "ca.pem", send=GET)
        assert not refused.ok
        assert refused.diagnosis is not None and refused.diagnosis.key == "certificate_required"

        accepted = tlslab.connect(("127.0.0.1", served.port), trust=tmp_path / "ca.pem", cert=client, send=GET)
        assert accepted.ok, accepted
        assert b"spiffe://course.test/learner" in (accepted.reply or b"")
        status, stdout, _ = served.stop()
    assert status == 0
    assert "✗ 127.0.0.1:" in stdout and "client spiffe://course.test/learner" in stdout


@pytest.mark.parametrize(("pinned", "other"), [("1.2", "1.3"), ("1.3", "1.2")])
def test_tls_version_pins_one_version(tmp_path: Path, pinned: str, other: str) -> None:
    with ServeProcess(tmp_path, "--tls-version", pinned) as served:
        assert f"TLS {pinned} only" in served.banner
        ok = tlslab.connect(("127.0.0.1", served.port), trust=tmp_path / "ca.pem")
        assert ok.ok and ok.version == f"TLSv{pinned}"
        refused = tlslab.connect(
            ("127.0.0.1", served.port), trust=tmp_path / "ca.pem", min_version=other, max_version=other
        )
        assert not refused.ok


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = run([*tlslab_command(), "serve", "--port", str(port), "--out", str(tmp_path / "out")])
    assert done.returncode == 2
    assert done.stderr == (
        f"tlslab serve: error: port {port} on 127.0.0.1 is already in use "
        "(another server is running there; choose another with --port)\n"
    )
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "out").exists()  # nothing written for a server that never ran


# --- tlslab lab ----------------------------------------------------------------------------


def test_lab_command_line(tmp_path: Path) -> None:
    command = lab_command(tmp_path, no_browser=True)
    assert command[:5] == [sys.executable, "-m", "jupyter", "lab", "course/00_welcome.ipynb"]
    assert "--ip=127.0.0.1" in command and "--no-browser" in command
    assert f"--ServerApp.root_dir={tmp_path}" in command
    assert ("--allow-root" in command) == (os.geteuid() == 0)
    assert "--no-browser" not in lab_command(tmp_path)


def _welcome_course(root: Path) -> Path:
    (root / "course").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), root / "course" / "00_welcome.ipynb")
    return root


def test_lab_starts_jupyterlab_on_the_course(tmp_path: Path) -> None:
    root = _welcome_course(tmp_path / "repo")
    port = free_port()
    jupyter_dirs = {  # keep this JupyterLab's files out of the real home folder
        "JUPYTER_PORT": str(port),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
    }
    process = subprocess.Popen(
        [*tlslab_command(), "lab", "--no-browser"],
        cwd=root / "course",  # a subfolder: the course root is found upwards
        env={**os.environ, **jupyter_dirs},
        stdin=subprocess.DEVNULL,  # not a terminal: Ctrl-C stops JupyterLab without asking
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_listening(port, timeout=120, process=process)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        with direct.open(f"http://127.0.0.1:{port}/api", timeout=10) as answer:
            assert "version" in json.load(answer)
        # The browser is sent to the welcome notebook, with the whole course as the file tree.
        opener = next((tmp_path / "runtime").glob("jpserver-file-to-run-*-open.html")).read_text()
        assert f"http://127.0.0.1:{port}/lab/tree/course/00_welcome.ipynb?token=" in opener
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output.decode(errors="replace")
    assert f"Serving notebooks from local directory: {root.resolve()}" in output.decode(errors="replace")


def test_course_root_is_found_from_a_subfolder(tmp_path: Path) -> None:
    _welcome_course(tmp_path)
    (tmp_path / "labs" / "solutions").mkdir(parents=True)
    assert find_course_root(tmp_path / "labs" / "solutions") == tmp_path.resolve()
    assert find_course_root(tmp_path / "course") == tmp_path.resolve()


def test_lab_outside_the_course_is_a_clear_error(tmp_path: Path) -> None:
    done = run([*tlslab_command(), "lab", "--no-browser"], cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot find course/00_welcome.ipynb" in done.stderr
    assert done.stderr.count("\n") == 1
