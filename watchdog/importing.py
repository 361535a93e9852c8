"""`watchdog import KIND SOURCE... [--overlay FILE]`: a topology file made
from the systems that know the estate, printed on stdout; and `fetch`, how
live sources (a cluster, a Backstage backend) are read for `sources:`.

The file printed is version 1, valid (it is checked before it is printed),
with a comment naming the source and the time at the top. With an overlay,
the overlay's other sections (defaults, server, alerts...) come with it and
its node entries are merged over the imported ones (see
`topology.sources.merge`). What the source gives rise to (a workload with no
disruption budget, an overlay entry that matches nothing) is said on
stderr; `watchdog check` says it again, with the lint findings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from topology import InvalidInput, Problem
from topology.document import MAX_FILE_BYTES, Document, printable, read_document, redact_urls
from topology.sources.declared import KINDS, SourceSpec, import_source
from topology.sources.merge import merge, to_python, to_yaml_node

__all__ = ["add_parser", "fetch", "run"]

EXIT_INVALID = 3

_EPILOG = """\
examples:
  kubectl get nodes,pods,replicasets,deployments,statefulsets,daemonsets,\\
poddisruptionbudgets -A -o json > cluster.json
  watchdog import kubernetes cluster.json --overlay overlay.yaml > estate.yaml
  watchdog import kubernetes --live --farm-label topology.kubernetes.io/zone
  watchdog import compose docker-compose.yml docker-compose.prod.yml
  watchdog import backstage catalog/ --overlay overlay.yaml
  watchdog import backstage --url https://backstage.example.com --token-env BACKSTAGE_TOKEN

The file can also name its sources, read by check, blast-radius and run:
  sources: [{kubernetes: cluster.json}, {compose: docker-compose.yml}]

exit: 0 printed (warnings on stderr), 3 a source or the overlay refused."""


def add_parser(commands: Any) -> None:
    """The `import` subcommand and its options."""
    parser = commands.add_parser(
        "import",
        help="print a topology file made from Kubernetes, docker compose or Backstage",
        description=(
            "Read what a system knows of the estate and print it as a topology file "
            "(version 1), merged under an overlay of what only people know: critical, "
            "recovery targets, probes, labels, extra requirements."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=tuple(KINDS), metavar="KIND", help=", ".join(KINDS))
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="kubernetes: a `kubectl get ... -A -o json` export, - for stdin; compose: "
        "compose files (later ones override, as with docker compose -f); backstage: "
        "catalog-info.yaml files or folders of them",
    )
    parser.add_argument(
        "--overlay",
        metavar="FILE",
        help="a topology file merged over the import: its nodes annotate or add, its "
        "other sections are kept",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="kubernetes: read the cluster named by the kubeconfig instead of a file "
        "(needs the kubernetes extra)",
    )
    parser.add_argument("--kubeconfig", metavar="PATH", help="kubernetes --live: the kubeconfig")
    parser.add_argument("--context", metavar="NAME", help="kubernetes --live: its context")
    parser.add_argument(
        "--farm-label",
        metavar="LABEL",
        help="kubernetes: hosts run on a farm node per value of this node label, "
        "e.g. topology.kubernetes.io/zone",
    )
    parser.add_argument(
        "--project",
        metavar="NAME",
        help="compose: the project (the host node's name); default: the file's "
        "top-level name, else its folder's name",
    )
    parser.add_argument(
        "--critical-annotation",
        metavar="KEY",
        help="backstage: the annotation that marks critical entities "
        "(default watchdog.io/critical)",
    )
    parser.add_argument("--url", metavar="URL", help="backstage: read the catalog of this backend")
    parser.add_argument(
        "--token-env",
        metavar="NAME",
        help="backstage --url: the environment variable holding its token",
    )


def run(args: argparse.Namespace) -> int:
    """Print the imported file; exit 0, or 3 with every problem on stderr."""
    try:
        spec, stdin = _spec(args)
    except ValueError as err:
        print(f"watchdog import: {err}", file=sys.stderr)
        return EXIT_INVALID
    try:
        imported = import_source(spec, fetch, read=_reader(stdin))
        overlay = (
            read_document(args.overlay)
            if args.overlay
            else Document("<import>", to_yaml_node({"version": 1, "nodes": {}}, 1))
        )
        document, findings, problems = merge(overlay, [(imported, 1)])
        if problems:
            raise InvalidInput(problems)
        _validate(document)
    except InvalidInput as err:
        for problem in err.problems:
            print(redact_urls(str(problem)), file=sys.stderr)
        print(f"watchdog import: {len(err.problems)} problem(s), nothing printed", file=sys.stderr)
        return EXIT_INVALID
    for finding in findings:
        print(f"{finding.severity}: {finding.rule}: {finding.message}", file=sys.stderr)
    sys.stdout.write(render(document, imported.origin, args.overlay))
    return 0


def _spec(args: argparse.Namespace) -> tuple[SourceSpec, bytes | None]:
    """The source the options describe, and standard input's bytes when
    SOURCE is `-`."""
    options: dict[str, str] = {}
    for option, key in (
        ("farm_label", "farm_label"),
        ("project", "project"),
        ("critical_annotation", "critical_annotation"),
    ):
        value = getattr(args, option)
        if value is not None:
            if key not in KINDS[args.kind].options:
                raise ValueError(f"--{option.replace('_', '-')} is not an option of {args.kind}")
            options[key] = value
    live: dict[str, str] | None = None
    if args.kind == "kubernetes" and args.live:
        live = {k: v for k, v in (("kubeconfig", args.kubeconfig), ("context", args.context)) if v}
    elif args.kind == "backstage" and args.url:
        live = {"url": args.url, **({"token_env": args.token_env} if args.token_env else {})}
    elif args.live:
        raise ValueError(f"--live reads a cluster; {args.kind} is read from files")
    if live is not None and args.sources:
        raise ValueError("name files or read a live source, not both")
    if live is None and not args.sources:
        raise ValueError(f"name the {KINDS[args.kind].hint} to read (or - for stdin)")
    stdin = None
    paths = tuple(args.sources)
    if paths == ("-",):
        stdin = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        if len(stdin) > MAX_FILE_BYTES:
            raise ValueError(f"standard input is over {MAX_FILE_BYTES // 2**20} MiB")
    elif "-" in paths:
        raise ValueError("- (stdin) cannot be mixed with files")
    return SourceSpec(args.kind, paths, live, options), stdin


def _reader(stdin: bytes | None) -> Callable[[str], bytes]:
    """Files read as `check` reads them; `-` is what standard input held."""
    from topology.document import read_bytes

    def read(name: str) -> bytes:
        return stdin if name == "-" and stdin is not None else read_bytes(name)

    return read


def _validate(document: Document) -> None:
    """Refuse, with every problem, a merged file that `check` would refuse."""
    from watchdog.config import config_from_document

    config_from_document(document)


def render(document: Document, origin: str, overlay: str | None) -> str:
    """The merged document as a topology file, with its header comment."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = to_python(document.root)
    data.pop("sources", None)
    ordered = {"version": data.pop("version", 1), **data}
    header = [f"# Imported from {printable(origin)} by `watchdog import` at {now}."]
    if overlay:
        header.append(f"# Overlay: {printable(overlay)}. Edit the overlay and import again:")
        header.append("# edits made here are lost at the next import.")
    text = yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(header) + "\n" + text


def fetch(kind: str, settings: Mapping[str, str]) -> list[tuple[str, Any]]:
    """The documents of a live source: a cluster's lists (kubernetes:
    `kubeconfig`, `context`), a Backstage catalog (`url`, `token_env`).
    Raises `InvalidInput` naming the source when it cannot be read."""
    from watchdog import source_fetch

    try:
        if kind == "kubernetes":
            cluster = source_fetch.fetch_kubernetes(
                settings.get("kubeconfig"), settings.get("context")
            )
            return [("kubernetes (live)", cluster)]
        if kind == "backstage":
            url = settings["url"]
            return [(url, source_fetch.fetch_backstage(url, settings.get("token_env")))]
    except InvalidInput:
        raise
    except Exception as err:  # a client library's own errors: said, not raised
        raise InvalidInput(
            [Problem(f"{kind} (live)", None, "", redact_urls(f"cannot read: {err}"))]
        ) from None
    raise InvalidInput([Problem(kind, None, "", f"{kind} has no live source")])
