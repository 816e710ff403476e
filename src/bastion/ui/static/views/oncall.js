// On-call: what is burning now. Latency quantiles and error rates per endpoint and version,
// drift and anomaly rates, burn rates, firing alerts, recent deployments and rollbacks, and a
// rollback button for whoever may deploy.

import { ApiError } from "../api.js";
import { badge, empty, figure, fmt, h, section, table, who } from "../dom.js";
import { groupedBars } from "../charts.js";

const WINDOW_NAMES = { 300: "5m", 1800: "30m", 3600: "1h", 7200: "2h", 21600: "6h", 86400: "1d", 259200: "3d" };

function roleBadge(role) {
  const kind = { stable: "good", canary: "warn", shadow: "info", previous: null, retired: null }[role];
  return badge(role, kind);
}

function rate(value, hot, testid) {
  return figure("td", testid, value, fmt.pct(value), { class: ["num", value !== null && value >= hot && "hot"] });
}

function versionRows(e) {
  return e.versions.map((v) => {
    const id = `oncall-${e.endpoint}-v${v.version}`;
    return h(
      "tr",
      { testid: id },
      h("td", null, `v${v.version}`),
      h("td", null, roleBadge(v.role)),
      figure("td", `${id}-requests`, v.requests, fmt.int(v.requests), { class: "num" }),
      rate(v.error_rate, 0.01, `${id}-error-rate`),
      figure("td", `${id}-p50`, v.latency_p50, fmt.ms(v.latency_p50), { class: "num" }),
      figure("td", `${id}-p95`, v.latency_p95, fmt.ms(v.latency_p95), { class: "num" }),
      figure("td", `${id}-p99`, v.latency_p99, fmt.ms(v.latency_p99), { class: "num" }),
      h("td", { class: "num" }, figure("span", `${id}-anomaly-rate`, v.anomaly_rate, fmt.pct(v.anomaly_rate)), v.anomaly_field ? h("div", { class: "help" }, v.anomaly_field) : null),
      figure("td", `${id}-drift`, v.drift_score, v.drift_score === null ? "no profile" : v.drift_measured ? fmt.num(v.drift_score) : "too few rows", {
        class: ["num", v.drift_measured && v.drift_score >= 0.2 && "hot"],
        title: v.drifted.length ? `drifted: ${v.drifted.join(", ")}` : null,
      }),
      figure("td", `${id}-divergence`, v.shadow_divergence, fmt.pct(v.shadow_divergence), { class: "num" }),
    );
  });
}

function burnTable(e) {
  const rates = (e.slo && e.slo.burn_rates) || null;
  if (!rates) return empty("Burn rates are computed by a serving process.");
  const windows = Object.keys(rates.availability || {}).sort((a, b) => Number(a) - Number(b));
  return table(
    ["SLO", ...windows.map((w) => WINDOW_NAMES[w] || `${w}s`)],
    Object.entries(rates).map(([slo, byWindow]) =>
      h(
        "tr",
        null,
        h("th", { scope: "row" }, slo),
        windows.map((w) => figure("td", `burn-${e.endpoint}-${slo}-${w}`, byWindow[w], `${fmt.num(byWindow[w], 2)}×`, { class: ["num", byWindow[w] >= 1 && "hot"] })),
      ),
    ),
    { class: "burn" },
  );
}

// The outcome of the last action, shown above the endpoints after the refresh it triggers.
let lastMessage = null;

function rollbackControl(e, ctx) {
  const target = e.canary !== null ? `canary v${e.canary}` : e.previous !== null ? `v${e.stable} (back to v${e.previous})` : null;
  if (target === null || e.state === "killed") return null;
  const box = h("div", { class: "rollback" });
  const start = h(
    "button",
    {
      type: "button",
      class: "danger",
      testid: `rollback-${e.endpoint}`,
      onclick: () => {
        const reason = h("input", { type: "text", maxlength: 2000, placeholder: "reason (ledgered)", "aria-label": "reason", testid: `rollback-reason-${e.endpoint}` });
        const confirm = h(
          "button",
          {
            type: "button",
            class: "danger",
            testid: `rollback-confirm-${e.endpoint}`,
            onclick: async () => {
              confirm.disabled = true;
              box.dataset.busy = "true";
              try {
                await ctx.api(`/v1/endpoints/${encodeURIComponent(e.endpoint)}/rollout/rollback`, { method: "POST", body: { reason: reason.value } });
                lastMessage = { ok: true, text: `Rolled back ${target} on ${e.endpoint}.` };
              } catch (error) {
                const text = error instanceof ApiError ? `${error.message} (${error.code})` : String(error);
                lastMessage = { ok: false, text: `Rollback refused: ${text}` };
              }
              delete box.dataset.busy;
              ctx.refresh();
            },
          },
          "Confirm rollback",
        );
        const cancel = h("button", { type: "button", class: "secondary", onclick: () => box.replaceChildren(start) }, "Cancel");
        box.replaceChildren(h("div", { class: "confirm", "data-busy": "true" }, `Roll back ${target} on ${e.endpoint}?`, reason, confirm, cancel));
        reason.focus();
      },
    },
    `Roll back ${target}`,
  );
  box.appendChild(start);
  return box;
}

export default {
  id: "oncall",
  title: "On-call",
  needs: ["monitor.read"],

  async render(ctx) {
    const [doc, alerts] = await Promise.all([ctx.api("/v1/dashboards/oncall?events=30"), ctx.api("/v1/alerts")]);
    const message = lastMessage
      ? h("p", { class: ["result", lastMessage.ok ? "ok" : "fail"], testid: "action-result", role: "status" }, lastMessage.text)
      : null;

    const alertRows = alerts.map((a) =>
      h(
        "tr",
        { testid: "alert" },
        h("td", null, badge(a.severity, a.severity === "page" ? "bad" : "warn")),
        h("td", null, a.name),
        h("td", null, a.endpoint || "—"),
        h("td", null, a.summary),
        h("td", null, fmt.time(a.started_at)),
      ),
    );

    const endpoints = doc.endpoints.map((e) => {
      const groups = e.versions.map((v) => ({ label: `v${v.version} ${v.role}`, values: [(v.latency_p95 || 0) * 1000, (v.latency_p99 || 0) * 1000] }));
      return h(
        "section",
        { class: "panel", testid: `oncall-endpoint-${e.endpoint}` },
        h(
          "div",
          { class: "panel-head" },
          h("h2", null, e.endpoint),
          badge(e.state, e.state === "serving" ? "good" : "bad", `state-${e.endpoint}`),
          figure("span", `serving-${e.endpoint}`, `${e.stable ?? ""}/${e.canary ?? ""}`, `stable ${e.stable === null ? "—" : `v${e.stable}`}${e.canary === null ? "" : ` · canary v${e.canary} at ${e.canary_weight} %`}${e.shadow === null ? "" : ` · shadow v${e.shadow}`}`),
          doc.can_roll_back ? rollbackControl(e, ctx) : null,
        ),
        e.versions.length
          ? table(["version", "role", "requests", "error rate", "p50", "p95", "p99", "anomaly rate", "drift", "shadow divergence"], versionRows(e))
          : empty("No traffic in the window."),
        h(
          "div",
          { class: "grid2" },
          e.versions.length
            ? groupedBars({
                groups,
                series: [{ name: "p95" }, { name: "p99" }],
                yFormat: (v) => `${fmt.num(v, 1)} ms`,
                caption: "Latency per version over the window (25 % bucket resolution)",
                testid: `chart-latency-${e.endpoint}`,
                height: 180,
              })
            : h("div"),
          h("div", null, h("h3", null, "Error-budget burn rate (1× spends the budget over the period)"), burnTable(e)),
        ),
      );
    });

    const eventRows = doc.events.map((ev) =>
      h(
        "tr",
        { class: ev.action === "rollback" ? "rollback" : null, testid: "deploy-event", "data-action": ev.action, "data-endpoint": ev.endpoint },
        h("td", null, fmt.time(ev.at)),
        h("td", null, ev.endpoint),
        h("td", null, badge(ev.action, ev.action === "rollback" || ev.action === "kill" ? "bad" : ev.action === "promote" ? "good" : "info")),
        h("td", null, ev.version === null ? "—" : `v${ev.version}`),
        h("td", { class: "num" }, ev.weight === null ? "—" : `${ev.weight} %`),
        h("td", null, who(ev.actor)),
        h("td", null, ev.reason || ""),
      ),
    );

    return h(
      "div",
      null,
      h("div", { class: "controls" }, h("h1", null, "On-call")),
      message,
      section(
        `Active alerts (${alerts.length})`,
        { testid: "alerts" },
        alerts.length ? table(["severity", "alert", "endpoint", "summary", "since"], alertRows) : empty("Nothing is firing."),
      ),
      endpoints.length ? endpoints : section("Endpoints", null, empty("No endpoints yet.")),
      section(
        "Recent deployments and rollbacks",
        { testid: "deploy-events" },
        doc.events.length ? table(["when", "endpoint", "action", "version", "weight", "actor", "reason"], eventRows) : empty("No deployments yet."),
      ),
    );
  },
};
