// Debug: why is a version behaving differently? Each feature's live distribution over the
// window beside its training reference (most drifted first), the prediction's, the recent
// anomalous inputs (values are never kept: redacted), and shadow divergence.

import { badge, empty, figure, fmt, h, section, table } from "../dom.js";
import { groupedBars } from "../charts.js";

const FEATURES = 60;

function shares(counts) {
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((c) => (total ? c / total : 0));
}

function statusBadge(status) {
  const kind = { drift: "bad", ok: "good", insufficient: null, unmeasured: null }[status];
  return badge(status, kind);
}

function distribution(f, testid) {
  const ref = shares(f.reference);
  const live = shares(f.live);
  const liveRows = f.live.reduce((a, b) => a + b, 0);
  const refRows = f.reference.reduce((a, b) => a + b, 0);
  return h(
    "div",
    { class: "feature", testid, "data-name": f.name, "data-status": f.status },
    h("h3", null, h("span", { class: "name", title: f.name }, f.name), statusBadge(f.status)),
    h(
      "div",
      { class: "stats" },
      `PSI ${fmt.num(f.psi)} · JS ${fmt.num(f.js)} · p ${f.p_value === null ? "—" : Number(f.p_value).toPrecision(2)} · `,
      figure("span", `${testid}-live-rows`, liveRows, `${fmt.int(liveRows)} live`),
      ` / ${fmt.int(refRows)} reference rows`,
    ),
    groupedBars({
      groups: f.labels.map((label, i) => ({ label, values: [ref[i], live[i]] })),
      series: [{ name: "reference" }, { name: "live" }],
      yFormat: (v) => fmt.pct(v, 0),
      width: 420,
      height: 210,
      rotate: true,
    }),
  );
}

export default {
  id: "debug",
  title: "Debug",
  needs: ["monitor.read"],

  async render(ctx) {
    const endpoints = await ctx.api("/v1/endpoints");
    if (!endpoints.length) return section("Debug", null, empty("No endpoints yet."));
    const names = endpoints.map((e) => e.name);
    const name = names.includes(ctx.args[0]) ? ctx.args[0] : names[0];
    const doc = await ctx.api(`/v1/dashboards/debug/${encodeURIComponent(name)}?features=${FEATURES}`);
    const numbers = doc.versions.map((v) => v.version);
    const preferred = doc.canary !== null ? String(doc.canary) : doc.stable !== null ? String(doc.stable) : numbers[0];
    const wanted = numbers.includes(ctx.args[1]) ? ctx.args[1] : numbers.includes(preferred) ? preferred : numbers[0];
    const version = doc.versions.find((v) => v.version === wanted);

    const endpointPick = h(
      "select",
      { "aria-label": "endpoint", testid: "debug-endpoint", onchange: (ev) => ctx.go("debug", ev.target.value) },
      names.map((n) => h("option", { value: n, selected: n === name }, n)),
    );
    const versionPick = h(
      "select",
      { "aria-label": "version", testid: "debug-version", onchange: (ev) => ctx.go("debug", name, ev.target.value) },
      doc.versions.map((v) => h("option", { value: v.version, selected: v.version === wanted }, `v${v.version} (${v.role})`)),
    );

    let body;
    if (!version) {
      body = section("Distributions", null, empty("No traffic in the window: nothing to compare yet."));
    } else if (!version.profile) {
      body = section("Distributions", null, empty(`v${version.version} has no reference profile (registered without training data in its lineage).`));
    } else {
      body = h(
        "div",
        null,
        h(
          "div",
          { class: "cards" },
          h("div", { class: "card" }, h("div", { class: "label" }, "Drift score"), figure("div", "debug-drift", version.drift_score, fmt.num(version.drift_score), { class: "value" }), h("div", { class: "sub" }, version.drift_measured ? "largest Jensen–Shannon distance" : "not judged yet: too few live rows per feature")),
          h("div", { class: "card" }, h("div", { class: "label" }, "Live rows"), figure("div", "debug-rows", version.rows, fmt.int(version.rows), { class: "value" }), h("div", { class: "sub" }, `${fmt.int(version.requests)} requests in the window`)),
          h("div", { class: "card" }, h("div", { class: "label" }, "Reference rows"), figure("div", "debug-reference-rows", version.reference_rows, fmt.int(version.reference_rows), { class: "value" }), h("div", { class: "sub" }, "training data profile")),
          h("div", { class: "card" }, h("div", { class: "label" }, "Features drifted"), figure("div", "debug-drifted", version.features.filter((f) => f.status === "drift").length, `${version.features.filter((f) => f.status === "drift").length} of ${version.features_total}`, { class: "value" }), h("div", { class: "sub" }, "PSI or JS over threshold, significant")),
        ),
        version.prediction
          ? section("Prediction", { testid: "debug-prediction" }, h("div", { class: "features" }, distribution({ name: "prediction", ...version.prediction }, "prediction")))
          : null,
        section(
          `Features, most drifted first${version.features_total > version.features.length ? ` (top ${version.features.length} of ${version.features_total})` : ""}`,
          { testid: "debug-features" },
          h("div", { class: "features" }, version.features.map((f) => distribution(f, "feature"))),
        ),
      );
    }

    const anomalyRows = doc.anomalies.flatMap((a) => [
      h("tr", { testid: "anomaly" }, h("td", null, fmt.time(a.at)), h("td", null, `v${a.version}`), h("td", null, a.field), h("td", null, badge(a.kind, "warn")), h("td", { class: "num" }, fmt.int(a.count)), h("td", { class: "mono" }, a.value), h("td", { class: "mono" }, a.expected ?? "—")),
      a.sample
        ? h(
            "tr",
            { class: "sample" },
            h(
              "td",
              { colspan: 7 },
              h(
                "details",
                { testid: "anomaly-sample" },
                h("summary", null, "a sampled row — no values: the anomaly as the bound it crossed, other fields as their training bin"),
                h("ul", { class: "sample-fields" }, Object.entries(a.sample).map(([field, text]) => h("li", { "data-field": field }, h("span", { class: "mono" }, field), ": ", text))),
              ),
            ),
          )
        : null,
    ]);
    const shadowRows = doc.versions.map((v) =>
      h(
        "tr",
        { testid: `shadow-v${v.version}` },
        h("td", null, `v${v.version}`),
        h("td", null, v.role),
        figure("td", `shadow-v${v.version}-same`, v.shadow.same, fmt.int(v.shadow.same), { class: "num" }),
        figure("td", `shadow-v${v.version}-different`, v.shadow.different, fmt.int(v.shadow.different), { class: "num" }),
        figure("td", `shadow-v${v.version}-divergence`, v.shadow.divergence, fmt.pct(v.shadow.divergence), { class: ["num", v.shadow.divergence > 0.05 && "hot"] }),
      ),
    );

    return h(
      "div",
      null,
      h("div", { class: "controls" }, h("h1", null, `Debug: ${name}`), endpointPick, versionPick),
      body,
      h(
        "div",
        { class: "grid2" },
        section(
          "Recent anomalous inputs",
          { testid: "debug-anomalies" },
          h("p", { class: "help" }, "Out-of-range values and unseen categories the contract counted. Values are never stored by the gateway: only field, kind and count, beside what the version's contract expects."),
          doc.anomalies.length ? table(["when", "version", "field", "kind", "values", "value", "expected"], anomalyRows) : empty("No anomalous inputs recently."),
        ),
        section(
          "Shadow divergence",
          { testid: "debug-shadow" },
          h("p", { class: "help" }, "Answers of the shadow version compared with the primary's on mirrored requests."),
          table(["version", "role", "same", "different", "divergence"], shadowRows),
        ),
      ),
    );
  },
};
