"""The topology as a picture: a layered layout worked out on the server and
drawn as SVG, no JavaScript graph library.

Layers are the nodes' depths (`Topology.depth`: a farm at the bottom, what
runs on it above, what needs that above again), drawn from the deepest at
the top down to depth 0. Within a layer, nodes are ordered by the
barycenter heuristic (a few sweeps up and down, each node placed at the
mean position of its neighbours in the layers below, then above), which
removes most crossings of a layered drawing for the cost of a sort per
layer. A wide layer wraps into rows, so that ten thousand nodes make a
tall picture rather than one a hundred screens wide. Pure: no clock, no
I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

from topology import Topology
from topology.model import depth

__all__ = [
    "NODE_H",
    "NODE_W",
    "Box",
    "Layout",
    "crossings",
    "depths",
    "hot_edges",
    "layered",
    "public_needs",
    "svg",
]

NODE_W = 156
NODE_H = 32
GAP_X = 14
ROW_GAP = 18
LAYER_GAP = 56
MARGIN = 12
# Nodes per row before a layer wraps.
PER_ROW = 14
SWEEPS = 4
# Characters of a name that fit in a box (the rest: an ellipsis; the full
# name is in the node's label and title).
LABEL_CHARS = 20

GLYPHS = {"up": "\u2713", "unknown": "?", "degraded": "\u25b2", "down": "\u2715"}


@dataclass(frozen=True, slots=True)
class Box:
    """Where a node is drawn: its top-left corner and its layer."""

    name: str
    x: float
    y: float
    layer: int


@dataclass(frozen=True, slots=True)
class Layout:
    """A drawing of nodes and their requirements: every box, the edges
    drawn (each node to the members it needs), and the size."""

    boxes: Mapping[str, Box]
    needs: Mapping[str, tuple[str, ...]]
    width: float
    height: float

    def order(self) -> dict[int, list[str]]:
        """The nodes of each layer, left to right and row by row."""
        layers: dict[int, list[str]] = {}
        for box in sorted(self.boxes.values(), key=lambda b: (b.layer, b.y, b.x)):
            layers.setdefault(box.layer, []).append(box.name)
        return layers


def depths(names: Iterable[str], needs: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """How many levels of requirements lie below each node (0 for one that
    needs nothing), as `Topology.depth` counts them, for a graph given by
    `needs`; an edge that closes a cycle is not followed."""
    known: dict[str, int] = {}
    for name in names:
        depth(name, lambda node: needs.get(node, ()), known)
    return known


def public_needs(topology: Topology, shown: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The requirements between the nodes `shown` (the public ones), the
    nodes between them left out: A needs B when A needs B through any
    chain, unless through another shown node C (A to C to B is drawn as
    two edges, not three)."""
    keep = set(shown)
    reach = {name: topology.downstream_of(name) & keep for name in keep}
    out = {}
    for name, below in reach.items():
        direct = {b for b in below if not any(b in reach[c] for c in below if c != b)}
        out[name] = tuple(sorted(direct - {name}))
    return out


def layered(
    names: Sequence[str],
    needs: Mapping[str, Sequence[str]],
    depth: Callable[[str], int],
    *,
    per_row: int = PER_ROW,
    sweeps: int = SWEEPS,
) -> Layout:
    """Lay out `names` (edges from each to what it `needs`, among `names`)
    in layers by `depth`, deepest on top, ordered to reduce crossings."""
    shown = set(names)
    edges = {n: tuple(m for m in needs.get(n, ()) if m in shown and m != n) for n in names}
    dependents: dict[str, list[str]] = {n: [] for n in names}
    for node, members in edges.items():
        for member in members:
            dependents[member].append(node)
    layer_of = {n: depth(n) for n in names}
    layers: dict[int, list[str]] = {}
    for name in sorted(names):
        layers.setdefault(layer_of[name], []).append(name)
    pos: dict[str, float] = {}

    def place(layer: list[str]) -> None:
        span = max(1, len(layer) - 1)
        for index, name in enumerate(layer):
            pos[name] = index / span

    for layer in layers.values():
        place(layer)
    levels = sorted(layers)

    def sweep(order: Sequence[int], neighbours: Mapping[str, Sequence[str]], below: bool) -> None:
        for level in order:
            layer = layers[level]

            def key(name: str, level: int = level) -> tuple[float, str]:
                near = [
                    pos[m]
                    for m in neighbours[name]
                    if (layer_of[m] < level if below else layer_of[m] > level)
                ]
                return (sum(near) / len(near) if near else pos[name], name)

            layer.sort(key=key)
            place(layer)

    for _ in range(sweeps):
        sweep(levels[1:], edges, below=True)
        sweep(list(reversed(levels[:-1])), dependents, below=False)

    widest = max((min(len(layer), per_row) for layer in layers.values()), default=1)
    width = 2 * MARGIN + widest * NODE_W + (widest - 1) * GAP_X
    boxes: dict[str, Box] = {}
    y = float(MARGIN)
    for level in reversed(levels):
        layer = layers[level]
        for start in range(0, len(layer), per_row):
            row = layer[start : start + per_row]
            row_width = len(row) * NODE_W + (len(row) - 1) * GAP_X
            x = (width - row_width) / 2
            for name in row:
                boxes[name] = Box(name, round(x, 1), y, level)
                x += NODE_W + GAP_X
            y += NODE_H + ROW_GAP
        y += LAYER_GAP - ROW_GAP
    height = y - (LAYER_GAP - ROW_GAP) + MARGIN - ROW_GAP if boxes else 2 * MARGIN
    return Layout(boxes=boxes, needs=edges, width=float(width), height=max(height, 2 * MARGIN))


def crossings(layout: Layout) -> int:
    """How many pairs of edges cross between nodes of adjacent layers that
    each sit in one row (a measure of the ordering, for tests and tuning)."""
    by_layer: dict[int, dict[str, float]] = {}
    for box in layout.boxes.values():
        by_layer.setdefault(box.layer, {})[box.name] = box.x
    count = 0
    for level, upper in by_layer.items():
        lower = by_layer.get(level - 1)
        if not lower:
            continue
        pairs = [(upper[n], lower[m]) for n in upper for m in layout.needs.get(n, ()) if m in lower]
        pairs.sort()
        for i, (a1, b1) in enumerate(pairs):
            for a2, b2 in pairs[i + 1 :]:
                if a2 > a1 and b2 < b1:
                    count += 1
    return count


def _edge(a: Box, b: Box) -> str:
    """A line from the bottom of `a` to the top of `b` (or top to bottom
    when `b` is drawn above: a soft requirement closing a cycle)."""
    ax, bx = a.x + NODE_W / 2, b.x + NODE_W / 2
    if b.y > a.y:
        return f"M{ax:g} {a.y + NODE_H:g}L{bx:g} {b.y:g}"
    return f"M{ax:g} {a.y:g}L{bx:g} {b.y + NODE_H:g}"


def hot_edges(layout: Layout, pairs: Iterable[tuple[str, str]]) -> str:
    """The path of the edges `pairs` (a node and a member it needs), drawn
    over the others: the way a failure travels."""
    boxes = layout.boxes
    return "".join(_edge(boxes[a], boxes[b]) for a, b in pairs if a in boxes and b in boxes)


def svg(
    layout: Layout,
    *,
    state: Callable[[str], str],
    classes: Callable[[str], str],
    label: Callable[[str], str],
    name: Callable[[str], str] = str,
    key: Callable[[str], str] = str,
    hot: Iterable[tuple[str, str]] = (),
) -> str:
    """The picture: edges, the `hot` edges over them, then a box per node
    with its state's glyph and its name (`name`, cut to fit), classes
    `node st-STATE` and `classes(node)`, and `label(node)` as what a
    screen reader or a tooltip says. Each box is a button whose
    `data-node` is `key(node)`."""
    boxes = layout.boxes
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" '
        f'viewBox="0 0 {layout.width:g} {layout.height:g}" '
        f'width="{layout.width:g}" height="{layout.height:g}" '
        f'data-w="{NODE_W}" data-h="{NODE_H}">'
    ]
    out.append('<g class="edges" aria-hidden="true">')
    for node, members in layout.needs.items():
        if members:
            d = "".join(_edge(boxes[node], boxes[m]) for m in members)
            out.append(f'<path d="{d}"/>')
    out.append("</g>")
    out.append(f'<path class="hot" aria-hidden="true" d="{hot_edges(layout, hot)}"/>')
    out.append('<g class="nodes">')
    for node, box in boxes.items():
        shown = name(node)
        text = shown if len(shown) <= LABEL_CHARS else shown[: LABEL_CHARS - 1] + "\u2026"
        now = state(node)
        said = escape(label(node))
        extra = classes(node)
        out.append(
            f'<g class="node st-{now}{" " + extra if extra else ""}" '
            f'data-node="{escape(key(node))}" '
            f'transform="translate({box.x:g},{box.y:g})" data-x="{box.x:g}" data-y="{box.y:g}" '
            f'tabindex="0" role="button" aria-label="{said}">'
            f"<title>{said}</title>"
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="8" y="{NODE_H / 2 + 5:g}">'
            f'<tspan class="glyph">{GLYPHS.get(now, "?")}</tspan> {escape(text)}</text></g>'
        )
    out.append("</g></svg>")
    return "".join(out)
