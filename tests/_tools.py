"""Shared helpers for tests that drive real programs: curl, openssl, and ``tlslab`` itself.

* :func:`require_tool` finds a program, or skips the test on a developer machine that lacks it;
  in CI (``CI`` set) a missing tool fails the test instead, since CI installs them all.
* :func:`free_port` asks the OS for a port nobody listens on.
* :class:`ServeProcess` runs ``tlslab serve`` as a real subprocess and stops it with a signal.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import pytest

__all__ = ["ServeProcess", "free_port", "require_tool", "run", "tlslab_command", "wait_until_listening"]


def require_tool(name: str) -> str:
    """The path of the program ``name``; skip the test without it (fail in CI)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (it is needed for this test)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it")
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tlslab_command() -> list[str]:
    """How to run ``tlslab``: the installed entry point next to this Python, else ``-m``."""
    script = Path(sys.executable).with_name("tlslab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tlslab.cli"]


def wait_until_listening(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Poll until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited early with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class ServeProcess:
    """``tlslab serve --port PORT [--out OUT] [extra…]`` in a subprocess; a context manager.

    On entry it waits until the server listens and its banner is printed (``self.banner``);
    :meth:`stop` sends a signal and returns ``(exit status, stdout, stderr)``. Leaving the
    ``with`` block always ends the process, even when a test failed half-way.
    """

    def __init__(self, out: Path | None, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.out = out
        self.args = [*tlslab_command(), "serve", "--port", str(self.port), *extra]
        if out is not None:
            self.args += ["--out", str(out)]
        self.process: subprocess.Popen[bytes] | None = None
        self.banner = ""
        self._stdout = b""

    def __enter__(self) -> "ServeProcess":
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_until_listening(self.port, process=self.process)
            self.banner = self._read_until(b"Press Ctrl-C to stop.\n", timeout=10.0)
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Stop it the way a person would (Ctrl-C), so it removes its private folder and keys;
        # kill it only if that does not work.
        if self.process is not None and self.process.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def _read_until(self, marker: bytes, timeout: float) -> str:
        # Read the pipe's file descriptor directly, so a silent server cannot hang the test.
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while marker not in self._stdout:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {marker!r} from tlslab serve; it printed {self._stdout!r}")
                if selector.select(left):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        raise AssertionError(f"tlslab serve closed its output; it printed {self._stdout!r}")
                    self._stdout += chunk
        return self._stdout.decode()

    def line_starting(self, prefix: str) -> str:
        """The banner line that starts with ``prefix`` (after indentation), without it."""
        for line in self.banner.splitlines():
            if line.strip().startswith(prefix):
                return line.strip()
        raise AssertionError(f"no line starting with {prefix!r} in the banner:\n{self.banner}")

    def stop(self, signum: int = signal.SIGINT, timeout: float = 5.0) -> tuple[int, str, str]:
        """Send ``signum``; wait for the exit. Returns (status, all stdout, all stderr)."""
        assert self.process is not None
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, (self._stdout + out).decode(), err.decode()

    def kill(self) -> None:
        """End the process at once (SIGKILL), if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=5)


def run(
    args: Sequence[str], *, input: str = "", cwd: Path | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion with ``input`` on stdin; capture its output as text."""
    return subprocess.run(
        list(args), input=input, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
    )
