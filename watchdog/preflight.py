"""What `run` checks before it opens anything, beyond what `load_config`
finds in the file: shared by the daemon and `watchdog check`, so that a file
`check` passes is a file `run` starts with.

About the file (refused wherever it runs): the templates render for every
alert kind and event, the routes name only sinks the file configures. About
the machine (refused where the environment lacks it): the environment
variables that hold the secrets the file names are set (the Postgres
store's password among them), and, for `check`, the state file is the
watchdog's (or not there yet) in a directory that exists, or, for a
Postgres store, the `postgres` extra is installed (the server itself is not
asked: `check` reaches no network; `run` refuses to start without it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alerts.routing import Router
from alerts.templates import Templates
from topology import Problem
from topology.document import quote
from watchdog.config import DaemonConfig
from watchdog.probes.prometheus import PrometheusSpec
from watchdog.store import StoreError, check_state_file

__all__ = ["TEMPLATED", "Preflight", "preflight"]

# The sinks whose words come from templates: the built-in ones are checked
# too, since a user's folder may replace any of them.
TEMPLATED = ("console", "slack", "alertmanager")


@dataclass(frozen=True, slots=True)
class Preflight:
    """What would stop `run`: `problems` of the file itself, and what the
    `environment` of this machine lacks."""

    problems: tuple[Problem, ...] = ()
    environment: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing stops the start."""
        return not self.problems and not self.environment

    def start_error(self) -> str:
        """Every reason in one line, as the daemon's start error says them:
        `alerts.slack.token_env: the environment variable X is not set or empty`."""
        return "; ".join(f"{p.path}: {p.message}" for p in (*self.problems, *self.environment))


def preflight(
    config: DaemonConfig,
    environ: Mapping[str, str],
    *,
    templates: Templates | None = None,
    state: bool = False,
) -> Preflight:
    """Check what `Daemon.__init__` checks before it opens anything: the
    templates (`templates`, the daemon's own, or those of the file), the
    routes against the sinks, the secrets' variables in `environ`; with
    `state`, also the state file, read-only (the daemon leaves that to
    `Store.open`). Reads no secret's value but to see that it is there."""
    source, lines = config.source, config.lines
    problems: list[Problem] = []
    if templates is None:
        templates = Templates(config.alerts.templates)
    for message in templates.check(TEMPLATED):
        problems.append(Problem(source, lines.get("alerts.templates"), "alerts.templates", message))
    try:
        Router(config.alerts.routes, config.alerts.sink_names)
    except ValueError as err:
        problems.append(Problem(source, lines.get("alerts.routes"), "alerts.routes", str(err)))
    environment: list[Problem] = []
    slack = config.alerts.slack
    if slack is not None:
        for key, variable in (
            ("token_env", slack.token_env),
            ("webhook_url_env", slack.webhook_url_env),
        ):
            if variable is not None and not environ.get(variable):
                path = f"alerts.slack.{key}"
                message = f"the environment variable {variable} is not set or empty"
                environment.append(Problem(source, lines.get(path), path, message))
    for path, variable in _prometheus_variables(config):
        if not environ.get(variable):
            message = f"the environment variable {variable} is not set or empty"
            environment.append(Problem(source, lines.get(path), path, message))
    if config.state_url is not None:
        variable = config.state_password_env
        if variable is not None and not environ.get(variable):
            message = f"the environment variable {variable} is not set or empty"
            path = "state.password_env"
            environment.append(Problem(source, lines.get(path), path, message))
        if state and not _postgres_installed():
            message = (
                "the postgres extra is not installed: pip install 'service-watchdog[postgres]'"
            )
            environment.append(Problem(source, lines.get("state.url"), "state.url", message))
    elif state and config.state_path != ":memory:":
        trouble = _state_trouble(config.state_path)
        if trouble is not None:
            environment.append(Problem(source, lines.get("state.path"), "state.path", trouble))
    return Preflight(tuple(problems), tuple(environment))


def _prometheus_variables(config: DaemonConfig) -> list[tuple[str, str]]:
    """(path, variable) of every credential of a Prometheus the file asks:
    `defaults.prometheus`'s, and those a probe names itself."""
    found = []
    if config.prometheus is not None:
        for key, variable in config.prometheus.variables():
            found.append((f"defaults.prometheus.{key}", variable))
    for probe in config.probes:
        spec = probe.spec
        if not isinstance(spec, PrometheusSpec) or spec.server == config.prometheus:
            continue
        for key, variable in spec.server.variables():
            path = f"nodes.{probe.node}.probes[{probe.index}].{key}"
            if path not in config.lines:
                path = f"defaults.prometheus.{key}"  # the file's credentials, another TLS setting
            found.append((path, variable))
    return list(dict.fromkeys(found))


def _postgres_installed() -> bool:
    """Whether the Postgres backend (psycopg and its libpq) can be loaded."""
    try:
        import watchdog.db.postgres  # noqa: F401
    except ImportError:
        return False
    return True


def _state_trouble(path: str) -> str | None:
    """Why the daemon could not open its state file at `path`, found
    without touching it; None when it can."""
    try:
        check_state_file(path)
    except StoreError as err:
        return str(err)
    folder = Path(path).parent
    if not folder.is_dir():
        return f"{path}: no directory {quote(str(folder), 300)} for the state file: create it"
    target = path if Path(path).exists() else str(folder)
    if not os.access(target, os.R_OK | os.W_OK):
        return f"{path}: the state file cannot be written here: check the permissions of {target}"
    return None
