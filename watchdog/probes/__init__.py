"""Probes: how the daemon observes a target. One `Protocol`, one module per
kind, and `PROBE_KINDS`, the one registry from a kind's name in the file to
its spec and the way to build its probe.

A probe never raises for a failing target: `check()` returns a `ProbeResult`
whose reason says what went wrong. Probes run on asyncio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from watchdog.probes.exec import ExecProbe, ExecSpec
from watchdog.probes.http import DEFAULT_LIMITS, HttpClients, HttpProbe, HttpSpec
from watchdog.probes.prometheus import PrometheusProbe, PrometheusSpec
from watchdog.probes.result import ProbeResult
from watchdog.probes.tcp import TcpProbe, TcpSpec

__all__ = [
    "DEFAULT_LIMITS",
    "PROBE_KINDS",
    "ExecProbe",
    "ExecSpec",
    "HttpClients",
    "HttpProbe",
    "HttpSpec",
    "Probe",
    "ProbeKind",
    "ProbeResult",
    "PrometheusProbe",
    "PrometheusSpec",
    "TcpProbe",
    "TcpSpec",
]


class Probe(Protocol):
    """Something that checks one target."""

    async def check(self) -> ProbeResult:
        """The target's state now; never raises for a failing target."""
        ...


SpecT = TypeVar("SpecT")


@dataclass(frozen=True, slots=True)
class ProbeKind(Generic[SpecT]):
    """A kind of probe: its spec type, and how to build a probe from a spec
    and the resources probes share (the HTTP clients)."""

    spec: type[SpecT]
    build: Callable[[SpecT, HttpClients], Probe]


def _build_http(spec: HttpSpec, clients: HttpClients) -> Probe:
    return HttpProbe(spec, clients.client_for(spec))


def _build_tcp(spec: TcpSpec, clients: HttpClients) -> Probe:
    return TcpProbe(spec)


def _build_exec(spec: ExecSpec, clients: HttpClients) -> Probe:
    return ExecProbe(spec)


def _build_prometheus(spec: PrometheusSpec, clients: HttpClients) -> Probe:
    return PrometheusProbe(spec, clients.get(verify_tls=spec.server.verify_tls))


# A new kind: one module, one line here, its tests, one README line.
PROBE_KINDS: dict[str, ProbeKind[Any]] = {
    "http": ProbeKind(HttpSpec, _build_http),
    "tcp": ProbeKind(TcpSpec, _build_tcp),
    "exec": ProbeKind(ExecSpec, _build_exec),
    "prometheus": ProbeKind(PrometheusSpec, _build_prometheus),
}
