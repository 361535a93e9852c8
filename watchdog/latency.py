"""Latency baselines: what a probe's answers usually take, and a regression
flagged when they take much longer for a while, well before the static
`latency_threshold` is crossed (the slow drift before an outage).

Pure: no clock, no IO. The caller passes each answer's latency and `now`.

How a `LatencyBaseline` judges, and why:

- Samples are grouped in *ticks* of `tick` answers. A tick's statistic is
  its own p95 (nearest rank: with the default 20 samples, the second
  slowest, so one outlier in 20 does not make a tick slow; at ticks of 10,
  its slowest answer, a simulation flagged 16 runs in 50 of a target with
  1% slow answers, none at 20). Ticks do not overlap, so "slow for `ticks` ticks in a row" is that
  many independent pieces of evidence, and a lone slow answer cannot make
  several ticks slow.
- The baseline is learned from the first `learning_ticks` ticks: the median
  of their p95s, the spread their median absolute deviation (robust to one
  odd tick while learning). No verdict before that. Afterwards each learned
  tick moves the baseline by an EWMA (`ewma_alpha`), and the spread by an
  EWMA of the absolute difference between its p95 and the previous learned
  tick's, over √2 (MAD-like). Differences of successive ticks measure noise
  and not trend: deviations from the EWMA would grow with a ramp's lag
  behind it, widening the bar as fast as the ramp climbs, so that a steady
  drift would never be flagged. The spread used has a floor (2% of the
  baseline, at least 0.1ms): a target with very steady latency would
  otherwise show `±0ms`.
- A tick is *slow* when its p95 is above `baseline + spreads * spread`,
  at least `min_ratio` times the baseline and at least `min_delta_s` above
  it: all three, so that neither a tiny spread on loopback nor a tiny
  baseline turns jitter into a regression. Each tick is compared with the
  baseline as it was before that tick.
- `ticks` slow ticks in a row put a regression in force; it clears after
  `ticks` normal ticks in a row. The slow ticks of a regression are never
  learned: otherwise a drift would teach the baseline to follow it. Slow
  ticks are held back until that is known: a run too short to flag (one
  tick with a GC pause) was noise and is learned after all, so that the
  spread learns a target whose ticks are often slow. Normal ticks are
  always learned.
- A drift slow enough that no tick leaves the bar is followed by the
  baseline and never flagged: that is how it adapts to legitimate slow
  change (a busier day, a growing data set). With `min_ratio` the widest
  bar, that is a drift of less than about `ewma_alpha * (min_ratio - 1)`
  of the baseline per tick (5% with the defaults). Simulated with the
  default rules and 15% jitter, a ramp from 40ms to 400ms over 60 ticks
  (100 minutes at a 10s interval) is flagged below 100ms; over 200 ticks it
  is followed. A smaller `ewma_alpha` catches slower drifts and follows
  legitimate change more slowly.
- A legitimate *step* up (a release that is slower for good) stays
  flagged: the baseline does not re-learn on its own, since re-learning
  after N slow ticks would also silence a real regression that lasts. It
  ends when latency returns, or when the operator re-learns it: a fresh
  `LatencyBaseline`, the daemon's to make on a reload.
- A tick's p95 is a small sample: a target with rare, large outliers (1 in
  100 answers ten times slower) has a slow tick about one tick in ten, and
  `ticks` of them in a row now and then. Such a target wants a larger
  `tick` (at 20 samples, a tick's p95 ignores one outlier) or more `ticks`.
- `state()` / `from_state()` carry everything (window, partial tick,
  baseline, regression) across a restart; `now` should then be wall-clock
  seconds, since `Regression.since` is one of those values.

Memory is bounded: `window` recent samples for the percentiles shown to
people, at most `tick` samples of the tick in progress, `learning_ticks`
p95s while learning and fewer than `ticks` held-back p95s. The window holds every
observed answer, slow ones included: it is what the target did recently,
whereas the baseline is what it usually does.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from topology import State, format_duration
from watchdog.probes.result import ProbeResult

__all__ = [
    "LatencyBaseline",
    "LatencyRules",
    "LatencyView",
    "Percentiles",
    "Regression",
    "apply_regression",
    "percentile",
    "percentiles_of",
    "track_latency",
]

# The floor of the spread: below 0.1ms, latencies measured on a busy host
# are noise; 2% of the baseline keeps `spreads` spreads meaningful for a
# target that answers in exactly the same time every time.
_MIN_SPREAD_S = 0.0001
_MIN_SPREAD_RATIO = 0.02

# The version of what `state()` returns; `from_state` refuses any other.
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class LatencyRules:
    """How a `LatencyBaseline` learns and judges (see the module docstring).

    `window`: recent samples kept for the percentiles; `tick`: samples per
    evaluation tick; `learning_ticks`: ticks learned before any verdict; a
    tick is slow when its p95 exceeds the baseline by more than `spreads`
    spreads, by a factor of at least `min_ratio` and by at least
    `min_delta_s`; `ticks` slow ticks in a row flag a regression, `ticks`
    normal ones clear it; `ewma_alpha` is the weight of a tick in the
    baseline and the spread. `ValueError` for rules that make no sense.
    """

    window: int = 120
    tick: int = 20
    learning_ticks: int = 6
    spreads: float = 3.0
    min_ratio: float = 1.5
    min_delta_s: float = 0.005
    ticks: int = 3
    ewma_alpha: float = 0.1

    def __post_init__(self) -> None:
        for name in ("window", "tick", "learning_ticks", "ticks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer of at least 1, not {value!r}")
        if not (math.isfinite(self.spreads) and self.spreads >= 0):
            raise ValueError(f"spreads must not be negative, not {self.spreads}")
        if not (math.isfinite(self.min_ratio) and self.min_ratio >= 1):
            raise ValueError(f"min_ratio must be at least 1, not {self.min_ratio}")
        if not (math.isfinite(self.min_delta_s) and self.min_delta_s >= 0):
            raise ValueError(f"min_delta_s must not be negative, not {self.min_delta_s}")
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError(f"ewma_alpha must be within (0, 1], not {self.ewma_alpha}")


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Nearest-rank percentiles of the recent window, in seconds, and how
    many samples they are of."""

    p50: float
    p95: float
    p99: float
    samples: int

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by the thousand for the API process (see LatencyView).
        return (Percentiles, (self.p50, self.p95, self.p99, self.samples))


@dataclass(frozen=True, slots=True)
class Regression:
    """A latency regression in force: the latest slow tick's p95, the
    baseline and spread it was judged against, since when (the `now` of the
    first answer of the first slow tick) and how many slow ticks so far."""

    p95_s: float
    baseline_s: float
    spread_s: float
    since: float
    ticks: int

    @property
    def reason(self) -> str:
        """One short line for people: `latency regression: p95 180ms vs
        usual 42ms±6ms for 3 ticks`."""
        ticks = f"{self.ticks} tick" if self.ticks == 1 else f"{self.ticks} ticks"
        return (
            f"latency regression: p95 {format_duration(self.p95_s)} vs usual "
            f"{format_duration(self.baseline_s)}±{format_duration(self.spread_s)} for {ticks}"
        )


_DEFAULT_RULES = LatencyRules()


def percentile(values: Sequence[float], p: int) -> float:
    """The nearest-rank `p`th percentile of `values` (unsorted is fine): the
    smallest value that at least `p`% of them are at or below, so always one
    of the values (the p95 of 10 values is the largest). `ValueError` when
    `values` is empty or `p` is not within 1..100."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if isinstance(p, bool) or not 1 <= p <= 100 or p != int(p):
        raise ValueError(f"percentile must be an integer within 1..100, not {p!r}")
    return _ranked(sorted(values), int(p))


def percentiles_of(samples: Iterable[float]) -> Percentiles | None:
    """The nearest-rank p50, p95 and p99 of `samples`; `None` when there
    are none."""
    ordered = sorted(samples)
    if not ordered:
        return None
    return Percentiles(
        p50=_ranked(ordered, 50),
        p95=_ranked(ordered, 95),
        p99=_ranked(ordered, 99),
        samples=len(ordered),
    )


def _ranked(ordered: Sequence[float], p: int) -> float:
    """The nearest-rank `p`th percentile of values already sorted."""
    # Integer arithmetic: ceil(p * n / 100) without float rounding.
    return ordered[(p * len(ordered) + 99) // 100 - 1]


@dataclass(frozen=True, slots=True)
class LatencyView:
    """One probe's latency as shown (the API, the metrics): its window's
    percentiles (None before any answer), its baseline and spread (None
    while learning), the regression in force (its reason), as of a moment."""

    node: str
    key: str
    percentiles: Percentiles | None
    baseline_s: float | None
    spread_s: float | None
    regression: str | None

    def __reduce__(self) -> tuple[Any, ...]:
        # A slotted dataclass pickles through dataclasses.fields() per
        # object: too slow for the thousands an update to the API carries.
        fields = (self.node, self.key, self.percentiles, self.baseline_s, self.spread_s)
        return (LatencyView, (*fields, self.regression))

    def details(self) -> dict[str, Any]:
        """What the API shows of it."""
        p = self.percentiles
        return {
            "samples": p.samples if p else 0,
            "p50_s": p.p50 if p else None,
            "p95_s": p.p95 if p else None,
            "p99_s": p.p99 if p else None,
            "baseline_p95_s": self.baseline_s,
            "spread_s": self.spread_s,
            "regression": self.regression,
        }


class LatencyBaseline:
    """One probe's latency: the recent window's percentiles, the usual
    latency learned from it, and the regression in force, if any.

    Feed it with `observe` (answers only: a failure without a latency says
    nothing about latency). It never reads a clock.
    """

    __slots__ = (
        "_baseline",
        "_held",
        "_held_since",
        "_last",
        "_learning",
        "_normal",
        "_pending",
        "_percentiles",
        "_regression",
        "_samples",
        "_spread",
        "_tick_started",
        "rules",
    )

    def __init__(self, rules: LatencyRules = _DEFAULT_RULES) -> None:
        self.rules = rules
        self._samples: deque[float] = deque(maxlen=rules.window)
        # Worked out when asked, kept until the next sample.
        self._percentiles: Percentiles | None = None
        self._pending: list[float] = []  # the tick in progress
        self._tick_started: float | None = None  # `now` of its first sample
        self._learning: list[float] = []  # the p95s of the ticks learned so far
        self._baseline: float | None = None  # None while learning
        self._spread = 0.0
        self._last: float | None = None  # the p95 of the tick learned last
        # The p95s of slow ticks in a row, too few yet to flag, held back
        # from the baseline until it is known whether they make a regression.
        self._held: list[float] = []
        self._held_since: float | None = None  # `now` of the first one's first sample
        self._normal = 0  # normal ticks in a row while a regression is in force
        self._regression: Regression | None = None

    def observe(self, latency_s: float, now: float) -> None:
        """Take one answer's latency, measured at `now`; closes a tick every
        `rules.tick` samples. `ValueError` for a negative or non-finite
        latency or `now` (they would poison every statistic and the state)."""
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"latency must be a finite, non-negative number, not {latency_s}")
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite number, not {now}")
        self._samples.append(latency_s)
        self._percentiles = None
        if not self._pending:
            self._tick_started = now
        self._pending.append(latency_s)
        if len(self._pending) >= self.rules.tick:
            started = now if self._tick_started is None else self._tick_started
            p95 = percentile(self._pending, 95)
            self._pending.clear()
            self._tick_started = None
            self._close_tick(p95, started)

    def percentiles(self) -> Percentiles | None:
        """The nearest-rank p50, p95 and p99 of the recent window (slow
        answers included); `None` before any sample."""
        if self._percentiles is None:
            self._percentiles = percentiles_of(self._samples)
        return self._percentiles

    @property
    def regression(self) -> Regression | None:
        """The regression in force now, `None` when there is none."""
        return self._regression

    def view(self, node: str, key: str) -> LatencyView:
        """What is shown of this baseline now, for probe `key` of `node`."""
        regression = self._regression
        return LatencyView(
            node,
            key,
            self.percentiles(),
            self.baseline_s,
            self.spread_s,
            None if regression is None else regression.reason,
        )

    @property
    def baseline_s(self) -> float | None:
        """The usual p95 of a tick, in seconds; `None` while learning."""
        return self._baseline

    @property
    def spread_s(self) -> float | None:
        """The usual deviation from the baseline (floor included), in
        seconds; `None` while learning."""
        if self._baseline is None:
            return None
        return self._effective_spread(self._baseline)

    def state(self) -> dict[str, Any]:
        """Everything needed to resume after a restart, JSON-able."""
        regression = self._regression
        return {
            "version": _STATE_VERSION,
            "samples": list(self._samples),
            "pending": list(self._pending),
            "tick_started": self._tick_started,
            "learning": list(self._learning),
            "baseline": self._baseline,
            "spread": self._spread,
            "last": self._last,
            "held": list(self._held),
            "held_since": self._held_since,
            "normal": self._normal,
            "regression": None
            if regression is None
            else {
                "p95_s": regression.p95_s,
                "baseline_s": regression.baseline_s,
                "spread_s": regression.spread_s,
                "since": regression.since,
                "ticks": regression.ticks,
            },
        }

    @classmethod
    def from_state(cls, rules: LatencyRules, data: object) -> LatencyBaseline:
        """A baseline resumed from what `state()` returned, judged by `rules`
        from now on (a state saved under other rules is cut to their bounds).
        `ValueError` when `data` is not such a state."""
        if not isinstance(data, Mapping):
            raise ValueError("latency state: not a mapping")
        if data.get("version") != _STATE_VERSION:
            raise ValueError(f"latency state: unknown version {data.get('version')!r}")
        self = cls(rules)
        self._samples.extend(_latencies(data, "samples"))
        pending = _latencies(data, "pending")
        tick_started = _optional_number(data, "tick_started")
        if pending and tick_started is None:
            raise ValueError("latency state: a tick in progress without its start")
        # Cut to what `rules` ever hold between two ticks.
        self._pending = _last(pending, rules.tick - 1)
        self._tick_started = tick_started if self._pending else None
        self._learning = _last(_latencies(data, "learning"), rules.learning_ticks - 1)
        self._baseline = _optional_number(data, "baseline", latency=True)
        self._spread = _number(data.get("spread"), "spread", latency=True)
        self._last = _optional_number(data, "last", latency=True)
        held = _latencies(data, "held")
        held_since = _optional_number(data, "held_since")
        if bool(held) != (held_since is not None):
            raise ValueError("latency state: slow ticks and their start disagree")
        self._held = _last(held, rules.ticks - 1)
        self._held_since = held_since if self._held else None
        self._normal = min(_count(data.get("normal"), "normal"), rules.ticks - 1)
        if "regression" not in data:
            raise ValueError("latency state: regression is missing")
        raw = data["regression"]
        if raw is not None:
            if not isinstance(raw, Mapping):
                raise ValueError("latency state: regression is not a mapping")
            ticks = _count(raw.get("ticks"), "regression.ticks")
            if ticks < 1:
                raise ValueError("latency state: a regression of no tick")
            self._regression = Regression(
                p95_s=_number(raw.get("p95_s"), "regression.p95_s", latency=True),
                baseline_s=_number(raw.get("baseline_s"), "regression.baseline_s", latency=True),
                spread_s=_number(raw.get("spread_s"), "regression.spread_s", latency=True),
                since=_number(raw.get("since"), "regression.since"),
                ticks=ticks,
            )
        if self._baseline is None and (self._held or self._normal or self._regression):
            raise ValueError("latency state: a verdict without a baseline")
        if self._regression is not None and self._held:
            raise ValueError("latency state: slow ticks held back during a regression")
        return self

    # -- judging ---------------------------------------------------------

    def _close_tick(self, p95: float, started: float) -> None:
        baseline = self._baseline
        if baseline is None:
            self._learn_first(p95)
            return
        spread = self._effective_spread(baseline)
        regression = self._regression
        if self._is_slow(p95, baseline, spread):
            # Not learned: the baseline must not follow what it flags.
            if regression is not None:
                self._normal = 0
                self._regression = Regression(
                    p95, baseline, spread, regression.since, regression.ticks + 1
                )
                return
            if not self._held:
                self._held_since = started
            self._held.append(p95)
            if len(self._held) >= self.rules.ticks:
                since = started if self._held_since is None else self._held_since
                self._regression = Regression(p95, baseline, spread, since, len(self._held))
                self._held, self._held_since = [], None
            return
        if regression is not None:
            self._learn(p95)
            self._normal += 1
            if self._normal >= self.rules.ticks:
                self._regression, self._normal = None, 0
            return
        # Slow ticks too few in a row to flag were noise: learned after all,
        # so that the spread knows a target whose ticks are often slow.
        for held in self._held:
            self._learn(held)
        self._held, self._held_since = [], None
        self._learn(p95)

    def _is_slow(self, p95: float, baseline: float, spread: float) -> bool:
        rules = self.rules
        return (
            p95 > baseline + rules.spreads * spread
            and p95 >= baseline * rules.min_ratio
            and p95 - baseline >= rules.min_delta_s
        )

    def _learn_first(self, p95: float) -> None:
        self._learning.append(p95)
        if len(self._learning) >= self.rules.learning_ticks:
            median = statistics.median(self._learning)
            self._baseline = median
            self._spread = statistics.median(abs(value - median) for value in self._learning)
            self._last = p95
            self._learning = []

    def _learn(self, p95: float) -> None:
        baseline, last = self._baseline, self._last
        assert baseline is not None  # learned only after `_learn_first`
        alpha = self.rules.ewma_alpha
        if last is not None:
            # The difference between two learned ticks measures noise, not
            # trend (a ramp's lag behind the EWMA would widen the spread as
            # fast as the ramp climbs); /√2 since both ticks carry noise.
            self._spread += alpha * (abs(p95 - last) / math.sqrt(2) - self._spread)
        self._baseline = baseline + alpha * (p95 - baseline)
        self._last = p95

    def _effective_spread(self, baseline: float) -> float:
        return max(self._spread, _MIN_SPREAD_S, _MIN_SPREAD_RATIO * baseline)


def apply_regression(result: ProbeResult, baseline: LatencyBaseline) -> ProbeResult:
    """`result`, made `degraded` with the regression's reason when it is
    `up` and `baseline` has a regression in force; any other result (a
    failure, or one the static threshold already degraded) is left as it is.
    Observe the result's latency first, so the verdict includes it."""
    regression = baseline.regression
    if regression is None or result.state is not State.UP:
        return result
    return replace(
        result, state=State.DEGRADED, reason=regression.reason, anomalies=(regression.reason,)
    )


def track_latency(result: ProbeResult, baseline: LatencyBaseline, now: float) -> ProbeResult:
    """The daemon's one call per probe result: observe its latency when the
    target answered as expected (`up`, or `degraded` by the static
    threshold; a failure's latency, an error page's, says nothing about the
    usual one), then `apply_regression`."""
    if result.latency_s is not None and result.state in (State.UP, State.DEGRADED):
        baseline.observe(result.latency_s, now)
    return apply_regression(result, baseline)


def _number(value: object, name: str, *, latency: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"latency state: {name} is not a number")
    number = float(value)
    if not math.isfinite(number) or (latency and number < 0):
        raise ValueError(f"latency state: {name} is out of range")
    return number


def _optional_number(data: Mapping[Any, Any], name: str, *, latency: bool = False) -> float | None:
    if name not in data:
        raise ValueError(f"latency state: {name} is missing")
    value = data[name]
    return None if value is None else _number(value, name, latency=latency)


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"latency state: {name} is not a count")
    return value


def _latencies(data: Mapping[Any, Any], name: str) -> list[float]:
    values = data.get(name)
    if not isinstance(values, list):
        raise ValueError(f"latency state: {name} is not a list")
    return [_number(value, name, latency=True) for value in values]


def _last(values: list[float], count: int) -> list[float]:
    return values[len(values) - count :] if len(values) > count else values
