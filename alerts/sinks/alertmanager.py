"""The Prometheus Alertmanager sink: each notification POSTed to the v2 API
(`POST <url>/api/v2/alerts`, a JSON list of one alert), so that teams that
run Alertmanager route, silence, inhibit and deduplicate our alerts there.

Labels (Alertmanager's identity of an alert; set once per alert, see below):

- `alertname`: `Watchdog` + the alert kind in CamelCase (`WatchdogOutage`,
  `WatchdogDrift`, `WatchdogAnomaly`, `WatchdogManeuver`), except the
  heartbeat, which is `Watchdog`: the always-firing dead man's switch of
  the kube-prometheus convention.
- `key`: the alert's stable key (`outage:farm-oms-1`).
- `node`: the first root-cause node; `root_cause`: all of them, comma-joined
  (both left out when the alert has none).
- `severity`: `critical`, `warning` or `info`.
- `critical`: `"true"` when the alert takes a critical node down, else `"false"`.
- the alert's own labels (node labels used for routing), names made valid
  for Alertmanager (`[a-zA-Z_][a-zA-Z0-9_]*`, other characters become `_`);
  they never override the labels above.

Alertmanager deduplicates on the label set, so it must not change while the
alert lives, or Alertmanager would see a second alert and let the first one
linger until it times out. The labels of the first delivery are kept in the
receipt and reused for every later notification of the same alert; two
daemons in HA posting the same alert build the same labels, so they make one.

Annotations (free to change on every post): `summary`, `description` (the
root cause, each critical node taken down with its state, recovery target
and time left, the number of other nodes down) and `collateral_count`.

Times: `startsAt` is when the alert started. While it fires, `endsAt` is
now + `resolve_timeout_s` (5 minutes), as Prometheus does: Alertmanager
resolves an alert whose client stopped re-sending, so the firing alerts are
re-posted (`refresh`) every `resend_interval_s` (a quarter of the timeout);
a daemon that dies stops refreshing, and its alerts resolve in Alertmanager
within the timeout, while the `Watchdog` heartbeat stops too.
A `resolved` notification sets `endsAt` to the moment the alert resolved.

Notices (a maneuver started, refused or ended, a silence added or ended)
are not posted: they are announcements, not alerts, and Alertmanager has
no place for them. Posted firing, one would page like an alert and stay
until it timed out; posted already resolved (`endsAt` = `startsAt`), it
would reach no one: Alertmanager sends no resolution for an alert it never
notified firing (prometheus/alertmanager#1198), and its API lists no
resolved alert. `send` takes a notice as delivered without a request:
maneuvers and silences are heard on the console, Slack or the webhook.

Errors are mapped as for the webhook sink (`alerts.sinks.webhook`): 408, 429,
5xx, connection failures and timeouts are transient, other statuses
permanent; messages never carry the URL's credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from alerts.model import Alert, AlertKind, Notification, Receipt, SinkError
from alerts.sinks.webhook import format_time, post_json
from alerts.templates import Templates, builtin

__all__ = ["ALERTNAMES", "AlertmanagerSink", "render_alert", "render_labels"]

ALERTNAMES: Mapping[AlertKind, str] = {
    "outage": "WatchdogOutage",
    "drift": "WatchdogDrift",
    "anomaly": "WatchdogAnomaly",
    "maneuver": "WatchdogManeuver",
    "heartbeat": "Watchdog",
    "impaired": "WatchdogImpaired",
}

log = logging.getLogger(__name__)

_API_PATH = "/api/v2/alerts"
_DEFAULT_RESOLVE_TIMEOUT_S = 300.0
# Prometheus re-sends every minute an alert that ends in four.
_RESENDS_PER_TIMEOUT = 4
_RECEIPT_LABELS = "labels"
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


class AlertmanagerSink:
    """Posts notifications to the Alertmanager at `url` (its base URL, as in
    `http://alertmanager:9093`; credentials in it become basic auth).

    `generator_url` is the link Alertmanager shows as the alert's source
    (the daemon's API). The client belongs to the caller, who closes it.
    `peers`: the other Alertmanagers of its cluster, posted the same; a
    send succeeds when one of them took it. `replica`: the name of the
    watchdog replica that sends, in an annotation.
    """

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        generator_url: str,
        *,
        name: str = "alertmanager",
        resolve_timeout_s: float = _DEFAULT_RESOLVE_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        templates: Templates | None = None,
        replica: str | None = None,
        peers: Sequence[str] = (),
    ) -> None:
        self._templates = templates
        # The other Alertmanagers of its cluster: each gets every alert (they
        # deduplicate among themselves), and one answering is enough.
        self._peers = [p.rstrip("/") + _API_PATH for p in peers]
        # One of several replicas that all post the same alerts: named in an
        # annotation, never a label (Alertmanager deduplicates by labels).
        self._replica = replica
        self._url = url.rstrip("/") + _API_PATH
        self._client = client
        self._generator_url = generator_url
        self._name = name
        self._resolve_timeout_s = resolve_timeout_s
        self._clock = clock

    @property
    def name(self) -> str:
        return self._name

    @property
    def resend_interval_s(self) -> float:
        """How often a firing alert must be re-sent so Alertmanager keeps it."""
        return self._resolve_timeout_s / _RESENDS_PER_TIMEOUT

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        if notification.event == "notice":
            return Receipt(self._name)  # not for Alertmanager: see the module docstring
        labels = _labels_from(previous) or render_labels(notification.alert)
        if notification.event == "resolved":
            ends_at = notification.at
        else:
            ends_at = self._clock() + self._resolve_timeout_s
        body = render_alert(
            notification,
            labels,
            ends_at,
            self._generator_url,
            self._templates,
            replica=self._replica,
        )
        await self._post([body])
        return Receipt(self._name, {_RECEIPT_LABELS: json.dumps(labels, sort_keys=True)})

    async def refresh(self, firing: Sequence[tuple[Notification, Receipt | None]]) -> None:
        """Re-post every firing alert in one request, with `endsAt` pushed
        forward, as Prometheus re-sends its firing alerts: call it every
        `resend_interval_s`. Each alert keeps the labels of its receipt.
        Raises `SinkError`; a lost refresh is made good by the next one."""
        if not firing:
            return
        ends_at = self._clock() + self._resolve_timeout_s
        bodies = [
            render_alert(
                note,
                _labels_from(receipt) or render_labels(note.alert),
                ends_at,
                self._generator_url,
                self._templates,
                replica=self._replica,
            )
            for note, receipt in firing
        ]
        await self._post(bodies)

    async def _post(self, bodies: list[dict[str, Any]]) -> None:
        """`bodies` to the Alertmanager and each of its peers at once:
        `SinkError` (the first's) only when none took them."""
        targets = [self._url, *self._peers]
        outcomes = await asyncio.gather(
            *(post_json(self._client, url, bodies, sink=self._name) for url in targets),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        for error in errors:
            if not isinstance(error, SinkError):
                raise error
        if len(errors) == len(targets):
            raise errors[0]
        for error in errors:
            log.warning("an alertmanager of the cluster failed sink=%s error=%s", self._name, error)

    async def aclose(self) -> None:
        """Nothing to release: the client is the caller's."""


def render_labels(alert: Alert) -> dict[str, str]:
    """The label set of `alert`, as documented above."""
    labels = {_label_name(name): value for name, value in alert.labels.items() if value}
    labels["alertname"] = ALERTNAMES[alert.kind]
    labels["key"] = alert.key
    labels["severity"] = alert.severity
    labels["critical"] = "true" if alert.critical else "false"
    if alert.root_cause:
        labels["node"] = alert.root_cause[0]
        labels["root_cause"] = ",".join(alert.root_cause)
    return labels


def render_alert(
    notification: Notification,
    labels: Mapping[str, str],
    ends_at: float,
    generator_url: str,
    templates: Templates | None = None,
    *,
    replica: str | None = None,
) -> dict[str, Any]:
    """One alert of the v2 API's `postableAlerts` list; its `summary` and
    `description` are the parts of the template `alertmanager/KIND.j2`; the
    annotation `replica` names the replica that sent it, when given."""
    alert = notification.alert
    parts = (templates or builtin()).render("alertmanager", notification, notification.at)
    body: dict[str, Any] = {
        "labels": dict(labels),
        "annotations": {
            "summary": parts["summary"],
            "description": parts["description"],
            "collateral_count": str(len(alert.collateral)),
        },
        "startsAt": format_time(alert.started_at),
        "endsAt": format_time(ends_at),
    }
    if replica is not None:
        body["annotations"]["replica"] = replica
    if generator_url:
        body["generatorURL"] = generator_url
    return body


def _labels_from(previous: Receipt | None) -> dict[str, str] | None:
    """The labels of the first delivery, kept in its receipt."""
    if previous is None or _RECEIPT_LABELS not in previous.data:
        return None
    try:
        labels = json.loads(previous.data[_RECEIPT_LABELS])
    except ValueError:
        return None
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        return None
    return labels


def _label_name(name: str) -> str:
    """`name` made a valid Alertmanager label name."""
    valid = _INVALID_LABEL_CHARS.sub("_", name)
    return valid if valid and not valid[0].isdigit() else f"_{valid}"
