# Fixtures for the default bundle's tests: one version every gate allows, and its parts.
# Tests override input field by field (`with input.version as v`) with LOCAL values: rego-cpp
# 1.5.2 ignores a rule reference after `as` (use `v := td.version` first), and dies on
# `with input as {...}` over rules that call rules.
package bastion.testdata

import rego.v1

digest := "sha256:1111111111111111111111111111111111111111111111111111111111111111"

other_digest := "sha256:2222222222222222222222222222222222222222222222222222222222222222"

validation := "https://bastion.dev/attestations/validation/v1"

author := {"id": "prn_dev", "name": "dev"}

deployer := {"id": "prn_ops", "name": "ops", "kind": "user", "roles": ["deployer"]}

approver_actor := {"id": "prn_a1", "name": "a1", "kind": "user", "roles": ["approver"]}

admin := {"id": "prn_root", "name": "root", "kind": "user", "roles": ["admin"]}

model := {
	"id": "mdl_1", "name": "scorer", "owner": "risk", "custodian": null,
	"purpose": "credit-scoring", "intended_use": "score loan applications",
}

dataset(classification) := {
	"id": "ds_1", "name": "loans", "version": 1, "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
	"classification": classification, "purposes": ["credit-scoring"], "owner": "risk",
	"retention_days": 365, "expires_at": "2027-12-01T00:00:00+00:00", "expired": false,
	"legal_hold": false, "source": null, "status": "active",
}

approval(id, roles) := {
	"id": concat("", ["apr_", id]), "approver": {"id": id, "name": id, "roles": roles},
	"for": "deploy", "artifact_digest": digest,
	"created_at": "2026-12-01T10:00:00+00:00", "expires_at": "2026-12-31T10:00:00+00:00",
}

attestation := {
	"id": "att_1", "type": validation, "subject_digest": digest, "predicate": {"passed": true},
	"signer": {"team": "bastion", "key_fingerprint": "sha256:k"}, "verified": true,
	"created_by": author, "created_at": "2026-12-01T09:00:00+00:00",
}

mia := "https://bastion.dev/attestations/membership-inference/v1"

# A passing membership-inference audit of the artifact (worst attack's AUC upper bound 0.55).
mia_attestation := {
	"id": "att_2", "type": mia, "subject_digest": digest, "predicate": {"auc_upper": 0.55},
	"signer": {"team": "bastion", "key_fingerprint": "sha256:k"}, "verified": true,
	"created_by": author, "created_at": "2026-12-01T09:30:00+00:00",
}

# A confidential-data version with two valid approvals and both audits: deployable.
version := {
	"id": "mv_1", "number": 3, "artifact_digest": digest, "format": "onnx",
	"status": "registered", "author": author, "created_at": "2026-12-01T08:00:00+00:00",
	"scan": {"clean": true, "allowlist_version": "2026.12.2", "findings": 0},
	"mlbom_digest": other_digest,
	"signature": {"signed": true, "verified": true, "signers": [{"team": "bastion", "key_fingerprint": "sha256:k"}], "problems": []},
	"attestations": [attestation, mia_attestation],
	"approvals": [approval("prn_a1", ["approver"]), approval("prn_a2", ["approver"])],
	"lineage": [{"role": "training", "dataset": dataset("confidential")}],
}

with_lineage(classification) := object.union(version, {"lineage": [{"role": "training", "dataset": dataset(classification)}]})

deployment := {"endpoint": "fraud", "kind": "stable", "weight": 100}
