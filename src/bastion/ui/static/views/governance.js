// Governance: what is registered and may it serve? Each version's scan, signature,
// attestations and approvals; the lineage from dataset to endpoint; the policy decisions
// with their reasons; and the audit ledger's latest signed checkpoint, with a "verify" that
// has the server replay the whole log (and check it still extends the checkpoint this tab
// saw first).

import { ApiError } from "../api.js";
import { badge, empty, figure, fmt, h, section, table, who } from "../dom.js";
import { lineageGraph } from "../charts.js";

const TRUSTED = "bastion.trusted-checkpoint";

function lacking(title, permission, testid) {
  return section(
    title,
    { class: "panel forbidden", testid },
    h("p", null, `Your role cannot see this: it needs the ${permission} permission.`),
  );
}

function check(ok, yes, no, testid) {
  return badge(ok ? `✓ ${yes}` : `✗ ${no}`, ok ? "good" : "bad", testid);
}

function versionRow(v, ctx) {
  const id = `gov-${v.model}-v${v.version}`;
  const verified = v.attestations.filter((a) => a.verified);
  const result = h("div", { class: "help", testid: `${id}-verify-result` });
  const verify = h(
    "button",
    {
      type: "button",
      class: "secondary",
      testid: `${id}-verify`,
      onclick: async () => {
        verify.disabled = true;
        result.textContent = "verifying…";
        try {
          const r = await ctx.api(`/v1/models/${encodeURIComponent(v.model)}/versions/${v.version}/verify`, { method: "POST" });
          result.textContent = r.valid ? `valid: ${r.files_checked} files re-hashed, signed by ${r.signer_team || "a trusted key"}` : `INVALID: ${(r.problems || []).join("; ")}`;
        } catch (e) {
          result.textContent = e instanceof ApiError ? `${e.message} (${e.code})` : String(e);
        }
        verify.disabled = false;
      },
    },
    "verify",
  );
  return h(
    "tr",
    { testid: id },
    h("td", null, h("strong", null, `${v.model}@${v.version}`), v.aliases.length ? h("div", { class: "help" }, v.aliases.join(", ")) : null),
    h("td", null, badge(v.status, v.status === "revoked" ? "bad" : v.status === "deprecated" ? "warn" : "info")),
    h("td", null, check(v.scan.clean, "clean", `${v.scan.findings} findings`, `${id}-scan`), h("div", { class: "help" }, `${v.scan.files ?? "?"} files`)),
    h("td", null, check(v.signed, "signed", "unsigned", `${id}-signed`), v.signed ? h("div", null, verify, result) : null),
    figure(
      "td",
      `${id}-attestations`,
      v.attestations.length,
      v.attestations.length ? v.attestations.map((a) => `${a.verified ? "✓" : "✗"} ${a.type.replace(/^https?:\/\/[^/]+\/attestations\//, "")}`).join("\n") : "none",
      { class: ["note", verified.length < v.attestations.length && "hot"] },
    ),
    h(
      "td",
      null,
      figure("span", `${id}-approvals`, v.approvals.valid, `${v.approvals.valid} valid`),
      v.approvals.total > v.approvals.valid ? ` of ${v.approvals.total}` : "",
      v.approvals.approvers.length ? h("div", { class: "help" }, v.approvals.approvers.join(", ")) : null,
    ),
    h("td", null, v.deployed === null ? "—" : v.deployed.length ? v.deployed.map((d) => `${d.endpoint} (${d.role})`).join(", ") : "not deployed"),
    h("td", { class: "mono" }, fmt.short(v.artifact_digest)),
    h("td", { testid: `${id}-author` }, who(v.created_by), h("div", { class: "help" }, fmt.time(v.created_at))),
  );
}

/** Subject id -> what a person calls it: `scorer@2` for a model version, `cancer@1` for a dataset
 * version (from the view's own versions and lineage). */
function subjectLabels(doc) {
  const labels = new Map();
  for (const v of doc.versions) labels.set(v.id, `${v.model}@${v.version}`);
  for (const n of doc.lineage.nodes) if (n.kind === "dataset") labels.set(n.id.slice("dataset:".length), n.label);
  return labels;
}

function subject(id, labels) {
  const label = labels.get(id);
  return label ? h("span", { title: id, "data-subject": id }, label) : id;
}

async function decisionsPanel(ctx, governance) {
  if (!ctx.can("policy.read")) return lacking("Policy decisions", "policy.read", "gov-decisions");
  const [decisions, doc] = await Promise.all([ctx.api("/v1/policy/decisions?limit=30"), governance]);
  const labels = subjectLabels(doc);
  const rows = decisions.map((d) =>
    h(
      "tr",
      { testid: "decision", "data-allow": String(d.allow) },
      h("td", null, fmt.time(d.at)),
      h("td", null, d.gate),
      h("td", null, badge(d.allow ? "allow" : "deny", d.allow ? "good" : "bad")),
      h("td", { class: "note" }, d.reasons.length ? d.reasons.join("\n") : d.allow ? "every rule passed" : "—"),
      h("td", null, who(d.actor)),
      h("td", { class: "mono", testid: "decision-subject" }, subject(d.subject, labels)),
      h("td", null, d.bundle_version === null ? "default" : `v${d.bundle_version}`),
    ),
  );
  return section(
    "Policy decisions",
    { testid: "gov-decisions" },
    rows.length ? table(["when", "gate", "outcome", "reasons", "actor", "subject", "bundle"], rows) : empty("No decisions recorded."),
  );
}

function verifyOutcome(r) {
  if (r.status === "intact") {
    const trusted = r.trusted_checked ? " It still extends the checkpoint this tab saw first." : "";
    return h(
      "div",
      { class: "result ok", testid: "verify-result", "data-status": "intact", "data-size": r.size },
      `Ledger intact: ${fmt.int(r.size)} entries, ${fmt.int(r.checkpoints)} signed checkpoints and ${fmt.int(r.nodes)} tree nodes checked in ${fmt.seconds(r.seconds)}.${trusted}`,
      h("div", { class: "mono" }, `root ${r.root}`),
    );
  }
  if (r.status === "empty") return h("div", { class: "result", testid: "verify-result", "data-status": "empty" }, "The ledger has no entries yet.");
  return h(
    "div",
    { class: "result fail", testid: "verify-result", "data-status": r.status },
    `Verification FAILED (${r.code}): ${r.message}`,
    h("pre", null, JSON.stringify(r.details, null, 2)),
  );
}

async function ledgerPanel(ctx) {
  if (!ctx.can("audit.read")) return lacking("Transparency ledger", "audit.read", "gov-ledger");
  const cp = await ctx.api("/v1/audit/checkpoint");
  if (!sessionStorage.getItem(TRUSTED)) sessionStorage.setItem(TRUSTED, cp.note);
  const outcome = h("div", { "aria-live": "polite" });
  const button = h(
    "button",
    {
      type: "button",
      testid: "verify-ledger",
      onclick: async () => {
        button.disabled = true;
        outcome.dataset.busy = "true";
        outcome.replaceChildren(h("p", { class: "help" }, "Replaying the ledger…"));
        try {
          const r = await ctx.api("/v1/dashboards/ledger/verify", { method: "POST", body: { trusted_checkpoint: sessionStorage.getItem(TRUSTED) } });
          outcome.replaceChildren(verifyOutcome(r));
        } catch (e) {
          outcome.replaceChildren(h("div", { class: "result fail", testid: "verify-result", "data-status": "error" }, e instanceof ApiError ? `${e.message} (${e.code})` : String(e)));
        }
        delete outcome.dataset.busy;
        button.disabled = false;
      },
    },
    "Verify",
  );
  return section(
    "Transparency ledger",
    { testid: "gov-ledger" },
    h(
      "div",
      { class: "cards" },
      h("div", { class: "card" }, h("div", { class: "label" }, "Tree size"), figure("div", "checkpoint-size", cp.size, fmt.int(cp.size), { class: "value" }), h("div", { class: "sub" }, "entries under the latest signed checkpoint")),
      h("div", { class: "card" }, h("div", { class: "label" }, "Root hash"), figure("div", "checkpoint-root", cp.root, fmt.short(cp.root, 16), { class: "value mono" }), h("div", { class: "sub" }, "RFC 9162 Merkle tree head")),
    ),
    h("h3", null, "Latest signed checkpoint (C2SP signed note)"),
    h("pre", { class: "note", testid: "checkpoint-note" }, cp.note),
    h("p", { class: "help" }, `Verifier key: `, h("span", { class: "mono" }, cp.verifier_key)),
    h("div", { class: "confirm" }, button, h("span", { class: "help" }, "The server replays every entry, tree node and checkpoint signature.")),
    outcome,
  );
}

export default {
  id: "governance",
  title: "Governance",
  needs: ["model.read"],

  async render(ctx) {
    const governance = ctx.api("/v1/dashboards/governance?limit=100");
    const [doc, decisions, ledger] = await Promise.all([governance, decisionsPanel(ctx, governance), ledgerPanel(ctx)]);
    const rows = doc.versions.map((v) => versionRow(v, ctx));
    return h(
      "div",
      null,
      h("div", { class: "controls" }, h("h1", null, "Governance")),
      section(
        `Model versions (${doc.versions.length}${doc.total > doc.versions.length ? ` of ${doc.total}` : ""})`,
        { testid: "gov-versions", "data-count": doc.total },
        rows.length
          ? table(["version", "status", "scan", "signature", "attestations", "approvals", "serving", "artifact", "registered"], rows)
          : empty("No model versions yet."),
      ),
      section(
        "Lineage: dataset → model version → endpoint",
        { testid: "gov-lineage" },
        doc.lineage.nodes.length ? lineageGraph(doc.lineage, { testid: "lineage" }) : empty("No lineage yet."),
        doc.endpoints_visible ? null : h("p", { class: "help" }, "Endpoints are hidden: they need the deploy.read permission."),
      ),
      decisions,
      ledger,
    );
  },
};
