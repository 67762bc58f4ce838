"""What the tap costs: added round-trip time of a small exchange, and added time for a TLS connect().

    python bench/bench_tap.py [--round-trips 2000] [--connects 200]

Direct and through-the-tap measurements alternate, so a machine that slows down part-way
through slows both equally. Prints one table row per figure: figure, value, target, met or not
(in the style of bench_connect.py). Run by hand or by `make bench`; never a timed test.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

from tlslab import CertificateAuthority, TCPServer, TLSServer, connect
from tlslab.servers import ServerConnection
from tlslab.wire import Tap

MESSAGE = b"x" * 32


def echo_each(conn: ServerConnection) -> None:
    """Send back every piece as it arrives, until the client closes."""
    while data := conn.recv():
        conn.sendall(data)


def dial(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trip(sock: socket.socket) -> float:
    started = time.perf_counter()
    sock.sendall(MESSAGE)
    got = 0
    while got < len(MESSAGE):
        got += len(sock.recv(len(MESSAGE) - got))
    return time.perf_counter() - started


def measure_round_trips(count: int) -> tuple[list[float], list[float]]:
    with TCPServer(handler=echo_each, name="bench-echo") as server, Tap(server, name="bench-tap") as tap:
        with dial(server.address) as direct, dial(tap.address) as tapped:
            for _ in range(200):  # warm-up
                round_trip(direct), round_trip(tapped)
            plain, through = [], []
            for _ in range(count):
                plain.append(round_trip(direct))
                through.append(round_trip(tapped))
    return plain, through


def measure_connects(count: int) -> tuple[list[float], list[float]]:
    ca = CertificateAuthority("Bench CA")
    with TLSServer(ca.issue_server_cert("localhost", "127.0.0.1"), name="bench-tls") as server, Tap(server, name="bench-tls-tap") as tap:
        for _ in range(10):  # warm-up: OpenSSL tables, thread start-up
            connect(server, trust=ca), connect(tap, trust=ca)
        plain, through = [], []
        for _ in range(count):
            for target, samples in ((server, plain), (tap, through)):
                started = time.perf_counter()
                report = connect(target, trust=ca)
                samples.append(time.perf_counter() - started)
                if not report.ok:
                    raise SystemExit(f"handshake failed: {report.diagnosis}")
    return plain, through


def row(label: str, value: float, unit: str, limit: float | None = None) -> None:
    target = f"≤ {limit:g} {unit}" if limit is not None else ""
    met = ("yes" if value <= limit else "no") if limit is not None else ""
    print(f"{label:<48} {value:>8.1f} {unit:<2}  {target:>9}  {met}")
    if os.environ.get("TLSLAB_BENCH_ROWS"):  # machine-readable, for bench/run.py
        print("ROW", label, f"{value:.1f} {unit}", target, met, sep="\t")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="50 round trips, 5 connects (a smoke test of this script)")
    args = parser.parse_args(argv)
    if args.quick:
        args.round_trips, args.connects = 50, 5
    plain, through = measure_round_trips(args.round_trips)
    direct_rtt, tap_rtt = statistics.median(plain) * 1e6, statistics.median(through) * 1e6
    plain_c, through_c = measure_connects(args.connects)
    direct_c, tap_c = statistics.median(plain_c) * 1e3, statistics.median(through_c) * 1e3
    print(f"{'figure':<48} {'value':>11}  {'target':>9}  met")
    row(f"median RTT, {len(MESSAGE)} B, direct ({args.round_trips} round trips)", direct_rtt, "µs")
    row(f"median RTT, {len(MESSAGE)} B, through the tap", tap_rtt, "µs")
    row("added RTT (difference of medians)", tap_rtt - direct_rtt, "µs", 200)
    row(f"median TLS connect(), direct ({args.connects} runs)", direct_c, "ms")
    row("median TLS connect(), through the tap", tap_c, "ms")
    row("added connect() time (difference of medians)", tap_c - direct_c, "ms", 2)
    # On a busy machine each hop through the tap waits for a core; the fastest runs show its own cost.
    fast = statistics.quantiles(through_c, n=10)[0] - statistics.quantiles(plain_c, n=10)[0]
    row("added connect() time (10th percentiles)", fast * 1e3, "ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
