"""Log anomalies: from the lines a `log` probe reads at each poll to the
anomalies in force (error-rate spike, new error template, silence, watched
pattern), each with a reason for people and its evidence.

Pure logic: the caller passes the time and the lines, and persists
`LogAnalyzer.state()` and `LogAnalyzer.miner_state()`; nothing here reads a
clock, a file or the network.

Secrets a line carries (see `watchdog.logmine.redact_secrets`) never reach a
reason nor what is persisted: templates are mined with them masked, and the
sample lines kept as evidence are saved masked. In memory a sample is the
line as read; `LogAnalyzer.redact` makes it fit to be shown to anyone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from topology import format_duration
from watchdog.logmine import Miner, MinerConfig, redact_secrets

__all__ = ["DEFAULT_ERROR_PATTERN", "Anomaly", "AnomalyKind", "LogAnalyzer", "LogRules"]

DEFAULT_ERROR_PATTERN = (
    r"(?=[EeFfCcSsPp])"
    r"(?i:\b(?:err(?:or)?|fatal|crit(?:ical)?|severe|panic|fail(?:ure|ed)|exception)\b)"
)
"""A line is error-level when it holds one of the words error, err, fatal,
critical, crit, severe, panic, failure, failed, exception, in any case, as a
whole word (so not ``errors=0`` nor ``ValueError``; warnings are not errors).
The leading lookahead only lets the regex engine skip to candidate letters:
it is four times faster than the plain ``(?i)\\b(...)\\b`` and matches the
same lines."""

# A learned silence threshold is this many times the longest recent gap
# between lines, and never under _SILENCE_FLOOR_INTERVALS rate intervals, so
# that a chatty service is not flagged for a quiet minute.
_SILENCE_MARGIN = 3.0
_SILENCE_FLOOR_INTERVALS = 2.0
# The longest gap is kept per block of learning_s / _GAP_BLOCKS: a sliding
# maximum over about one learning period in constant memory.
_GAP_BLOCKS = 8
# A new template stays flagged until this many intervals pass without a
# line of it: a recurring new error does not flap.
_NEW_HOLD_INTERVALS = 5
# New templates followed at once (beyond, the least recently seen is dropped).
_MAX_NEW = 64
_SAMPLE_CHARS = 200
_TEMPLATE_CHARS = 120
_STATE_VERSION = 1

AnomalyKind = Literal["error_spike", "new_error_template", "silence", "watched_pattern"]
_KIND_ORDER = {"silence": 0, "error_spike": 1, "watched_pattern": 2, "new_error_template": 3}


@dataclass(frozen=True, slots=True)
class LogRules:
    """What counts as an anomaly in one node's logs.

    - `error_pattern`: a line it finds (``re.search``) is error-level; only
      those are counted and mined (`DEFAULT_ERROR_PATTERN` by default).
    - Error-rate spike: error lines are counted per bucket of `interval_s`
      seconds (by the poll's time); a bucket is a spike when its count is at
      least `min_count` and above ``baseline + spike_factor * spread``, where
      the baseline is an EWMA (`ewma_alpha`) of past counts and the spread an
      EWMA of their absolute deviations, at least 1.
    - No spike nor new-template verdict before `learning_s` of history.
    - New error template: an error template first seen after learning;
      flagged once, until 5 intervals pass without a line of it or for one
      learning period at most (then it is the new normal).
    - Silence: no line for `silence_s` seconds; None learns the limit as 3
      times the longest gap between lines over about the last learning
      period, at least 2 intervals, in force after learning; 0 disables. `silence_is_down`: silence
      means the node is down rather than degraded.
    - `watched`: regexes that matter on any line at any time, learning or not.
    - `miner`: how error lines are grouped into templates.

    Invalid settings (bad regexes included) raise ValueError on construction.
    """

    error_pattern: str = DEFAULT_ERROR_PATTERN
    interval_s: float = 60.0
    learning_s: float = 3600.0
    spike_factor: float = 4.0
    min_count: int = 10
    ewma_alpha: float = 0.1
    silence_s: float | None = None
    silence_is_down: bool = False
    watched: tuple[str, ...] = ()
    miner: MinerConfig = field(default_factory=MinerConfig)

    def __post_init__(self) -> None:
        _compile(self.error_pattern, "error_pattern")
        _watched_regex(self.watched)
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be positive, not {self.interval_s}")
        if not self.learning_s >= 0:
            raise ValueError(f"learning_s must be at least 0, not {self.learning_s}")
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError(f"ewma_alpha must be within (0, 1], not {self.ewma_alpha}")
        if self.silence_s is not None and not self.silence_s >= 0:
            raise ValueError(f"silence_s must be at least 0 or None, not {self.silence_s}")


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomaly in force: its kind, one short line for people, since when
    it holds (the first spike bucket's start, the template's first line, the
    last line before the silence, the first match of the run), how many lines
    are its evidence (0 for silence), the template, one sample line
    (at most 200 characters), and whether it means the node is down."""

    kind: AnomalyKind
    reason: str
    since: float
    count: int
    template: str | None = None
    sample: str | None = None
    severity_down: bool = False


def _compile(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{what}: bad regex {pattern!r}: {e}") from None


_GLOBAL_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")


def _watched_regex(watched: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation of every watched pattern, the i-th in group ``_w<i>``,
    so that one search per line tells whether and which one matched."""
    if not watched:
        return None
    parts = []
    for i, pattern in enumerate(watched):
        _compile(pattern, f"watched pattern {pattern!r}")
        # A leading global flag group like (?i) is an error inside an
        # alternation: it becomes a scoped group around the pattern.
        m = _GLOBAL_FLAGS.match(pattern)
        if m and set(m.group(1)) <= set("ims"):
            parts.append(f"(?P<_w{i}>(?{m.group(1)}:{pattern[m.end() :]}))")
        else:
            parts.append(f"(?P<_w{i}>{pattern})")
    try:
        return re.compile("|".join(parts))
    except re.error as e:
        raise ValueError(f"watched patterns cannot be combined: {e}") from None


def _short(line: str, limit: int = _SAMPLE_CHARS) -> str:
    line = line.strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


class LogAnalyzer:
    """The anomalies of one node's log stream, fed one poll at a time.

    Call `feed` on every poll, also with no lines (a poll with no lines is a
    quiet bucket; a bucket with no poll at all, e.g. while the daemon was
    stopped, is missing data and leaves the baseline alone), then `active`.
    `state` (from `state()`, JSON-able) and `miner_state` (from
    `miner_state()`) restore what was learnt, history start included, so a
    restart does not relearn; malformed state raises ValueError. Memory is
    bounded: a few numbers per rule, at most 64 new templates followed, and
    the miner's `max_clusters` templates.
    """

    def __init__(
        self,
        rules: LogRules,
        started_at: float,
        state: Mapping[str, Any] | None = None,
        miner_state: bytes | None = None,
    ) -> None:
        self._rules = rules
        self._error = re.compile(rules.error_pattern)
        self._watched = _watched_regex(rules.watched)
        self._miner = Miner(rules.miner, miner_state)
        self._started = started_at
        self._last_line: float | None = None
        # Silence: longest gap per block, [[block, gap], ...], oldest first.
        self._gaps: list[list[float]] = []
        # Rate: the bucket being counted, its count, its most frequent
        # template, and the baseline from the buckets closed before it.
        self._bucket: int | None = None
        self._count = 0
        self._top: dict[int, int] = {}
        self._sample: str | None = None
        self._mean = 0.0
        self._dev = 0.0
        self._closed_buckets = 0
        # The last closed bucket: index, count, spike, mean, dev, top template, sample.
        self._last: dict[str, Any] | None = None
        self._spike_since: float | None = None
        # New templates followed: id -> {first, last, count, template, sample}.
        self._new: dict[int, dict[str, Any]] = {}
        # Watched: pattern index -> {since, last, count, sample}.
        self._hits: dict[int, dict[str, Any]] = {}
        if state is not None:
            try:
                self._load(state)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ValueError(f"not a log analyzer state: {e!r}") from None

    # -- input --------------------------------------------------------------

    def feed(self, lines: Sequence[str], now: float) -> None:
        """Take the lines read in one poll at `now`."""
        rules = self._rules
        bucket = math.floor(now / rules.interval_s)
        if self._bucket is None:
            self._bucket = bucket
        elif bucket > self._bucket:
            self._close(now)
            self._bucket = bucket
        self._expire_new(now)
        if not lines:
            return
        self._note_gap(now)
        self._last_line = now

        watched = self._watched
        if watched is not None:
            search_w = watched.search
            for line in lines:
                m = search_w(line)
                if m is not None:
                    # Each pattern is the outer group _w<i>: the last to close.
                    which = int(str(m.lastgroup)[2:])
                    self._hit(which, line, now)

        search = self._error.search
        errors = [line for line in lines if search(line)]
        if not errors:
            return
        self._count += len(errors)
        if self._sample is None:
            self._sample = _short(errors[0])
        learned = now >= self._started + rules.learning_s
        add, top, new = self._miner.add, self._top, self._new
        cap = rules.miner.max_clusters
        for line in errors:
            t = add(line)
            if t.id in top:
                top[t.id] += 1
            elif len(top) < cap:  # bounded even in a flood of distinct errors
                top[t.id] = 1
            if t.new:
                if learned:
                    self._follow(t.id, t.text, line, now)
            else:
                followed = new.get(t.id)
                if followed is not None:
                    followed["last"] = now
                    followed["count"] += 1
                    followed["template"] = t.text

    def _hit(self, index: int, line: str, now: float) -> None:
        hit = self._hits.get(index)
        if hit is None or now - hit["last"] >= self._rules.interval_s:
            self._hits[index] = {"since": now, "last": now, "count": 1, "sample": _short(line)}
        else:
            hit["last"] = now
            hit["count"] += 1

    def _follow(self, template_id: int, text: str, line: str, now: float) -> None:
        if len(self._new) >= _MAX_NEW:
            oldest = min(self._new, key=lambda k: self._new[k]["last"])
            del self._new[oldest]
        self._new[template_id] = {
            "first": now,
            "last": now,
            "count": 1,
            "template": text,
            "sample": _short(line),
        }

    def _expire_new(self, now: float) -> None:
        # Gone once quiet for a while, or accepted as the new normal once
        # it lasted a learning period: either way its template is known now
        # and never flagged again.
        stale = [k for k, v in self._new.items() if not self._new_active(v, now)]
        for k in stale:
            del self._new[k]

    def _new_active(self, followed: Mapping[str, Any], now: float) -> bool:
        rules = self._rules
        return bool(
            now - followed["last"] < _NEW_HOLD_INTERVALS * rules.interval_s
            and now - followed["first"] < max(rules.learning_s, rules.interval_s)
        )

    def _threshold(self) -> float:
        r = self._rules
        return max(float(r.min_count), self._mean + r.spike_factor * max(1.0, self._dev))

    def _is_spike(self, count: int, at: float) -> bool:
        r = self._rules
        return (
            at >= self._started + r.learning_s
            and self._closed_buckets > 0
            and count >= r.min_count
            and count > self._mean + r.spike_factor * max(1.0, self._dev)
        )

    def _close(self, now: float) -> None:
        """Close the bucket being counted into the baseline."""
        assert self._bucket is not None
        r = self._rules
        end = (self._bucket + 1) * r.interval_s
        x = self._count
        spike = self._is_spike(x, end)
        self._last = {
            "bucket": self._bucket,
            "count": x,
            "spike": spike,
            "mean": self._mean,
            "dev": self._dev,
            "template": self._top_template(),
            "sample": self._sample,
        }
        if spike:
            if self._spike_since is None:
                self._spike_since = self._bucket * r.interval_s
        else:
            self._spike_since = None
        # A spike enters the baseline clipped at the threshold, so that one
        # incident does not teach the baseline to ignore the next.
        value = min(float(x), self._threshold()) if spike else float(x)
        if self._closed_buckets == 0:
            self._mean, self._dev = value, 0.0
        else:
            a = r.ewma_alpha
            self._dev += a * (abs(value - self._mean) - self._dev)
            self._mean += a * (value - self._mean)
        self._closed_buckets += 1
        self._count, self._top, self._sample = 0, {}, None

    def _top_template(self) -> str | None:
        """The text of the bucket's most frequent error template, if any."""
        if not self._top:
            return None
        return self._miner.template(max(self._top.items(), key=lambda kv: kv[1])[0])

    def _silence_limit(self, now: float) -> tuple[float, str] | None:
        """The silence threshold in force at `now` and how to say it, if any."""
        r = self._rules
        if r.silence_s is not None:
            return (
                None if r.silence_s == 0 else (r.silence_s, f"limit {format_duration(r.silence_s)}")
            )
        if not self._gaps or now < self._started + r.learning_s:
            return None
        usual = max(g for _, g in self._gaps)
        floor = _SILENCE_FLOOR_INTERVALS * r.interval_s
        return max(floor, _SILENCE_MARGIN * usual), f"usual gap under {format_duration(usual)}"

    def _note_gap(self, now: float) -> None:
        if self._last_line is None:
            return
        gap = now - self._last_line
        limit = self._silence_limit(now)
        if limit is not None and gap > limit[0]:
            return  # a silence flagged as such does not teach that it is usual
        width = max(self._rules.learning_s, self._rules.interval_s) / _GAP_BLOCKS
        block = math.floor(now / width)
        if self._gaps and self._gaps[-1][0] == block:
            self._gaps[-1][1] = max(self._gaps[-1][1], gap)
        else:
            self._gaps.append([block, gap])
        self._gaps = [g for g in self._gaps if g[0] > block - _GAP_BLOCKS]

    # -- output -------------------------------------------------------------

    def redact(self, line: str) -> str:
        """`line` fit to show anyone: secrets masked (``***``), then the
        miner's masks applied (``<IP>``, ``<NUMBER>``, a user's own...)."""
        return self._miner.mask(line)

    def active(self, now: float) -> list[Anomaly]:
        """The anomalies in force at `now`: silence first, then spikes,
        watched patterns and new templates, each kind by `since`."""
        out: list[Anomaly] = []
        r = self._rules
        silence = self._silence(now)
        if silence is not None:
            out.append(silence)
        spike = self._spike(now)
        if spike is not None:
            out.append(spike)
        for i, hit in self._hits.items():
            if now - hit["last"] < r.interval_s:
                lines = "line" if hit["count"] == 1 else "lines"
                out.append(
                    Anomaly(
                        "watched_pattern",
                        f"watched pattern {r.watched[i]!r}: {hit['count']} {lines}",
                        hit["since"],
                        hit["count"],
                        sample=hit["sample"],
                    )
                )
        learned = now >= self._started + r.learning_s
        for v in self._new.values():
            if learned and self._new_active(v, now):
                lines = "line" if v["count"] == 1 else "lines"
                # Mined templates hold no secret; one saved by an older
                # version may.
                text = _short(redact_secrets(v["template"]), _TEMPLATE_CHARS)
                out.append(
                    Anomaly(
                        "new_error_template",
                        f"new error template: {text!r} ({v['count']} {lines})",
                        v["first"],
                        v["count"],
                        template=v["template"],
                        sample=v["sample"],
                    )
                )
        out.sort(key=lambda a: (not a.severity_down, _KIND_ORDER[a.kind], a.since, a.reason))
        return out

    def _silence(self, now: float) -> Anomaly | None:
        limit = self._silence_limit(now)
        if limit is None:
            return None
        since = self._started if self._last_line is None else self._last_line
        quiet = now - since
        if quiet <= limit[0]:
            return None
        return Anomaly(
            "silence",
            f"no log line for {format_duration(quiet)} ({limit[1]})",
            since,
            0,
            severity_down=self._rules.silence_is_down,
        )

    def _spike(self, now: float) -> Anomaly | None:
        if self._bucket is None:
            return None
        r = self._rules
        bucket = math.floor(now / r.interval_s)
        width = format_duration(r.interval_s)
        if bucket in (self._bucket, self._bucket + 1) and self._is_spike(self._count, now):
            # The bucket being counted (complete if `now` is past it).
            count, mean, dev = self._count, self._mean, self._dev
            template = self._top_template()
            sample = self._sample
            since = self._spike_since
            if since is None:
                since = self._bucket * r.interval_s
        elif (
            bucket == self._bucket
            and self._last is not None
            and self._last["spike"]
            and self._last["bucket"] == bucket - 1
        ):
            last = self._last
            count, mean, dev = last["count"], last["mean"], last["dev"]
            template, sample = last["template"], last["sample"]
            since = self._spike_since
            if since is None:
                since = last["bucket"] * r.interval_s
        else:
            return None
        return Anomaly(
            "error_spike",
            f"error rate spike: {count} error lines in {width} "
            f"vs usual {mean:.0f}±{max(1.0, dev):.0f}",
            since,
            count,
            template=template,
            sample=sample,
        )

    # -- state --------------------------------------------------------------

    def miner_state(self) -> bytes:
        """The template miner's state, for `LogAnalyzer(miner_state=...)`."""
        return self._miner.state()

    @property
    def miner_version(self) -> int:
        """Goes up whenever the templates change: `miner_state()` is then
        worth saving again."""
        return self._miner.version

    def state(self) -> dict[str, Any]:
        """Everything else learnt, JSON-able, for `LogAnalyzer(state=...)`;
        its sample lines with their secrets masked (it is written to disk)."""
        last = None if self._last is None else dict(self._last)
        if last is not None:
            last["sample"] = _masked(last["sample"])
        return {
            "v": _STATE_VERSION,
            "started": self._started,
            "interval_s": self._rules.interval_s,
            "last_line": self._last_line,
            "gaps": [list(g) for g in self._gaps],
            "bucket": self._bucket,
            "count": self._count,
            "top": [[k, v] for k, v in self._top.items()],
            "sample": _masked(self._sample),
            "mean": self._mean,
            "dev": self._dev,
            "closed": self._closed_buckets,
            "last": last,
            "spike_since": self._spike_since,
            "new": [[k, {**v, "sample": _masked(v["sample"])}] for k, v in self._new.items()],
            "watched": list(self._rules.watched),
            "hits": [[k, {**v, "sample": _masked(v["sample"])}] for k, v in self._hits.items()],
        }

    def _load(self, s: Mapping[str, Any]) -> None:
        if s["v"] != _STATE_VERSION:
            raise ValueError(f"unknown version {s['v']!r}")
        self._started = float(s["started"])
        self._last_line = None if s["last_line"] is None else float(s["last_line"])
        self._gaps = [[int(b), float(g)] for b, g in s["gaps"]][-_GAP_BLOCKS:]
        self._new = {int(k): _followed(v) for k, v in s["new"]}
        if list(s["watched"]) == list(self._rules.watched):
            self._hits = {int(k): _hit(v) for k, v in s["hits"]}
        if float(s["interval_s"]) != self._rules.interval_s:
            return  # buckets of another width: the rate baseline is relearnt
        self._bucket = None if s["bucket"] is None else int(s["bucket"])
        self._count = int(s["count"])
        self._top = {int(k): int(v) for k, v in s["top"]}
        self._sample = None if s["sample"] is None else str(s["sample"])
        self._mean, self._dev = float(s["mean"]), float(s["dev"])
        self._closed_buckets = int(s["closed"])
        last = s["last"]
        if last is not None:
            self._last = {
                "bucket": int(last["bucket"]),
                "count": int(last["count"]),
                "spike": bool(last["spike"]),
                "mean": float(last["mean"]),
                "dev": float(last["dev"]),
                "template": None if last["template"] is None else str(last["template"]),
                "sample": None if last["sample"] is None else str(last["sample"]),
            }
        self._spike_since = None if s["spike_since"] is None else float(s["spike_since"])


def _masked(sample: str | None) -> str | None:
    return None if sample is None else redact_secrets(sample)


def _followed(v: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "first": float(v["first"]),
        "last": float(v["last"]),
        "count": int(v["count"]),
        "template": str(v["template"]),
        "sample": str(v["sample"]),
    }


def _hit(v: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "since": float(v["since"]),
        "last": float(v["last"]),
        "count": int(v["count"]),
        "sample": str(v["sample"]),
    }
