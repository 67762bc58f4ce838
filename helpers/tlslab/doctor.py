"""Check that this machine can run the course: ``tlslab doctor``, or from a notebook::

    >>> from tlslab.doctor import run_checks
    >>> report = run_checks()                       # doctest: +SKIP
    >>> print(report)                               # doctest: +SKIP
    ✓ Python 3.11.7
    ✓ OpenSSL 3.0.13
    ...

Each check is a plain function returning a :class:`Check` (a name, ok or not, and a detail);
:func:`run_checks` runs them all and returns a :class:`DoctorReport`. A check never raises: an
unexpected error becomes a failed check that says what went wrong.

The lines are meant to be compared by nbval from one run to the next, so they show versions
(which a sanitize rule can mask) but never timings, ports, paths or random values.
"""

from __future__ import annotations

import html
import importlib
import importlib.metadata
import importlib.util
import os
import socket
import ssl
import stat
import sys
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "CHECKS",
    "Check",
    "DoctorReport",
    "check_bind_loopback",
    "check_handshake",
    "check_ipywidgets",
    "check_jupyterlab",
    "check_matplotlib",
    "check_openssl",
    "check_private_folder",
    "check_python",
    "check_tls13",
    "run_checks",
]

MIN_PYTHON = (3, 10)
MIN_OPENSSL = (1, 1, 1)


@dataclass(frozen=True)
class Check:
    """The outcome of one check. ``detail`` is a version or a short phrase; on failure it says
    what is wrong and, in brackets, how to fix it."""

    name: str
    ok: bool
    detail: str = ""

    @property
    def mark(self) -> str:
        return "✓" if self.ok else "✗"

    def __str__(self) -> str:
        # "✓ Python 3.11.7" reads as a sentence; "✗ JupyterLab: not installed (…)" as a complaint.
        if self.ok:
            return f"{self.mark} {self.name} {self.detail}".rstrip()
        return f"{self.mark} {self.name}: {self.detail}"

    def __repr__(self) -> str:
        return f"<Check {str(self)!r}>"


@dataclass(frozen=True)
class DoctorReport:
    """All the checks, in the order they ran."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    @property
    def summary(self) -> str:
        """``All checks passed.`` or ``2 problem(s)``."""
        return "All checks passed." if self.ok else f"{len(self.problems)} problem(s)"

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "\n".join(str(check) for check in self.checks)

    def __repr__(self) -> str:
        if self.ok:
            return f"<DoctorReport: all {len(self.checks)} checks passed>"
        names = ", ".join(check.name for check in self.problems)
        return f"<DoctorReport: {len(self.problems)} problem(s) in {len(self.checks)} checks: {names}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='color:{'#27ae60' if c.ok else '#c0392b'};font-weight:bold'>{c.mark}</td>"
            f"<th style='text-align:left;padding-right:1em'>{html.escape(c.name)}</th>"
            f"<td style='text-align:left'>{html.escape(c.detail)}</td></tr>"
            for c in self.checks
        )
        return (
            f"<table class='tlslab-doctor'>{rows}</table>"
            f"<p><b>{html.escape(self.summary)}</b></p>"
        )


# --- the checks ----------------------------------------------------------------------------


def check_python() -> Check:
    """Python 3.10 or newer, as ``pyproject.toml`` requires."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    if sys.version_info[:2] >= MIN_PYTHON:
        return Check("Python", True, version)
    return Check("Python", False, f"{version} is too old (TLS Lab needs Python 3.10 or newer)")


def check_openssl() -> Check:
    """The OpenSSL that Python's ``ssl`` module uses: 1.1.1 or newer (the first with TLS 1.3)."""
    # "OpenSSL 3.0.13 30 Jan 2024" -> "3.0.13": the build date would only add noise.
    words = ssl.OPENSSL_VERSION.split()
    version = words[1] if len(words) > 1 and words[0] == "OpenSSL" else ssl.OPENSSL_VERSION
    if ssl.OPENSSL_VERSION_INFO[:3] >= MIN_OPENSSL:
        return Check("OpenSSL", True, version)
    return Check("OpenSSL", False, f"{ssl.OPENSSL_VERSION} is too old (TLS Lab needs OpenSSL 1.1.1 or newer)")


def check_tls13() -> Check:
    """This OpenSSL build can speak TLS 1.3."""
    if ssl.HAS_TLSv1_3:
        return Check("TLS 1.3", True, "available")
    return Check("TLS 1.3", False, "not available in this OpenSSL build (install a Python built with OpenSSL 1.1.1+)")


def check_bind_loopback() -> Check:
    """A server can listen on 127.0.0.1 (every experiment needs it)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(1)
    except OSError as exc:
        return Check("Listening on 127.0.0.1", False, f"{exc.strerror or exc} (is the loopback interface up?)")
    return Check("Listening on 127.0.0.1", True, "works")


def check_handshake() -> Check:
    """A real TLS 1.3 handshake between the course's own server and client, on the loopback."""
    # Imported here so that a broken install still lets the other checks report.
    from .client import connect
    from .pki import CertificateAuthority
    from .servers import TLSServer

    name = "TLS 1.3 handshake on 127.0.0.1"
    ca = CertificateAuthority("TLS Lab Doctor CA")
    credential = ca.issue_server_cert("localhost", "127.0.0.1")
    with TLSServer(credential, name="tlslab-doctor", min_version="1.3", handler="echo") as server:
        report = connect(server, trust=ca, min_version="1.3", send=b"ping")
    if not report.ok:
        assert report.diagnosis is not None
        return Check(name, False, f"the {report.diagnosis.who} refused: {report.diagnosis.what}")
    if report.version != "TLSv1.3":
        return Check(name, False, f"negotiated {report.version} instead of TLSv1.3")
    if report.reply != b"ping":
        return Check(name, False, f"the server echoed {report.reply!r} instead of b'ping'")
    return Check(name, True, "works")


def _installed_version(module: str) -> str:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(sys.modules.get(module), "__version__", "(unknown version)"))


def check_jupyterlab() -> Check:
    """JupyterLab 4 is installed."""
    # Only located, not imported: importing jupyterlab pulls in the whole Jupyter server (seconds),
    # and the notebook kernel never imports it anyway.
    if importlib.util.find_spec("jupyterlab") is None:
        return Check("JupyterLab", False, "not installed (pip install 'jupyterlab>=4,<5')")
    version = _installed_version("jupyterlab")
    if not version.startswith("4."):
        return Check("JupyterLab", False, f"{version} is not version 4 (pip install 'jupyterlab>=4,<5')")
    return Check("JupyterLab", True, version)


def _check_import(module: str, label: str, pip_spec: str, major: str | None = None) -> Check:
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == module
        why = "not installed" if missing else f"cannot be imported ({exc})"
        return Check(label, False, f"{why} (pip install '{pip_spec}')")
    version = str(getattr(imported, "__version__", "")) or _installed_version(module)
    if major is not None and version.split(".")[0] != major:
        return Check(label, False, f"{version} is not version {major} (pip install '{pip_spec}')")
    return Check(label, True, version)


def check_ipywidgets() -> Check:
    """ipywidgets 8 (the course's explorers are written for its API)."""
    return _check_import("ipywidgets", "ipywidgets", "ipywidgets>=8,<9", major="8")


def check_matplotlib() -> Check:
    """matplotlib (ladder diagrams, histograms, chains of trust)."""
    return _check_import("matplotlib", "matplotlib", "matplotlib>=3.7")


def check_private_folder() -> Check:
    """The private temp folder, where keys are written, is writable and private (mode 0700)."""
    from .pki import private_folder

    name = "Private temp folder"
    try:
        folder = private_folder()
        probe = folder / ".doctor-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return Check(name, False, f"not writable ({exc.strerror or exc}; check TMPDIR)")
    # Windows has no POSIX modes to check; everywhere else, others must not read our keys.
    if os.name == "posix" and stat.S_IMODE(folder.stat().st_mode) & 0o077:
        return Check(name, False, "readable by other users (it should be mode 0700)")
    return Check(name, True, "is writable")


#: The checks, in the order they run (and print).
CHECKS: tuple[Callable[[], Check], ...] = (
    check_python,
    check_openssl,
    check_tls13,
    check_bind_loopback,
    check_handshake,
    check_jupyterlab,
    check_ipywidgets,
    check_matplotlib,
    check_private_folder,
)

def run_checks(checks: tuple[Callable[[], Check], ...] = CHECKS) -> DoctorReport:
    """Run every check; a check that crashes counts as a failed check, never as a crash."""
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:  # the doctor must report, whatever it finds
            name = check.__name__.removeprefix("check_").replace("_", " ")
            results.append(Check(name, False, f"the check itself failed: {type(exc).__name__}: {exc}"))
    return DoctorReport(tuple(results))
