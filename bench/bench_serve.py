"""P3: `tlslab serve` handshakes per second beside `openssl s_server`, the same client driving both.

    python bench/bench_serve.py [--seconds 4] [--rounds 5] [--quick]

`tlslab serve --port 0 --out DIR` writes ca.pem, server.pem and server.key; `openssl s_server
-www` then serves with the very same certificate and key. One client, `openssl s_time -new -www /
-CAfile ca.pem -verify 2` (a full handshake per connection, TLS 1.3 on both, one HTTP GET, the
certificate verified), runs against each server in turn, `--rounds` times, the order alternating
(A B, B A, …) so that a machine slowing down part-way hits both alike. Connections per second
are counted over each s_time run's wall time (s_time's own "real seconds" are whole seconds, too
coarse); each run starts just after a whole second, since s_time stops at a whole second.

Figures: the median rate of each server, the ratio tlslab/openssl (median of the rounds' ratios;
target ≥ 0.9), and each server's CPU time per handshake (read from /proc: less sensitive to a busy
machine than the rates). `--quick` is a smoke test of this script (1-second runs, one round).

Prints one table row per figure: figure, value, target, met or blank. Run by hand or by
`make bench`; never a timed test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 0.9
_BANNER = re.compile(r"TLS Lab server on https://localhost:(\d+)/")
_COUNT = re.compile(r"(\d+) connections in [\d.]+s; ([\d.]+) connections/user sec")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def start_tlslab(folder: Path) -> tuple[subprocess.Popen, int]:
    """`tlslab serve` on a free port, certificates written to ``folder/certs``; its log to a file."""
    log = open(folder / "serve.log", "w+", encoding="utf-8")
    command = [sys.executable, "-m", "tlslab.cli", "serve", "--port", "0", "--out", str(folder / "certs")]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = _BANNER.search((folder / "serve.log").read_text(encoding="utf-8", errors="replace"))
        if found and (folder / "certs" / "server.key").is_file() and "Press Ctrl-C" in (folder / "serve.log").read_text():
            # Listening already (the banner comes after start()); a probe would be a logged failure.
            return process, int(found[1])
        if process.poll() is not None:
            raise SystemExit(f"tlslab serve exited with {process.returncode}:\n{(folder / 'serve.log').read_text()}")
        time.sleep(0.05)
    process.terminate()
    raise SystemExit("tlslab serve printed no banner within 60 s")


def start_openssl(certs: Path) -> tuple[subprocess.Popen, int]:
    """`openssl s_server -www` with the certificate and key `tlslab serve` wrote."""
    port = free_port()
    command = ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(certs / "server.pem"),
               "-key", str(certs / "server.key"), "-www", "-quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wait_listening(port, process)
    return process, port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def s_time(port: int, ca: Path, seconds: int) -> tuple[int, float, float]:
    """One s_time run: (connections, wall seconds, client connections per user-CPU second)."""
    # s_time stops when time(NULL) reaches start + seconds: begin just after a whole second.
    time.sleep(1.02 - time.time() % 1.0)
    command = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds),
               "-www", "/", "-CAfile", str(ca), "-verify", "2"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.perf_counter() - started
    found = _COUNT.search(result.stdout)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"s_time failed (exit {result.returncode}):\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}")
    return int(found[1]), wall, float(found[2])


def print_rows(rows: list[tuple[str, str, str, str]], width: int = 58) -> None:
    """The readable table; with TLSLAB_BENCH_ROWS set, also the ROW lines bench/run.py collects."""
    print(f"{'figure':<{width}} {'value':>12}  {'target':>8}  met")
    for figure, value, target, met in rows:
        print(f"{figure:<{width}} {value:>12}  {target:>8}  {met}")
    if os.environ.get("TLSLAB_BENCH_ROWS"):
        for row in rows:
            print("ROW", *(str(cell).strip() for cell in row), sep="\t")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4, help="length of each s_time run")
    parser.add_argument("--rounds", type=int, default=5, help="runs against each server (alternating)")
    parser.add_argument("--quick", action="store_true", help="one 1-second run each (a smoke test of this script)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 1, 1
    if shutil.which("openssl") is None:
        print_rows([("tlslab serve / openssl s_server", "no openssl", f"≥ {TARGET_RATIO:g}", "")])
        return 0

    with tempfile.TemporaryDirectory(prefix="tlslab-bench-serve-") as name:
        folder = Path(name)
        ours, ours_port = start_tlslab(folder)
        theirs = None
        try:
            theirs, theirs_port = start_openssl(folder / "certs")
            servers = {"tlslab serve": (ours, ours_port), "openssl s_server": (theirs, theirs_port)}
            ca = folder / "certs" / "ca.pem"
            for _, port in servers.values() if not args.quick else ():  # warm-up: first-connection costs
                s_time(port, ca, 1)
            rates: dict[str, list[float]] = {name: [] for name in servers}
            cpu: dict[str, list[float]] = {name: [] for name in servers}
            client: dict[str, list[float]] = {name: [] for name in servers}
            order = list(servers)
            for round_number in range(args.rounds):
                for server_name in order if round_number % 2 == 0 else order[::-1]:
                    process, port = servers[server_name]
                    before = cpu_seconds(process.pid)
                    count, wall, per_user_second = s_time(port, ca, args.seconds)
                    cpu[server_name].append((cpu_seconds(process.pid) - before) / max(count, 1))
                    rates[server_name].append(count / wall)
                    client[server_name].append(per_user_second)
        finally:
            for process in (ours, theirs):
                if process is not None and process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
        log = (folder / "serve.log").read_text(encoding="utf-8", errors="replace")
    refused = log.count("\n✗ ")

    ratios = [a / b for a, b in zip(rates["tlslab serve"], rates["openssl s_server"])]
    ratio = statistics.median(ratios)
    runs = f"{args.rounds} × {args.seconds} s"
    rows = [
        (f"tlslab serve, handshakes/s (median of {runs})", f"{statistics.median(rates['tlslab serve']):8.0f} /s", "", ""),
        (f"openssl s_server, handshakes/s (median of {runs})", f"{statistics.median(rates['openssl s_server']):8.0f} /s", "", ""),
        ("ratio tlslab / openssl (median of rounds)", f"{ratio:8.2f}  ", f"≥ {TARGET_RATIO:g}", "yes" if ratio >= TARGET_RATIO else "no"),
        ("  ratios of the rounds", " ".join(f"{r:.2f}" for r in ratios), "", ""),
        ("tlslab serve, server CPU per handshake", f"{statistics.median(cpu['tlslab serve']) * 1e3:8.2f} ms", "", ""),
        ("openssl s_server, server CPU per handshake", f"{statistics.median(cpu['openssl s_server']) * 1e3:8.2f} ms", "", ""),
        ("s_time client, handshakes per client CPU second", f"{statistics.median(client['tlslab serve'] + client['openssl s_server']):8.0f} /s", "", ""),
        ("connections tlslab serve refused (its log)", f"{refused:8d}  ", "0", "yes" if refused == 0 else "no"),
    ]
    print_rows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
