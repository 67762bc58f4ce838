"""Short-lived certificates, a rotator that renews them while the service keeps serving, and
revocation that takes effect on the next connection.

A certificate that lives ten seconds cannot be stolen for long. The price: it must be renewed,
automatically, well before it expires, without dropping a single connection::

    ca = CertificateAuthority("Rotation CA")
    rotator = Rotator(ca, "localhost", "127.0.0.1", lifetime=10, name="orders")
    server = TLSServer(rotator.current, client_cert="required", client_ca=ca)
    rotator.attach(server)                    # each renewal goes into the running server
    with server, rotator:
        ...                                   # clients connect; certificates come and go

:func:`run_rotation` is the whole experiment: a server and a client, both with short-lived
certificates and both rotated, and a client thread connecting every 20 ms throughout; it returns
how many connections were made and how many failed, and the :class:`Timeline` to draw
(``plots.rotation_timeline``).

Two details of real clocks. X.509 dates are whole seconds, so a certificate issued at 12:00:00.9
starts at 12:00:00; and OpenSSL compares dates to the second: a certificate valid from 12:00:00
until 12:00:10 is accepted from 12:00:00.000 and refused from 12:00:10.000 on. Short-lived
certificates use real "now"-based dates, never the course's fixed ``COURSE_VALIDITY``.

A server swaps its certificate (``TLSServer.reload_certificate``) or revocation list
(``TLSServer.reload_crl``) by building a fresh ``SSLContext`` and putting it in place of the old
one: connections already open finish with the old certificate, the next one gets the new.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .client import connect
from .explain import Diagnosis
from .pki import CertificateAuthority, Credential
from .servers import TLSServer, _stop_hooks

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CertificateSpan",
    "RotationResult",
    "Rotator",
    "Timeline",
    "TimelineEvent",
    "revoke",
    "run_rotation",
    "short_lived_cert",
    "stop_all_rotators",
    "validity_from_now",
]


def validity_from_now(lifetime: float, now: float | None = None) -> tuple[dt.datetime, dt.datetime]:
    """``(not_before, not_after)`` for a certificate living ``lifetime`` seconds from now.

    X.509 dates hold whole seconds: ``not_before`` is now rounded down, and the lifetime is
    rounded to whole seconds (at least one).
    """
    if not lifetime or lifetime <= 0 or math.isnan(lifetime):
        raise ValueError(f"a certificate's lifetime must be positive, not {lifetime!r}")
    start = math.floor(time.time() if now is None else now)
    seconds = max(1, round(lifetime))
    begin = dt.datetime.fromtimestamp(start, dt.timezone.utc)
    return begin, begin + dt.timedelta(seconds=seconds)


def short_lived_cert(
    ca: CertificateAuthority,
    *identities: str,
    lifetime: float = 10.0,
    usage: str = "server",
    key_type: str = "ecdsa",
    common_name: str | None = None,
) -> Credential:
    """A certificate (and fresh key) for ``identities`` that is valid for ``lifetime`` seconds from now."""
    not_before, not_after = validity_from_now(lifetime)
    return ca.issue_cert(*identities, common_name=common_name, usage=usage, key_type=key_type,
                         not_before=not_before, not_after=not_after)


# --- the timeline -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateSpan:
    """One certificate on the timeline: when it was issued and how long it was valid (seconds
    since the timeline started)."""

    who: str
    generation: int  # 1 for the first certificate, 2 for the first renewal, …
    serial: str
    issued_at: float
    not_before: float
    not_after: float  # OpenSSL refuses the certificate from this moment on

    @property
    def lifetime(self) -> float:
        return self.not_after - self.not_before


@dataclass(frozen=True)
class TimelineEvent:
    """Something that happened: ``issued``, ``renewed``, ``connection``, ``revoked``, ``crl_reloaded``."""

    t: float
    kind: str
    who: str
    ok: bool | None = None
    detail: str = ""


class Timeline:
    """What happened, and when (seconds since the timeline started): certificates issued and
    renewed, connections made (ok or failed), revocations. Thread-safe; ``plot()`` draws it."""

    def __init__(self) -> None:
        self.started = time.time()
        self.certificates: list[CertificateSpan] = []
        self.events: list[TimelineEvent] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() - self.started

    def _at(self, moment: dt.datetime) -> float:
        return moment.timestamp() - self.started

    def certificate(self, who: str, credential: Credential, *, renewal: bool = False) -> None:
        cert = credential.certificate
        with self._lock:
            generation = 1 + sum(1 for c in self.certificates if c.who == who)
            t = self.now()
            self.certificates.append(CertificateSpan(
                who, generation, f"{cert.serial_number:x}"[:8], t,
                self._at(cert.not_valid_before_utc), self._at(cert.not_valid_after_utc),
            ))
            self.events.append(TimelineEvent(t, "renewed" if renewal else "issued", who, True, f"certificate #{generation}"))

    def connection(self, who: str, ok: bool, detail: str = "") -> None:
        with self._lock:
            self.events.append(TimelineEvent(self.now(), "connection", who, ok, detail))

    def mark(self, kind: str, who: str, detail: str = "") -> None:
        with self._lock:
            self.events.append(TimelineEvent(self.now(), kind, who, None, detail))

    def of_kind(self, kind: str) -> list[TimelineEvent]:
        with self._lock:
            return [e for e in self.events if e.kind == kind]

    @property
    def connections(self) -> list[TimelineEvent]:
        return self.of_kind("connection")

    @property
    def made(self) -> int:
        return len(self.connections)

    @property
    def failed(self) -> int:
        return sum(1 for e in self.connections if not e.ok)

    @property
    def renewals(self) -> int:
        return len(self.of_kind("renewed"))

    def __repr__(self) -> str:
        return (f"<Timeline {len(self.certificates)} certificates ({self.renewals} renewals), "
                f"{self.made} connections ({self.failed} failed)>")

    def plot(self, title: str | None = None) -> "Figure":
        from . import plots

        return plots.rotation_timeline(self, title=title)


# --- the rotator ------------------------------------------------------------------------------

_rotators: "set[Rotator]" = set()
_rotators_lock = threading.Lock()


def stop_all_rotators() -> None:
    """Stop every running rotator (also done by ``servers.stop_all()`` and at exit)."""
    with _rotators_lock:
        running = list(_rotators)
    for rotator in running:
        rotator.stop()


_stop_hooks.append(stop_all_rotators)


class Rotator:
    """Keeps a short-lived certificate fresh: renews it at ``renew_at`` (default 2/3) of its
    lifetime, and hands each new one to whatever is attached (a :class:`TLSServer`, which starts
    presenting it on its next connection, or any function taking the new credential).

    The first certificate is issued at once (``rotator.current``), so a server can be built with
    it; ``start()`` (or ``with rotator:``) runs the renewals in a background thread.
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        *identities: str,
        lifetime: float = 10.0,
        renew_at: float = 2 / 3,
        usage: str = "server",
        key_type: str = "ecdsa",
        name: str | None = None,
        common_name: str | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        if not identities:
            raise ValueError("a rotated certificate needs at least one identity (host name, IP address or URI)")
        if not 0 < renew_at < 1:
            raise ValueError(f"renew_at is a fraction of the lifetime, between 0 and 1 (not {renew_at!r})")
        validity_from_now(lifetime)  # checks the lifetime
        self.ca = ca
        self.identities = identities
        self.lifetime = max(1, round(lifetime))
        self.renew_at = renew_at
        self.usage = usage
        self.key_type = key_type
        self.name = name or identities[0]
        self.common_name = common_name
        self.timeline = timeline
        self.rotations = 0
        self.errors: list[str] = []  # renewals that failed (the old certificate stays in place)
        self._targets: list[Callable[[Credential], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current = self._issue()
        if timeline is not None:
            timeline.certificate(self.name, self._current)

    def _issue(self) -> Credential:
        return short_lived_cert(self.ca, *self.identities, lifetime=self.lifetime, usage=self.usage,
                                key_type=self.key_type, common_name=self.common_name)

    @property
    def current(self) -> Credential:
        """The certificate to present now."""
        with self._lock:
            return self._current

    def attach(self, target: TLSServer | Callable[[Credential], None]) -> "Rotator":
        """Send every renewed certificate to ``target``: a server (swapped into its live
        context) or a function. A server not yet presenting the current certificate gets it now."""
        if isinstance(target, TLSServer):
            server = target
            if server.credential.certificate != self.current.certificate:
                server.reload_certificate(self.current)
            target = server.reload_certificate
        with self._lock:
            self._targets.append(target)
        return self

    def renews_in(self) -> float:
        """Seconds until the next renewal is due (negative: overdue)."""
        cert = self.current.certificate
        start = cert.not_valid_before_utc.timestamp()
        life = cert.not_valid_after_utc.timestamp() - start
        return start + self.renew_at * life - time.time()

    def renew(self) -> Credential:
        """Issue the next certificate now and hand it to every target."""
        fresh = self._issue()
        with self._lock:
            self._current = fresh
            self.rotations += 1
            targets = list(self._targets)
        for target in targets:
            target(fresh)
        if self.timeline is not None:
            self.timeline.certificate(self.name, fresh, renewal=True)
        return fresh

    def _loop(self) -> None:
        while not self._stop.wait(timeout=max(0.0, self.renews_in())):
            try:
                self.renew()
            except Exception as exc:  # never print from a thread; try again a little later
                self.errors.append(f"{type(exc).__name__}: {exc}")
                if self._stop.wait(timeout=0.2):
                    return

    # Lifecycle
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "Rotator":
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"tlslab-rotator-{self.name}", daemon=True)
        with _rotators_lock:
            _rotators.add(self)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._thread = None
        with _rotators_lock:
            _rotators.discard(self)

    def __enter__(self) -> "Rotator":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        share = "2/3" if abs(self.renew_at - 2 / 3) < 1e-9 else f"{self.renew_at:.0%}"
        state = "running" if self.running else "stopped"
        return (f"<Rotator {self.name!r}: {self.lifetime} s certificates, renewed at {share} of their life; "
                f"{self.rotations} rotation(s); {state}>")


# --- revocation -------------------------------------------------------------------------------


def revoke(ca: CertificateAuthority, credential: Credential, *servers: TLSServer,
           timeline: Timeline | None = None, who: str | None = None) -> bytes:
    """Revoke ``credential`` and reload the CA's new revocation list into each server; the
    revoked certificate is refused from its next connection on. Returns the CRL (PEM)."""
    ca.revoke(credential)
    crl = ca.crl_pem()
    for server in servers:
        server.reload_crl(crl)
    if timeline is not None:
        timeline.mark("revoked", who or credential.common_name, f"serial {credential.certificate.serial_number:x}"[:15])
    return crl


# --- the experiment ---------------------------------------------------------------------------


@dataclass
class RotationResult:
    """How a rotation run went: connections made and failed across the rotations."""

    lifetime: int
    renew_at: float
    rotate: bool
    rotate_client: bool
    rotations: int  # renewals of the server's certificate
    client_rotations: int
    made: int
    failed: int
    seconds: float
    failures: list[Diagnosis] = field(default_factory=list, repr=False)
    timeline: Timeline = field(default_factory=Timeline, repr=False)

    @property
    def ok(self) -> bool:
        return self.made > 0 and self.failed == 0

    def failure_keys(self) -> dict[str, int]:
        """How many failed connections per diagnosis key (``{"expired": 120}``)."""
        counts: dict[str, int] = {}
        for diagnosis in self.failures:
            counts[diagnosis.key] = counts.get(diagnosis.key, 0) + 1
        return counts

    def failure_kinds(self) -> dict[tuple[str, str], int]:
        """How many failed connections per (diagnosis key, who refused): ``{("expired", "client"): 90}``."""
        counts: dict[tuple[str, str], int] = {}
        for diagnosis in self.failures:
            counts[(diagnosis.key, diagnosis.who)] = counts.get((diagnosis.key, diagnosis.who), 0) + 1
        return counts

    def rows(self) -> list[tuple[str, str]]:
        rows = [
            ("certificate lifetime", f"{self.lifetime} s"),
            ("renewed at", f"{self.renew_at:.0%} of the lifetime" if self.rotate else "never (no rotator)"),
            ("rotations (server certificate)", str(self.rotations)),
            ("rotations (client certificate)", str(self.client_rotations)),
            ("connections made", str(self.made)),
            ("connections failed", str(self.failed)),
        ]
        for (key, who), count in self.failure_kinds().items():
            what = next(d.what for d in self.failures if (d.key, d.who) == (key, who))
            rows.append((f"failed: {key} ({who} refused)", f"{count} × {what}"))
        return rows

    def __repr__(self) -> str:
        verdict = "no connection failed" if self.failed == 0 else f"{self.failed} connection(s) failed"
        how = f"{self.rotations} rotation(s)" if self.rotate else "no rotation"
        return f"<RotationResult {self.lifetime} s certificates, {how}: {verdict}>"

    def _repr_html_(self) -> str:
        colour = "#27ae60" if self.failed == 0 else "#c0392b"
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self.rows()
        )
        title = "✓ no connection failed" if self.failed == 0 else f"✗ {self.failed} connection(s) failed"
        return (f"<div class='tlslab-rotation' style='border-left:4px solid {colour};padding-left:.6em'>"
                f"<b>{title}</b><table>{body}</table></div>")

    def plot(self) -> "Figure":
        from . import plots

        if not self.rotate:
            how = "never renewed"
        elif not self.rotate_client:
            how = f"the server's renewed at {self.renew_at:.0%} of their life, the client's never"
        else:
            how = f"renewed at {self.renew_at:.0%} of their life"
        return plots.rotation_timeline(self.timeline, title=f"{self.lifetime}-second certificates, {how}")


def run_rotation(
    lifetime: float = 3,
    rotations: int = 3,
    *,
    renew_at: float = 2 / 3,
    interval: float = 0.02,
    rotate: bool = True,
    rotate_client: bool = True,
    ca: CertificateAuthority | None = None,
    max_seconds: float = 120.0,
) -> RotationResult:
    """Rotation under load: a mutual-TLS server and its client, both with ``lifetime``-second
    certificates, and a client connecting every ``interval`` seconds while the server's
    certificate is renewed ``rotations`` times (the client's too, with ``rotate_client``).

    The run lasts until the last renewal, and then until the certificate it replaced would have
    expired. With ``rotate=False`` nothing is renewed, over the same length of time: the first
    connection after the certificates expire fails (``expired``), and so do all after it.
    """
    if rotations < 1:
        raise ValueError("rotations must be at least 1")
    if interval <= 0:
        raise ValueError("interval must be positive")
    ca = ca or CertificateAuthority("Rotation CA")
    timeline = Timeline()
    server_rot = Rotator(ca, "localhost", "127.0.0.1", lifetime=lifetime, renew_at=renew_at, usage="server",
                         name="server", timeline=timeline)
    client_rot = Rotator(ca, "spiffe://course.test/client", lifetime=lifetime, renew_at=renew_at, usage="client",
                         name="client", common_name="client", timeline=timeline)
    life = server_rot.lifetime
    tail = (1 - renew_at) * life  # after the last renewal: until the replaced certificate expires
    server = TLSServer(server_rot.current, name="rotation-demo", client_cert="required", client_ca=ca, handler="echo")
    server_rot.attach(server)
    failures: list[Diagnosis] = []
    deadline = time.monotonic() + max_seconds
    with server:
        if rotate:
            server_rot.start()
            if rotate_client:
                client_rot.start()
        else:  # the same length of time as a run with renewals
            deadline = min(deadline, time.monotonic() + rotations * renew_at * life + tail + 1)
        done_at: float | None = None
        next_at = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now >= deadline or (done_at is not None and now >= done_at):
                    break
                if rotate and done_at is None and server_rot.rotations >= rotations:
                    done_at = now + tail
                report = connect(server, trust=ca, cert=client_rot.current, send=b"ping", timeout=5.0)
                ok = report.ok and report.reply == b"ping"
                detail = "" if ok else (report.diagnosis.key if report.diagnosis else "no echo")
                timeline.connection("client", ok, detail)
                if not ok and report.diagnosis is not None:
                    failures.append(report.diagnosis)
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    next_at = time.monotonic()
        finally:
            server_rot.stop()
            client_rot.stop()
    return RotationResult(
        lifetime=life, renew_at=renew_at, rotate=rotate, rotate_client=rotate and rotate_client, rotations=server_rot.rotations,
        client_rotations=client_rot.rotations, made=timeline.made, failed=timeline.failed,
        seconds=timeline.now(), failures=failures, timeline=timeline,
    )
