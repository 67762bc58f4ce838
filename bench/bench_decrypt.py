"""Decryption throughput on a ~10 MB TLS 1.3 capture: tlslab.decrypt beside tshark.

    python bench/bench_decrypt.py [--mb 10] [--runs 3]

A local TLSServer (key log on) sends ``--mb`` megabytes to a client that records every byte it
sends and receives (the client drives TLS through memory buffers, so it sees the ciphertext
exactly as it crosses the socket). The capture is then decrypted by ``decrypt_session`` and, from a
pcap export plus the key log, by tshark (``-z follow,tls,raw``, which makes tshark decrypt and
reassemble every record). Prints one table row per figure: figure, value, target, met or blank.
Run by hand or by `make bench`; never a timed test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tlslab import CertificateAuthority, TLSServer, client_context
from tlslab.decrypt import decrypt_session
from tlslab.pcap import export_pcap


def capture_download(address: tuple[str, int], context: ssl.SSLContext, request: bytes) -> list[tuple[str, float, bytes]]:
    """Connect, send ``request``, read until the server closes; return every chunk on the wire."""
    chunks: list[tuple[str, float, bytes]] = []
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(address, timeout=30) as sock:

        def flush() -> None:
            data = outgoing.read()
            if data:
                chunks.append(("client", time.monotonic(), data))
                sock.sendall(data)

        def receive() -> bool:
            data = sock.recv(1 << 18)
            if data:
                chunks.append(("server", time.monotonic(), data))
                incoming.write(data)
            else:
                incoming.write_eof()
            return bool(data)

        while True:  # the handshake
            try:
                tls.do_handshake()
                flush()
                break
            except ssl.SSLWantReadError:
                flush()
                receive()
        tls.write(request)
        flush()
        while True:
            try:
                if not tls.read(1 << 18):
                    break  # the server's close_notify
            except ssl.SSLWantReadError:
                flush()
                if not receive():
                    break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
        flush()
    return chunks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0, help="megabytes the server sends")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each decryptor (the median is shown)")
    parser.add_argument("--quick", action="store_true", help="0.2 MB, one run (a smoke test of this script)")
    args = parser.parse_args(argv)
    if args.quick:
        args.mb, args.runs = 0.2, 1
    payload = bytes(range(256)) * int(args.mb * 1_000_000 / 256)

    def source(conn) -> None:
        conn.read_until(b"\n")
        conn.sendall(payload)

    with tempfile.TemporaryDirectory(prefix="tlslab-bench-") as name:
        return run(Path(name), payload, source, args.runs)


def run(folder: Path, payload: bytes, source, runs: int) -> int:
    """Capture, decrypt with both tools, print the table (files live in ``folder``)."""
    keylog = folder / "keys.txt"
    ca = CertificateAuthority("Bench CA")
    with TLSServer(ca.issue_server_cert("localhost", "127.0.0.1"), keylog=keylog, handler=source) as server:
        chunks = capture_download(server.address, client_context(ca), b"send\n")
    client = b"".join(c for d, _, c in chunks if d == "client")
    server_bytes = b"".join(c for d, _, c in chunks if d == "server")
    captured_mb = (len(client) + len(server_bytes)) / 1e6

    ours: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        session = decrypt_session(client, server_bytes, keylog=keylog)
        ours.append(time.perf_counter() - started)
        if session.server_data != payload:
            raise SystemExit("tlslab.decrypt did not recover the payload")
    ours_s = statistics.median(ours)

    rows = [
        (f"capture size ({session.cipher_suite})", f"{captured_mb:7.2f} MB", "", ""),
        ("tlslab.decrypt time (median)", f"{ours_s:7.3f} s", "", ""),
        ("tlslab.decrypt throughput", f"{captured_mb / ours_s:7.1f} MB/s", "≥ tshark", None),
    ]
    tshark = shutil.which("tshark")
    if tshark:
        export = export_pcap(chunks, folder / "bench.pcap", keylog=keylog)
        command = [tshark, *export.tshark_options, "-q", "-z", "follow,tls,raw,0"]
        theirs: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, check=True)
            theirs.append(time.perf_counter() - started)
        # follow,raw prints the decrypted stream as hex: check that tshark really decrypted it all.
        decrypted = sum(len(line.strip()) // 2 for line in result.stdout.splitlines() if line.strip() and all(c in b"0123456789abcdef" for c in line.strip()))
        if decrypted < len(payload):
            raise SystemExit(f"tshark decrypted only {decrypted} of {len(payload)} bytes")
        tshark_s = statistics.median(theirs)
        # The same command without the key log: tshark's start-up and TCP reassembly, no decryption.
        plain = [tshark, "-r", str(export.pcap), "-q", "-z", "follow,tls,raw,0"]
        started = time.perf_counter()
        subprocess.run(plain, capture_output=True, check=True)
        baseline_s = time.perf_counter() - started
        rows += [
            ("tshark time (median, same pcap + key log)", f"{tshark_s:7.3f} s", "", ""),
            ("tshark throughput", f"{captured_mb / tshark_s:7.1f} MB/s", "", ""),
            ("tshark without the key log (no decryption)", f"{baseline_s:7.3f} s", "", ""),
        ]
        met = "yes" if captured_mb / ours_s >= captured_mb / tshark_s else "no"
    else:
        rows.append(("tshark", "not installed", "", ""))
        met = ""
    print(f"{'figure':<44} {'value':>14}  {'target':>9}  met")
    for label, value, target, ok in rows:
        print(f"{label:<44} {value:>14}  {target:>9}  {met if ok is None else ok}")
        if os.environ.get("TLSLAB_BENCH_ROWS"):  # machine-readable, for bench/run.py
            print("ROW", label, value.strip(), target, met if ok is None else ok, sep="\t")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
