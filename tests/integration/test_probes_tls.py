"""The certificate of an https target: its expiry on every result, degraded
within the warning, down once expired, seen anew on a fresh connection
after a renewal, and a server that refuses new connections found out even
while a pooled connection still answers. Real HTTPS servers on loopback,
with certificates issued for the test (trustme) with chosen expiries."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import shutil
import ssl
import subprocess
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from daemons import started
from http_wire import MAX_REQUESTS_PER_CONNECTION, read_request, response
from prometheus_client.parser import text_string_to_metric_families
from waiting import until

from topology import State
from watchdog.probes import HttpClients, HttpProbe, HttpSpec, ProbeResult
from watchdog.probes.certificates import not_after

pytestmark = pytest.mark.anyio

DAY = 86400.0
# Certificates expire this far past a whole number of days from now, so the
# days a reason counts do not depend on how long the test takes.
HALF_DAY = datetime.timedelta(hours=12)
FRESH_S = 300.0  # the probes' interval between fresh connections, on a fake clock


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0, tzinfo=None)


def expiring_in(days: float) -> datetime.datetime:
    """A notAfter `days` (and half a day) from now; negative: in the past."""
    return utc_now() + datetime.timedelta(days=days) + (HALF_DAY if days >= 0 else -HALF_DAY)


def date_of(moment: datetime.datetime) -> str:
    return moment.date().isoformat()


def epoch(moment: datetime.datetime) -> float:
    return moment.replace(tzinfo=datetime.UTC).timestamp()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def issue(ca: trustme.CA, expires: datetime.datetime) -> trustme.LeafCert:
    # notBefore well before any notAfter of these tests, expired ones included.
    return ca.issue_cert(
        "127.0.0.1", not_before=utc_now() - datetime.timedelta(days=400), not_after=expires
    )


class TlsServer:
    """A keep-alive HTTPS server on loopback answering every request 200
    `ok`. `renew` gives new handshakes another certificate (open
    connections keep theirs); `stop_listening` refuses new connections while
    the open ones still answer."""

    def __init__(self, cert: trustme.LeafCert) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.context)
        self.port = 0
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                await read_request(reader)
                writer.write(response(200, b"ok"))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the probe closed its connection
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        finally:
            writer.transport.abort()
            self._tasks.discard(task)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]

    def renew(self, cert: trustme.LeafCert) -> None:
        cert.configure_cert(self.context)

    def stop_listening(self) -> None:
        assert self._server is not None
        self._server.close()  # the listener only (Python 3.11): open connections go on

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/health"


@contextlib.asynccontextmanager
async def serving(cert: trustme.LeafCert) -> AsyncIterator[TlsServer]:
    server = TlsServer(cert)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def clients(ca: trustme.CA) -> AsyncIterator[HttpClients]:
    """Shared clients that trust the test's CA (verify_tls: true)."""
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    async with HttpClients(ssl_context=trust) as shared:
        yield shared


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def probe(clients: HttpClients, url: str, clock: Clock | None = None, **spec: Any) -> HttpProbe:
    probe_spec = HttpSpec(url, **spec)
    return HttpProbe(
        probe_spec,
        clients.client_for(probe_spec),
        fresh_connection_s=FRESH_S,
        clock=clock or Clock(),
    )


async def check(clients: HttpClients, url: str, **spec: Any) -> ProbeResult:
    return await probe(clients, url, **spec).check()


@pytest.mark.parametrize("verify_tls", [True, False])
async def test_a_certificate_far_from_expiry_is_up_and_its_expiry_is_on_the_result(
    ca: trustme.CA, clients: HttpClients, verify_tls: bool
) -> None:
    expires = expiring_in(100)
    async with serving(issue(ca, expires)) as server:
        result = await check(clients, server.url, verify_tls=verify_tls)
    assert (result.state, result.reason) == (State.UP, "ok")
    assert result.tls_expires_at == epoch(expires)


async def test_a_certificate_expiring_within_the_warning_is_degraded_saying_when(
    ca: trustme.CA, clients: HttpClients
) -> None:
    expires = expiring_in(5)
    async with serving(issue(ca, expires)) as server:
        result = await check(clients, server.url)
    sign = f"certificate expires in 5d ({date_of(expires)}), warning at 14d"
    assert (result.state, result.reason) == (State.DEGRADED, sign)
    # An early sign (an anomaly alert), not an outage.
    assert result.anomalies == (sign,)
    assert result.tls_expires_at == epoch(expires)


@pytest.mark.parametrize(
    ("warning_s", "state"),
    [(3 * DAY, State.UP), (0.0, State.UP), (6 * DAY, State.DEGRADED)],
)
async def test_the_warning_is_the_probes_own_and_zero_judges_nothing(
    ca: trustme.CA, clients: HttpClients, warning_s: float, state: State
) -> None:
    async with serving(issue(ca, expiring_in(5))) as server:
        result = await check(clients, server.url, tls_expiry_warning_s=warning_s)
    assert result.state is state
    assert result.tls_expires_at is not None  # reported whatever the judgement


async def test_slow_and_expiring_says_both(ca: trustme.CA, clients: HttpClients) -> None:
    expires = expiring_in(2)
    async with serving(issue(ca, expires)) as server:
        result = await check(clients, server.url, latency_threshold_s=1e-6)
    sign = f"certificate expires in 2d ({date_of(expires)}), warning at 14d"
    assert result.state is State.DEGRADED
    assert result.reason.startswith("slow: ")
    assert result.reason.endswith(f"; {sign}")
    assert result.anomalies == (sign,)


async def test_an_expired_certificate_is_down_unverified_too(
    ca: trustme.CA, clients: HttpClients
) -> None:
    expired = expiring_in(-3)
    async with serving(issue(ca, expired)) as server:
        unverified = await check(clients, server.url, verify_tls=False)
        verified = await check(clients, server.url)
        unjudged = await check(clients, server.url, verify_tls=False, tls_expiry_warning_s=0)
    assert (unverified.state, unverified.reason) == (
        State.DOWN,
        f"certificate expired 3d ago ({date_of(expired)})",
    )
    assert unverified.tls_expires_at == epoch(expired)
    # Verifying, the handshake fails: no certificate to report.
    assert (verified.state, verified.reason) == (State.DOWN, "tls: certificate has expired")
    assert verified.tls_expires_at is None
    assert (unjudged.state, unjudged.tls_expires_at) == (State.UP, epoch(expired))


async def test_a_failure_after_the_handshake_keeps_its_reason_and_the_expiry(
    ca: trustme.CA, clients: HttpClients
) -> None:
    expires = expiring_in(5)
    async with serving(issue(ca, expires)) as server:
        result = await check(clients, server.url, expect_status=[503])
    assert (result.state, result.reason) == (State.DOWN, "status 200")
    assert result.tls_expires_at == epoch(expires)


async def test_a_plain_http_target_has_no_certificate(clients: HttpClients) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(200, b"ok"))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await check(clients, f"http://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()
    assert (result.state, result.tls_expires_at) == (State.UP, None)


async def test_a_renewed_certificate_is_seen_at_the_next_fresh_connection_and_kept(
    ca: trustme.CA, clients: HttpClients
) -> None:
    old, new = expiring_in(5), expiring_in(90)
    clock = Clock()
    async with serving(issue(ca, old)) as server:
        watch = probe(clients, server.url, clock)
        first = await watch.check()
        server.renew(issue(ca, new))
        clock.now += 10
        pooled = await watch.check()  # the kept-alive connection: the old certificate
        clock.now += FRESH_S
        fresh = await watch.check()
        clock.now += 10
        after = await watch.check()  # pooled again, on the older connection
        connections = server.connections
    assert [r.tls_expires_at for r in (first, pooled)] == [epoch(old)] * 2
    assert [r.state for r in (first, pooled)] == [State.DEGRADED] * 2
    assert [(r.state, r.reason) for r in (fresh, after)] == [(State.UP, "ok")] * 2
    assert [r.tls_expires_at for r in (fresh, after)] == [epoch(new)] * 2
    assert connections == 2


async def test_a_server_refusing_new_connections_is_down_at_the_fresh_run_and_stays_down(
    ca: trustme.CA, clients: HttpClients
) -> None:
    clock = Clock()
    async with serving(issue(ca, expiring_in(100))) as server:
        watch = probe(clients, server.url, clock)
        first = await watch.check()
        server.stop_listening()
        clock.now += 10
        pooled = await watch.check()  # the open connection still answers
        clock.now += FRESH_S
        fresh = await watch.check()
        clock.now += 10
        next_run = await watch.check()  # a fresh connection again, until one works
    assert [r.state for r in (first, pooled)] == [State.UP, State.UP]
    assert [(r.state, r.reason) for r in (fresh, next_run)] == [(State.DOWN, "connect refused")] * 2


async def test_a_run_that_opens_a_new_connection_anyway_puts_off_the_forced_one(
    ca: trustme.CA, clients: HttpClients
) -> None:
    clock = Clock()
    async with serving(issue(ca, expiring_in(100))) as server:
        watch = probe(clients, server.url, clock)  # counts from its creation
        clock.now += 200
        await watch.check()  # nothing pooled: a new connection, counted
        clock.now += 110
        await watch.check()  # 310s after the creation, 110s after the new one: pooled
        pooled = server.connections
        clock.now += 190
        await watch.check()  # 300s after the new connection: a fresh one
        connections = server.connections
    assert (pooled, connections) == (1, 2)


async def test_the_probes_of_one_origin_share_fresh_connections_and_what_they_saw(
    ca: trustme.CA, clients: HttpClients
) -> None:
    old, new = expiring_in(30), expiring_in(90)
    clock = Clock()
    async with serving(issue(ca, old)) as server:
        health = probe(clients, server.url, clock)
        ready = probe(clients, f"https://127.0.0.1:{server.port}/ready", clock)
        await health.check()
        await ready.check()
        server.renew(issue(ca, new))
        clock.now += FRESH_S
        renewed = await health.check()  # the origin's fresh connection
        shared = await ready.check()  # pooled (the old certificate), not forced again
        connections = server.connections
    assert (renewed.tls_expires_at, shared.tls_expires_at) == (epoch(new), epoch(new))
    assert connections == 2


# --- the daemon: status, metrics, the node's state ---------------------------


def estate(url: str, state: Path) -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        state: {{path: {state}}}
        alerts: {{settle: 0s}}
        nodes:
          storefront:
            probes:
              - http: {url}
                verify_tls: false        # the test's CA is not in the system's store
                interval: 100ms
                failure_threshold: 1
                success_threshold: 1
          catalog:
            probes:
              - http: {url}
                verify_tls: false
                tls_expiry_warning: 3d
                interval: 100ms
                failure_threshold: 1
                success_threshold: 1
        """
    )


def gauges(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels, sample.value


async def test_the_daemon_shows_the_expiry_in_status_and_metrics_and_degrades_the_node(
    ca: trustme.CA, tmp_path: Path
) -> None:
    expires = expiring_in(9)
    async with serving(issue(ca, expires)) as server:
        path = tmp_path / "estate.yaml"
        path.write_text(estate(server.url, tmp_path / "history.db"))
        async with (
            started(path) as daemon,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}", trust_env=False) as api,
        ):

            async def probed() -> dict[str, Any] | None:
                nodes = {n["node"]: n for n in (await api.get("/api/v1/status")).json()["nodes"]}
                done = all(n["probes"][0].get("tls_expires_at") for n in nodes.values())
                return nodes if done else None

            nodes = await until(probed, awaited="both probes' certificates in the status")
            metrics = (await api.get("/metrics")).text

            async def alerted() -> list[Any]:
                alerts: list[Any] = (await api.get("/api/v1/alerts")).json()["alerts"]
                return alerts

            alerts = await until(alerted, awaited="an alert")
    storefront, catalog = nodes["storefront"], nodes["catalog"]
    assert (storefront["observed"], storefront["effective"]) == ("degraded", "degraded")
    shown = storefront["probes"][0]
    assert shown["last_reason"] == (
        f"certificate expires in 9d ({date_of(expires)}), warning at 14d"
    )
    assert shown["tls_expires_at"] == expires.isoformat() + "Z"
    assert shown["tls_days_left"] == 9
    assert catalog["observed"] == "up"
    assert catalog["probes"][0]["tls_days_left"] == 9
    # An early sign: an anomaly alert, for a non-critical node too.
    assert [(a["key"], a["kind"], a["severity"]) for a in alerts] == [
        ("anomaly:storefront", "anomaly", "warning")
    ]
    assert "certificate expires in 9d" in alerts[0]["summary"]
    # One series per https probe: when its certificate expires.
    assert sorted(
        (labels["node"], labels["probe"], value)
        for labels, value in gauges(metrics, "watchdog_probe_tls_expiry_timestamp_seconds")
    ) == [
        ("catalog", "catalog#0", epoch(expires)),
        ("storefront", "storefront#0", epoch(expires)),
    ]
    if shutil.which("promtool") is not None:  # Debian's prometheus; CI installs it
        checked = subprocess.run(
            ["promtool", "check", "metrics"],
            input=metrics,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


# --- reading notAfter ---------------------------------------------------------


@pytest.mark.parametrize(
    "expires",
    [
        datetime.datetime(2027, 1, 4, 12, 30, 5),
        datetime.datetime(1999, 12, 31, 23, 59, 59),  # UTCTime, 19xx
        datetime.datetime(2049, 12, 31, 23, 59, 59),  # UTCTime, 20xx
        datetime.datetime(2051, 6, 1),  # GeneralizedTime from 2050 on
    ],
)
def test_not_after_reads_the_der_of_a_certificate(
    ca: trustme.CA, expires: datetime.datetime
) -> None:
    cert = ca.issue_cert("127.0.0.1", not_before=datetime.datetime(1990, 1, 1), not_after=expires)
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    assert not_after(der) == epoch(expires)


def test_not_after_says_none_for_what_is_not_a_certificate(ca: trustme.CA) -> None:
    cert = ca.issue_cert("127.0.0.1")
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    for garbage in (b"", b"\x30", b"\x30\x82\xff\xff", der[:60], b"\x04\x03abc", b"\x30\x85" + der):
        assert not_after(garbage) is None
