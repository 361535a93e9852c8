"""Docker Compose: the services of one compose project and what they depend
on, from its compose files (parsed YAML), merged in order as `docker
compose -f a.yml -f b.yml` merges them.

- **The host.** A compose project runs on one Docker host: shared fate. It
  becomes one `kind: host` node named after the project: the top-level
  `name:` of the files (the last file that has one; it must be a valid
  project name), else the `project` argument, else the name of the folder
  of the first document's source (the compose default; the source names
  are the files' paths); these two are lower-cased and stripped of what a
  project name may not hold, as compose does with a folder's name. If two
  projects share a Docker host, say so in the overlay.
- **Services** become `kind: service` nodes named `PROJECT/SERVICE`, so
  that the `db` of two projects are two nodes and no service is named like
  its host. Each `runs_on` the host. Its description names the service,
  its image and `deploy.replicas` (or the older `scale`) when given.
- **depends_on**, in the short form (a list of names) or the long one (a
  mapping of name to `condition`, `required`, `restart`), becomes one
  `depends_on` item per service: hard, or soft where `required: false`
  (compose then starts the service without it). A dependency with
  `condition: service_completed_successfully` is on a one-shot task (a
  migration) that must have run, not keep running: it is left out. A
  dependency on a service the files do not define, or on the service
  itself, is a finding (`unknown-service`, an error: compose refuses such
  files) and is left out.

Merging (the compose specification's rules for these keys): later files add
services and override a service's keys; `depends_on` is merged per
dependency in its long form, so an override file can add dependencies or
turn one `required: false`; `deploy.replicas`, `scale` and `name` are overridden.

Not resolved here: `extends`, `include`, `profiles` (every service is
imported, whatever profile it needs), `${VARIABLE}` interpolation and the
`!reset`/`!override` tags. For those, import the output of `docker compose
config`, which resolves them all into one file.

Bad input (not a mapping, services that are not a mapping, a depends_on of
the wrong shape, a name that cannot name a node) raises `InvalidInput`
naming the file and the path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from topology.document import Problem, quote
from topology.findings import Finding
from topology.sources import Imported
from topology.sources._input import Input, kind_of, origin, refuse

__all__ = ["convert"]

# The compose specification's rule for a project name.
_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_NOT_IN_PROJECT = re.compile(r"[^a-z0-9_-]")
_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


@dataclass(slots=True)
class _Service:
    """One service as the merged files say it."""

    depends_on: dict[str, dict[str, Any]] = field(default_factory=dict)
    replicas: int | None = None
    image: str | None = None


def convert(documents: Sequence[tuple[str, Any]], *, project: str | None = None) -> Imported:
    """The host and services of the compose project whose files are
    `documents` ((source name, parsed YAML) pairs, merged in order), as the
    module docstring says. Raises `InvalidInput` listing every problem."""
    if not documents:
        return Imported({}, (), origin("compose", documents))
    problems: list[Problem] = []
    services: dict[str, _Service] = {}
    named: str | None = None
    for source, document in documents:
        read = Input(problems, source)
        root = read.mapping(document, "", required=True)
        if root is None:
            continue
        if "name" in root:
            named = read.text(root["name"], "name", required=True) or named
            if named is not None and not _PROJECT.match(named):
                read.problem(
                    "name",
                    f"project name {quote(named)}: use lower-case letters, digits, - and _, "
                    "starting with a letter or digit",
                )
        for name, body in (read.mapping(root.get("services"), "services") or {}).items():
            _merge_service(read, services.setdefault(str(name), _Service()), body, name)
    refuse(problems)
    if not services:
        problems.append(Problem(documents[0][0], None, "services", "no service defined"))
    host = named or _project(documents, project, problems)
    refuse(problems)
    assert host is not None  # a missing name was a problem

    read = Input(problems, documents[0][0])
    findings: list[Finding] = []
    nodes: dict[str, dict[str, Any]] = {
        host: {"kind": "host", "description": f"Docker host of compose project {host}"}
    }
    for name, service in services.items():
        node = read.name(f"{host}/{name}", f"services.{name}", "service")
        if node is not None:
            nodes[node] = _node(host, name, service, services, findings)
    refuse(problems)
    return Imported(
        nodes={name: nodes[name] for name in sorted(nodes)},
        findings=tuple(sorted(findings, key=lambda f: (f.severity != "error", f.rule, f.nodes))),
        origin=origin("compose", documents),
    )


def _project(
    documents: Sequence[tuple[str, Any]], project: str | None, problems: list[Problem]
) -> str | None:
    """The project's name when no file names it: the argument, else the
    first file's folder, normalised as compose normalises a folder's name."""
    source = documents[0][0]
    given = project or PurePath(source).parent.name
    name = _NOT_IN_PROJECT.sub("", given.lower()).lstrip("_-")
    if not name:
        problems.append(
            Problem(
                source,
                None,
                "name",
                f"no project name: {quote(given)} leaves nothing a project name may hold; "
                "add 'name:' to the file, or give the project",
            )
        )
        return None
    return name


def _merge_service(read: Input, service: _Service, body: Any, name: Any) -> None:
    """Merges one file's definition of a service into `service`."""
    path = f"services.{name}"
    fields = read.mapping(body, path)
    if fields is None:
        return
    if "image" in fields:
        service.image = read.text(fields["image"], f"{path}.image") or service.image
    if "scale" in fields:
        service.replicas = read.integer(fields["scale"], f"{path}.scale")
    deploy = read.mapping(fields.get("deploy"), f"{path}.deploy") or {}
    if "replicas" in deploy:
        service.replicas = read.integer(deploy["replicas"], f"{path}.deploy.replicas")
    for dependency, settings in _depends_on(read, fields.get("depends_on"), f"{path}.depends_on"):
        service.depends_on[dependency] = {**service.depends_on.get(dependency, {}), **settings}


def _depends_on(read: Input, value: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    """The dependencies in the long form, whichever form was written."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        # The short form is the long one with compose's defaults written
        # out (merges apply to the long form).
        out = []
        for i, item in enumerate(value):
            name = read.text(item, f"{path}[{i}]", required=True)
            if name is not None:
                out.append((name, {"condition": "service_started", "required": True}))
        return out
    if not isinstance(value, Mapping):
        read.problem(path, f"expected a list of services or a mapping, got {kind_of(value)}")
        return []
    out = []
    for name, settings in value.items():
        where = f"{path}.{name}"
        fields = read.mapping(settings, where)
        if fields is None:
            continue
        kept: dict[str, Any] = {}
        if "required" in fields:
            if isinstance(fields["required"], bool):
                kept["required"] = fields["required"]
            else:
                read.problem(
                    f"{where}.required",
                    f"expected true or false, got {kind_of(fields['required'])}",
                )
        if "condition" in fields:
            condition = read.text(fields["condition"], f"{where}.condition", required=True)
            if condition is not None and condition not in _CONDITIONS:
                read.problem(
                    f"{where}.condition",
                    f"unknown condition {quote(condition)}: one of {', '.join(_CONDITIONS)}",
                )
            kept["condition"] = condition
        out.append((str(name), kept))
    return out


def _node(
    host: str,
    name: str,
    service: _Service,
    services: Mapping[str, _Service],
    findings: list[Finding],
) -> dict[str, Any]:
    node = f"{host}/{name}"
    description = f"compose service {name} of project {host}"
    if service.image:
        description += f", image {service.image}"
    if service.replicas is not None:
        description += f", {service.replicas} replica{'' if service.replicas == 1 else 's'}"
    body: dict[str, Any] = {"kind": "service", "description": description, "runs_on": [host]}
    needs: list[Any] = []
    for dependency, settings in service.depends_on.items():
        if settings.get("condition") == "service_completed_successfully":
            continue
        if dependency == name or dependency not in services:
            why = "itself" if dependency == name else f"{quote(dependency)}, which is not defined"
            findings.append(
                Finding(
                    "unknown-service",
                    "error",
                    (node,),
                    f"{node} depends on {why}: compose refuses to start it; left out",
                )
            )
            continue
        target = f"{host}/{dependency}"
        needs.append(
            target if settings.get("required", True) else {"any_of": [target], "soft": True}
        )
    if needs:
        body["depends_on"] = needs
    return body
