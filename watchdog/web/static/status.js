// The watchdog's status page: polls /api/v1/status-page/live every few
// seconds and swaps in what changed (the parts rendered by the server, the
// states the picture is coloured with), says how fresh that is, and says
// so, greying the states, when the watchdog cannot be reached: a stale
// page must never look green. No library: the picture is the server's SVG.
"use strict";

(function () {
  const body = document.body;
  const refreshMs = Math.max(500, 1000 * Number(body.dataset.refreshS || 2));
  const liveUrl = body.dataset.liveUrl;
  const nodeUrl = body.dataset.nodeUrl;
  const TIMEOUT_MS = 5000;
  const GLYPHS = { up: "\u2713", unknown: "?", degraded: "\u25b2", down: "\u2715" };

  const init = JSON.parse(document.getElementById("live-init").textContent);
  const nodes = new Map();
  for (const el of document.querySelectorAll(".topology .node")) {
    const label = el.getAttribute("aria-label") || "";
    const cut = label.lastIndexOf(": ");
    nodes.set(el.dataset.node, { el: el, base: cut >= 0 ? label.slice(0, cut) : label });
  }
  const hot = document.querySelector(".topology path.hot");
  const banner = document.getElementById("banner");
  const details = document.getElementById("details");

  let current = init;
  let serverNow = init.taken_at; // the daemon's clock, as of receivedAt
  let receivedAt = Date.now();
  let lastSuccess = new Date();
  let unreachable = false;
  let refreshes = 0;
  let selected = null;
  const parts = {};
  for (const el of document.querySelectorAll("[data-part]")) parts[el.dataset.part] = el.innerHTML;

  // --- words -----------------------------------------------------------

  function duration(seconds) {
    // As the server's format_duration writes durations of a second or more.
    let s = Math.max(0, Math.round(seconds));
    if (s === 0) return "0s";
    const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
    let out = "";
    for (const [name, size] of units) {
      if (s >= size) {
        out += Math.floor(s / size) + name;
        s %= size;
      }
    }
    return out;
  }

  function clock(date) {
    // As the server writes times: UTC, to the second.
    return date.toISOString().slice(11, 19) + " UTC";
  }

  function estimatedNow() {
    return serverNow + (Date.now() - receivedAt) / 1000;
  }

  // Relative times and recovery deadlines, every second: outside the live
  // regions, so that a screen reader is not told the time every second.
  function tick() {
    const now = estimatedNow();
    for (const el of document.querySelectorAll("[data-ago]")) {
      const age = now - Number(el.dataset.ago);
      if (el.id === "age") {
        el.textContent = "\u00b7 updated " + duration(unreachable ? (Date.now() - lastSuccess) / 1000 : age) + " ago";
      } else {
        el.textContent = "(" + duration(age) + " ago)";
      }
    }
    for (const el of document.querySelectorAll("[data-deadline]")) {
      const left = Number(el.dataset.deadline) - now;
      const target = el.dataset.target;
      if (left >= 0) {
        el.textContent = duration(Math.max(1, left)) + " left of " + target;
        el.classList.remove("over");
      } else {
        el.textContent = "over by " + duration(Math.max(1, -left)) + " (target " + target + ")";
        el.classList.add("over");
      }
    }
  }

  // --- the picture -----------------------------------------------------

  function paint(data) {
    const takes = data.takes || {};
    for (const [name, node] of nodes) {
      const state = data.nodes[name] || "up";
      const el = node.el;
      const was = el.dataset.state || [...el.classList].find((c) => c.startsWith("st-")).slice(3);
      const root = Boolean(takes[name]);
      if (was !== state || el.classList.contains("root") !== root) {
        el.classList.remove("st-" + was);
        el.classList.add("st-" + state);
        el.classList.toggle("root", root);
        el.dataset.state = state;
        let label = node.base + ": " + state;
        if (root) {
          const n = takes[name].length;
          label += "; takes " + n + " node" + (n === 1 ? "" : "s") + " down";
        }
        el.setAttribute("aria-label", label);
        const title = el.querySelector("title");
        if (title) title.textContent = label;
        const glyph = el.querySelector(".glyph");
        if (glyph) glyph.textContent = GLYPHS[state] || "?";
      }
    }
    if (hot) hot.setAttribute("d", data.hot || "");
    mark(selected);
  }

  function mark(name) {
    for (const el of document.querySelectorAll(".topology .node.sel, .topology .node.taken")) {
      el.classList.remove("sel", "taken");
    }
    if (name === null) return;
    const node = nodes.get(name);
    if (node) node.el.classList.add("sel");
    for (const other of (current.takes || {})[name] || []) {
      const found = nodes.get(other);
      if (found) found.el.classList.add("taken");
    }
  }

  // --- polling ---------------------------------------------------------

  function setStale(message) {
    body.classList.add("stale");
    banner.textContent = message;
    banner.hidden = false;
  }

  function clearStale() {
    body.classList.remove("stale");
    banner.hidden = true;
    banner.textContent = "";
  }

  function apply(data) {
    if (data.topology !== current.topology) {
      // A reload changed the estate: the picture is drawn again.
      window.location.reload();
      return;
    }
    let changed = false;
    for (const [name, html] of Object.entries(data.parts)) {
      if (parts[name] !== html) {
        const el = document.querySelector('[data-part="' + name + '"]');
        if (el) el.innerHTML = html;
        parts[name] = html;
        changed = true;
      }
    }
    if (JSON.stringify(data.nodes) !== JSON.stringify(current.nodes)) changed = true;
    current = data;
    paint(data);
    if (changed && selected !== null) show(selected, false);
  }

  async function poll() {
    const started = performance.now();
    const control = new AbortController();
    const timer = setTimeout(() => control.abort(), TIMEOUT_MS);
    try {
      const answer = await fetch(liveUrl, { cache: "no-store", signal: control.signal });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const data = await answer.json();
      serverNow = data.now;
      receivedAt = Date.now();
      lastSuccess = new Date();
      // "As of" and "updated N ago" follow the daemon's latest update.
      const age = document.getElementById("age");
      if (age) age.dataset.ago = String(data.taken_at);
      const asOf = document.querySelector("#freshness time");
      if (asOf) {
        const taken = new Date(1000 * data.taken_at);
        asOf.dateTime = taken.toISOString();
        asOf.textContent = clock(taken);
      }
      unreachable = false;
      apply(data);
      refreshes += 1;
      // How long a refresh took (fetch and apply), for benchmarks/status_page.py.
      body.dataset.lastRefreshMs = (performance.now() - started).toFixed(1);
      body.dataset.refreshes = String(refreshes);
      if (data.healthy === false) {
        const since = new Date(1000 * data.taken_at);
        setStale(
          "The watchdog's daemon has not been heard from since " + clock(since) +
          ": what you see may be stale."
        );
      } else {
        clearStale();
      }
    } catch (err) {
      if (!unreachable) {
        unreachable = true;
        setStale(
          "The watchdog cannot be reached since " + clock(lastSuccess) +
          ": what you see may be stale."
        );
      }
      body.dataset.failures = String(Number(body.dataset.failures || 0) + 1);
    } finally {
      clearTimeout(timer);
      tick();
      setTimeout(poll, refreshMs);
    }
  }

  // --- details of a node -------------------------------------------------

  async function show(name, focus) {
    selected = name;
    mark(name);
    try {
      const answer = await fetch(nodeUrl + encodeURIComponent(name), { cache: "no-store" });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const html = await answer.text();
      if (selected !== name) return;
      details.innerHTML = html;
      if (focus) {
        const heading = details.querySelector("h3");
        if (heading) heading.focus();
      }
    } catch (err) {
      if (focus) details.textContent = "The details of " + name + " cannot be read now.";
    }
  }

  const graph = document.querySelector(".graph");
  if (graph) {
    graph.addEventListener("click", (event) => {
      const el = event.target.closest(".node");
      if (el) show(el.dataset.node, true);
    });
    graph.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" && event.key !== " ") return;
      const el = event.target.closest(".node");
      if (el) {
        event.preventDefault();
        show(el.dataset.node, true);
      }
    });
  }
  details.addEventListener("click", (event) => {
    const link = event.target.closest(".to-node");
    if (!link) return;
    event.preventDefault();
    const node = nodes.get(link.dataset.node);
    if (node) node.el.scrollIntoView({ block: "nearest", inline: "nearest" });
    show(link.dataset.node, true);
  });

  // --- what if ---------------------------------------------------------

  const form = document.getElementById("whatif");
  const result = document.getElementById("whatif-result");
  const clear = document.getElementById("wi-clear");

  function unmarkWhatIf() {
    for (const el of document.querySelectorAll(".topology .node[class*='wi-']")) {
      el.classList.remove("wi-act", "wi-down", "wi-degraded", "wi-spare");
    }
  }

  function element(tag, text, cls) {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    if (cls) el.className = cls;
    return el;
  }

  function summary(impacted, what) {
    const critical = impacted.filter((i) => i.critical);
    const down = critical.filter((i) => i.after === "down").map((i) => i.node);
    const degraded = critical.filter((i) => i.after === "degraded" && i.before !== "degraded").map((i) => i.node);
    const spare = critical.filter((i) => i.no_spare).map((i) => i.node);
    const effects = [];
    if (down.length) effects.push("takes critical " + down.join(", ") + " down");
    if (degraded.length) effects.push("degrades critical " + degraded.join(", "));
    if (spare.length) effects.push("leaves critical " + spare.join(", ") + " without a spare");
    if (!effects.length) {
      const n = impacted.length;
      return what + ": no critical node gets worse" + (n ? " (" + n + " other node" + (n === 1 ? "" : "s") + " impacted)" : "");
    }
    return what + " " + effects.join("; ");
  }

  function drawWhatIf(answer) {
    unmarkWhatIf();
    result.replaceChildren();
    const what = answer.actions.map((a) => a.action + " " + a.node).join(", ");
    const verdict = answer.verdict;
    const cls = verdict === "critical" ? "v-critical" : verdict === "warning" ? "v-warning" : "v-ok";
    let head = verdict.toUpperCase() + (answer.uncertain ? " (uncertain)" : "") + ": ";
    head += answer.uncertain && answer.if_unknown_down
      ? "if unknown " + answer.unknown.join(", ") + " " + (answer.unknown.length === 1 ? "is" : "are") + " down, " + summary(answer.if_unknown_down.impacted, what)
      : summary(answer.impacted, what);
    result.append(element("p", head, "verdict " + cls));
    const list = element("ul");
    for (const item of answer.impacted) {
      const li = element("li");
      const name = element("strong", item.node);
      li.append(name, document.createTextNode(
        (item.critical ? " (critical)" : "") + ": " + item.before + " \u2192 " + item.after +
        (item.no_spare ? ", no spare left" : "") + (item.transient ? " (transient)" : "")
      ));
      const kinds = Object.fromEntries(answer.actions.map((a) => [a.node, a.action]));
      const chain = item.reason.map((n) => (kinds[n] ? n + " (" + kinds[n] + ")" : n));
      li.append(element("div", chain.join(" \u2190 "), "reason"));
      list.append(li);
      const node = nodes.get(item.node);
      if (node) {
        node.el.classList.add(item.after === "down" ? "wi-down" : item.after === "degraded" ? "wi-degraded" : "wi-spare");
      }
    }
    for (const action of answer.actions) {
      const node = nodes.get(action.node);
      if (node) node.el.classList.add("wi-act");
    }
    if (answer.impacted.length) {
      result.append(element("p", answer.impacted.length + " node" + (answer.impacted.length === 1 ? "" : "s") + " impacted (outlined in the picture, dashed):"), list);
    }
    clear.hidden = false;
  }

  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const action = document.getElementById("wi-action").value;
      const node = document.getElementById("wi-node").value.trim();
      if (!node) return;
      result.replaceChildren(element("p", "Working it out\u2026", "muted"));
      try {
        const answer = await fetch(
          "/api/v1/blast-radius?" + encodeURIComponent(action) + "=" + encodeURIComponent(node),
          { cache: "no-store" }
        );
        const data = await answer.json();
        if (!answer.ok) {
          unmarkWhatIf();
          result.replaceChildren(...(data.problems || []).map((p) => element("p", p.message, "warning")));
          return;
        }
        drawWhatIf(data);
      } catch (err) {
        result.replaceChildren(element("p", "The watchdog cannot be reached: no answer.", "warning"));
      }
    });
    clear.addEventListener("click", () => {
      unmarkWhatIf();
      result.replaceChildren();
      clear.hidden = true;
    });
  }

  // --- start -------------------------------------------------------------

  paint(current);
  tick();
  setInterval(tick, 1000);
  setTimeout(poll, refreshMs);
  body.dataset.readyMs = performance.now().toFixed(1);
  body.dataset.ready = "1";
  body.dataset.refreshes = "0";
})();
