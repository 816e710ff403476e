// Executive: is the service up and fast, how much is it used, what does it cost, how good are
// the models, and what went wrong lately.

import { badge, empty, figure, fmt, h, section, table, who } from "../dom.js";
import { barChart, lineChart, meter } from "../charts.js";

const WINDOWS = [15, 60, 360];
let minutes = 60;
const DAY = 86400;

function card(label, testid, value, text, sub) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), figure("div", testid, value, text, { class: "value" }), h("div", { class: "sub" }, sub));
}

function share(good, total) {
  return total ? good / total : null;
}

function driftBadge(q) {
  if (q.drift_score === null || q.drift_score === undefined) return badge("no profile", null);
  if (!q.drift_measured) return badge("too few rows", null);
  return badge(fmt.num(q.drift_score), q.drift_score < 0.1 ? "good" : q.drift_score < 0.2 ? "warn" : "bad");
}

function qualityRows(doc) {
  const rows = [];
  for (const e of doc.endpoints) {
    for (const q of e.quality || []) {
      const metrics = Object.entries(q.metrics);
      rows.push(
        h(
          "tr",
          { testid: `quality-${e.endpoint}-v${q.version}` },
          h("td", null, e.endpoint),
          h("td", null, badge(q.role, q.role === "canary" ? "warn" : "info")),
          h("td", null, `v${q.version}`),
          h("td", null, metrics.length ? metrics.map(([k, v]) => `${k} ${fmt.num(v)}`).join(" · ") : "—"),
          h("td", { class: "num" }, fmt.pct(q.error_rate)),
          h("td", null, driftBadge(q)),
          h("td", { class: "num" }, fmt.pct(q.shadow_divergence)),
        ),
      );
    }
  }
  return rows;
}

export default {
  id: "executive",
  title: "Executive",
  needs: ["monitor.read"],

  async render(ctx) {
    const [doc, incidents] = await Promise.all([
      ctx.api(`/v1/dashboards/executive?minutes=${minutes}`),
      ctx.api("/v1/incidents?limit=50"),
    ]);
    const t = doc.totals;
    const now = Date.now() / 1000;
    const recent = incidents.filter((i) => now - Date.parse(i.created_at) / 1000 <= 30 * DAY);
    const picker = h(
      "select",
      {
        "aria-label": "time window",
        testid: "window",
        onchange: (event) => {
          minutes = Number(event.target.value);
          ctx.refresh();
        },
      },
      WINDOWS.map((m) => h("option", { value: m, selected: m === minutes }, m < 60 ? `last ${m} min` : `last ${m / 60} h`)),
    );

    const cards = h(
      "div",
      { class: "cards" },
      card("Availability", "kpi-availability", t.availability, fmt.pct(t.availability, 3), `objective ${fmt.pct(doc.objectives.availability, 1)} · last ${minutes} min`),
      card("Latency SLI", "kpi-latency", t.latency_sli, fmt.pct(t.latency_sli, 2), `within ${doc.objectives.latency_threshold_ms} ms · objective ${fmt.pct(doc.objectives.latency, 0)}`),
      card("Requests", "kpi-requests", t.requests, fmt.int(t.requests), `last ${minutes} min · ${fmt.int(t.requests_since_start)} since server start`),
      card(
        "Compute time",
        "kpi-compute",
        t.compute_seconds,
        fmt.seconds(t.compute_seconds),
        t.compute_ms_per_request === null ? "cost proxy: model time since server start" : `cost proxy · ${t.compute_ms_per_request.toFixed(2)} ms per request`,
      ),
      card("Incidents", "kpi-incidents", recent.length, fmt.int(recent.length), "signed snapshots, last 30 days"),
      card("Endpoints serving", "kpi-serving", t.serving, `${t.serving} of ${t.endpoints}`, "endpoints not killed"),
    );

    const avail = doc.series.map((p) => ({ x: p.t, y: share(p.requests - p.errors, p.requests) }));
    const fast = doc.series.map((p) => ({ x: p.t, y: share(p.requests - p.errors - p.slow, p.requests - p.errors) }));
    const seen = [...avail, ...fast].map((p) => p.y).filter((y) => y !== null);
    const floor = seen.length ? Math.min(0.99, Math.floor(Math.min(...seen) * 100) / 100) : 0.9;
    const trends = lineChart({
      series: [
        { name: "availability", points: avail },
        { name: `within ${doc.objectives.latency_threshold_ms} ms`, points: fast },
      ],
      yMin: floor,
      yMax: 1,
      yFormat: (v) => fmt.pct(v, 1),
      xFormat: fmt.clock,
      caption: "Share of good requests per minute (gaps: no traffic)",
      testid: "chart-trends",
    });
    const every = Math.max(1, Math.ceil(doc.series.length / 8));
    const volume = barChart({
      bars: doc.series.map((p) => ({ label: fmt.clock(p.t), value: p.requests, title: `${fmt.clock(p.t)} UTC: ${fmt.int(p.requests)} requests, ${fmt.int(p.errors)} errors` })),
      labelEvery: every,
      yFormat: (v) => fmt.int(v),
      caption: "Requests per minute, all endpoints",
      testid: "chart-volume",
    });

    const endpointRows = doc.endpoints.map((e) =>
      h(
        "tr",
        { testid: `exec-endpoint-${e.endpoint}` },
        h("td", null, e.endpoint),
        h("td", null, e.model),
        h("td", null, badge(e.state, e.state === "serving" ? "good" : "bad")),
        h("td", null, e.stable === null ? "—" : `v${e.stable}`, e.canary === null ? "" : ` + canary v${e.canary} @ ${e.canary_weight} %`),
        figure("td", `exec-${e.endpoint}-requests`, e.requests, fmt.int(e.requests), { class: "num" }),
        figure("td", `exec-${e.endpoint}-availability`, e.availability, fmt.pct(e.availability, 3), { class: "num" }),
        figure("td", `exec-${e.endpoint}-latency`, e.latency_sli, fmt.pct(e.latency_sli), { class: "num" }),
        h("td", null, e.budget ? meter(e.budget.availability, { label: `availability budget left ${fmt.pct(e.budget.availability, 1)}`, testid: `exec-${e.endpoint}-budget` }) : "—", e.budget ? ` ${fmt.pct(e.budget.availability, 1)}` : ""),
        h("td", null, e.budget ? meter(e.budget.latency, { label: `latency budget left ${fmt.pct(e.budget.latency, 1)}` }) : "—", e.budget ? ` ${fmt.pct(e.budget.latency, 1)}` : ""),
        figure("td", `exec-${e.endpoint}-compute`, e.compute_seconds, fmt.seconds(e.compute_seconds), { class: "num" }),
        figure("td", `exec-${e.endpoint}-since-start`, e.requests_since_start, fmt.int(e.requests_since_start), { class: "num" }),
      ),
    );

    const quality = doc.quality_visible
      ? qualityRows(doc)
      : null;

    const incidentRows = incidents.slice(0, 10).map((i) =>
      h("tr", null, h("td", null, fmt.time(i.created_at)), h("td", null, i.endpoint), h("td", null, badge(i.trigger, i.trigger === "rollback" ? "bad" : "info")), h("td", null, who(i.created_by)), h("td", { class: "mono" }, fmt.short(i.digest))),
    );

    return h(
      "div",
      null,
      h("div", { class: "controls" }, h("h1", null, "Executive overview"), picker),
      cards,
      h("div", { class: "grid2" }, section("Availability and latency", null, trends), section("Inference volume", null, volume)),
      section(
        "Endpoints",
        { testid: "exec-endpoints" },
        doc.endpoints.length
          ? table(["endpoint", "model", "state", "serving", "requests", "availability", "latency SLI", "availability budget", "latency budget", "compute time", "since start"], endpointRows)
          : empty("No endpoints yet."),
      ),
      section(
        "Model quality",
        { testid: "exec-quality" },
        quality === null
          ? empty("Registered metrics need the model.read permission.")
          : quality.length
            ? table(["endpoint", "role", "version", "registered metrics", "live error rate", "drift score", "shadow divergence"], quality)
            : empty("Nothing is serving."),
      ),
      section(
        "Recent incidents",
        { testid: "exec-incidents" },
        incidents.length ? table(["taken", "endpoint", "trigger", "by", "digest"], incidentRows) : empty("No incidents."),
      ),
    );
  },
};
