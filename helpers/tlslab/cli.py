"""The ``tlslab`` command: check the machine, run a server to poke at, open the course.

::

    tlslab doctor                       # can this machine run the course?
    tlslab serve --mtls --out certs     # an HTTPS server on https://localhost:8443/ for curl & co
    tlslab lab                          # JupyterLab on course/00_welcome.ipynb
    tlslab build-labs / tlslab grade    # for instructors (from tlslab.grading)

Every subcommand is a function ``func(args) -> int`` (the exit status), set on its parser with
``set_defaults(func=...)``; :func:`main` parses and calls it. Output goes to stdout, errors to
stderr with the subcommand's name in front, and a bad invocation or environment exits with 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import __version__
from .doctor import run_checks
from .pki import CertificateAuthority, Credential, describe_key, private_folder
from .servers import ConnectionRecord, TLSServer

__all__ = [
    "CLIENT_IDENTITY",
    "DEFAULT_PORT",
    "LAB_SETTINGS_DIR",
    "WELCOME_NOTEBOOK",
    "ServeFiles",
    "build_parser",
    "find_course_root",
    "lab_command",
    "main",
    "write_serve_files",
]

DEFAULT_PORT = 8443
#: Who the ``--mtls`` client certificate says its holder is (a SPIFFE ID, as in lesson 05).
CLIENT_IDENTITY = "spiffe://course.test/learner"
WELCOME_NOTEBOOK = Path("course") / "00_welcome.ipynb"
#: The JupyterLab settings the course ships (``overrides.json``: no news pop-up, no update checks),
#: relative to the course root. Binder's ``binder/postBuild`` installs the same file into the image.
LAB_SETTINGS_DIR = Path("jupyter") / "lab" / "settings"


def _fail(command: str, message: str) -> int:
    """Print a one-line error for ``tlslab COMMAND`` and return the exit status for it."""
    print(f"tlslab {command}: error: {message}", file=sys.stderr, flush=True)
    return 2


# --- tlslab doctor -------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print one line per check, then a verdict; exit 1 when anything is wrong."""
    report = run_checks()
    print(report)
    print(report.summary, flush=True)
    return 0 if report.ok else 1


# --- tlslab serve --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeFiles:
    """Where ``tlslab serve`` wrote its PEM files."""

    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path | None = None
    client_key: Path | None = None


def _write_file(path: Path, data: bytes, mode: int) -> Path:
    # An existing file would keep its old (maybe world-readable) mode while we write the key
    # into it, so start from a fresh file created with the right mode.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # the umask may have taken bits away from a public file
    return path


def write_serve_files(
    folder: Path, ca: CertificateAuthority, server: Credential, client: Credential | None = None
) -> ServeFiles:
    """Write ``ca.pem``, ``server.pem`` (the chain), ``server.key`` and, for mutual TLS,
    ``client.pem`` and ``client.key`` into ``folder`` (created if needed). Keys get mode 0600."""
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()  # absolute, so the printed commands work from any directory
    client_cert = client_key = None
    if client is not None:
        client_cert = _write_file(folder / "client.pem", client.chain_pem, 0o644)
        client_key = _write_file(folder / "client.key", client.key_pem(), 0o600)
    return ServeFiles(
        folder=folder,
        ca=_write_file(folder / "ca.pem", ca.cert_pem, 0o644),
        server_cert=_write_file(folder / "server.pem", server.chain_pem, 0o644),
        server_key=_write_file(folder / "server.key", server.key_pem(), 0o600),
        client_cert=client_cert,
        client_key=client_key,
    )


def _curl_command(files: ServeFiles, port: int) -> str:
    words = ["curl", "--cacert", str(files.ca)]
    if files.client_cert and files.client_key:
        words += ["--cert", str(files.client_cert), "--key", str(files.client_key)]
    return shlex.join([*words, f"https://localhost:{port}/"])


def _s_client_command(files: ServeFiles, port: int) -> str:
    words = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(files.ca), "-servername", "localhost"]
    if files.client_cert and files.client_key:
        words += ["-cert", str(files.client_cert), "-key", str(files.client_key)]
    return shlex.join(words)


def _versions_label(server: TLSServer) -> str:
    low, high = (v.name.removeprefix("TLSv").replace("_", ".") for v in (server.min_version, server.max_version))
    return f"TLS {low} only" if low == high else f"TLS {low}–{high}"


def _connection_line(record: ConnectionRecord) -> str:
    """One log line per connection, printed by the main thread (the server itself never prints)."""
    peer = f"{record.peer[0]}:{record.peer[1]}"
    if record.ok:
        who = f", client {record.client_identity}" if record.client_identity else ""
        return f"✓ {peer} {record.version} {record.cipher}{who}"
    if record.failure is not None:
        return f"✗ {peer} the {record.failure.who} refused: {record.failure.what} [{record.failure.code}]"
    return f"✗ {peer} failed"


def _bind_error(exc: OSError, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on 127.0.0.1 is already in use (another server is running there; choose another with --port)"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port} (ports below 1024 need root; choose another with --port)"
    return f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"


def cmd_serve(args: argparse.Namespace) -> int:
    """Run an HTTPS server on 127.0.0.1 until Ctrl-C (SIGINT) or SIGTERM."""
    # A fresh CA each run: nothing to trust from a previous one, nothing left behind.
    ca = CertificateAuthority("TLS Lab Serve CA", key_type=args.key_type)
    credential = ca.issue_server_cert("localhost", "127.0.0.1", key_type=args.key_type)
    client = ca.issue_client_cert(CLIENT_IDENTITY, key_type=args.key_type) if args.mtls else None
    low, high = (args.tls_version, args.tls_version) if args.tls_version else ("1.2", "1.3")
    server = TLSServer(
        credential,
        name="tlslab-serve",
        port=args.port,
        min_version=low,
        max_version=high,
        client_cert="required" if args.mtls else "none",
        client_ca=ca if args.mtls else None,
        handler="http",
    )

    # Handle the signals before listening, so that no moment exists where Ctrl-C leaves the
    # server half-stopped. signal.signal() works only in the main thread.
    stop = threading.Event()
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        try:
            server.start()
        except OSError as exc:
            return _fail("serve", _bind_error(exc, args.port))
        try:
            files = write_serve_files(args.out or private_folder(), ca, credential, client)
        except OSError as exc:
            return _fail("serve", f"cannot write the certificate files: {exc}")
        _print_banner(server, files, temporary=args.out is None)
        shown = 0
        while not stop.wait(0.2):
            shown = _print_new_connections(server, shown)
        server.stop()
        _print_new_connections(server, shown)
        print("Server stopped.", flush=True)
        return 0
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _print_new_connections(server: TLSServer, shown: int) -> int:
    records = server.connections[shown:]
    for record in records:
        print(_connection_line(record), flush=True)
    return shown + len(records)


def _print_banner(server: TLSServer, files: ServeFiles, *, temporary: bool) -> None:
    port = server.port
    mtls = ", client certificate required (mutual TLS)" if server.client_cert == "required" else ""
    lines = [
        f"TLS Lab server on https://localhost:{port}/",
        f"  {_versions_label(server)}, {describe_key(server.credential.certificate.public_key())} key{mtls}",
        f"Files in {files.folder}" + (" (removed when the server stops):" if temporary else ":"),
        "  ca.pem      the CA certificate: trust it",
        "  server.pem  the server's certificate chain",
        "  server.key  the server's private key (mode 0600)",
    ]
    if files.client_cert:
        lines += [
            f"  client.pem  a client certificate for {CLIENT_IDENTITY}",
            "  client.key  the client's private key (mode 0600)",
        ]
    lines += [
        "Try it:",
        f"  {_curl_command(files, port)}",
        f"  {_s_client_command(files, port)}",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


# --- tlslab lab ----------------------------------------------------------------------------


def find_course_root(start: Path | None = None) -> Path | None:
    """The folder holding ``course/00_welcome.ipynb``: ``start`` (the current directory) or one
    of its parents; ``None`` when there is none."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / WELCOME_NOTEBOOK).is_file():
            return folder
    return None


def lab_command(root: Path, *, no_browser: bool = False) -> list[str]:
    """The command that opens JupyterLab on the welcome notebook of the course in ``root``."""
    command = [
        sys.executable, "-m", "jupyter", "lab", WELCOME_NOTEBOOK.as_posix(), "--ip=127.0.0.1",
        # Given a notebook, Jupyter would serve only that notebook's folder (course/); the file
        # browser should show the whole course, labs included.
        f"--ServerApp.root_dir={root}",
        # The printed URL (and Binder's) should land on the welcome notebook too, not on an empty lab.
        f"--LabApp.default_url=/lab/tree/{WELCOME_NOTEBOOK.as_posix()}",
    ]
    # The course's JupyterLab settings: JupyterLab reads overrides.json from its application
    # settings folder, so point it at the course's own. It stands in for the environment's
    # {sys.prefix}/share/jupyter/lab/settings (empty in the .venv that `make lab` makes), and
    # nothing is written into the environment.
    settings = root / LAB_SETTINGS_DIR
    if (settings / "overrides.json").is_file():
        command.append(f"--LabApp.app_settings_dir={settings}")
    if no_browser:
        command.append("--no-browser")
    # Jupyter refuses to run as root (as in containers) unless told that it is on purpose.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return command


def cmd_lab(args: argparse.Namespace) -> int:
    """Open JupyterLab on the course; returns JupyterLab's exit status."""
    root = find_course_root()
    if root is None:
        return _fail(
            "lab",
            f"cannot find {WELCOME_NOTEBOOK.as_posix()} in {Path.cwd()} or its parents; "
            "run this from the TLS Lab folder (the one that contains course/)",
        )
    command = lab_command(root, no_browser=args.no_browser)
    sys.stdout.flush()
    if os.name == "posix":
        # Become JupyterLab: Ctrl-C, SIGTERM and the exit status then belong to it alone, with no
        # middle process to forward signals or to outlive it.
        os.chdir(root)
        os.execv(command[0], command)
    return subprocess.call(command, cwd=root)  # Windows: exec would detach from the console


# --- the parser ----------------------------------------------------------------------------


_OWN_COMMANDS = ("doctor", "serve", "lab", "scan")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, not {port}")
    return port


def _add_grading_commands(sub: argparse._SubParsersAction) -> None:
    """``build-labs`` and ``grade`` come from :mod:`tlslab.grading`."""
    try:
        from . import grading
    except ModuleNotFoundError as exc:
        # Only a missing grading module itself is tolerated (the command list then lacks those
        # two); a grading module that fails to import for any other reason is a bug to see.
        if exc.name != f"{__package__}.grading":
            raise
        return
    grading.add_commands(sub)


def build_parser(*, with_grading: bool = True) -> argparse.ArgumentParser:
    """The ``tlslab`` argument parser, with one subparser per command.

    ``with_grading=False`` leaves out ``build-labs`` and ``grade`` (and the import they need).
    """
    parser = argparse.ArgumentParser(
        prog="tlslab",
        description="TLS Lab: learn SSL, TLS and mutual TLS by experiment, on your own machine.",
    )
    parser.add_argument("--version", action="version", version=f"tlslab {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="check that this machine can run the course")
    doctor.set_defaults(func=cmd_doctor)

    serve = sub.add_parser(
        "serve",
        help="run an HTTPS server on 127.0.0.1 to try with curl or openssl",
        description="Run an HTTPS server on 127.0.0.1 (certificate for localhost and 127.0.0.1) "
        "until Ctrl-C. It prints the commands to try it with curl and openssl s_client.",
    )
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port)")
    serve.add_argument("--mtls", action="store_true", help="require a client certificate (mutual TLS); one is written for you")
    serve.add_argument(
        "--tls-version", choices=("1.2", "1.3"), default=None, help="accept only this version (default: 1.2 and 1.3)"
    )
    serve.add_argument(
        "--key-type", choices=("ecdsa", "rsa", "ed25519"), default="ecdsa", help="key type of the CA and certificates (default ecdsa)"
    )
    serve.add_argument(
        "--out", type=Path, default=None, metavar="DIR",
        help="write ca.pem, server.pem, server.key (and client.pem, client.key) here "
        "(default: a private temp folder, removed on exit)",
    )
    serve.set_defaults(func=cmd_serve)

    lab = sub.add_parser("lab", help="open JupyterLab on course/00_welcome.ipynb")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser (print the URL instead)")
    lab.set_defaults(func=cmd_lab)

    from . import scan

    scan.add_command(sub)

    if with_grading:
        _add_grading_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tlslab`` with ``argv`` (default: the command line); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The grading commands import nbformat and friends, which takes seconds: only pay for that
    # when it may be needed (their own commands, or the full help), not for `tlslab serve`.
    command = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(with_grading=command not in _OWN_COMMANDS)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # Ctrl-C before a command had its own handling in place
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
