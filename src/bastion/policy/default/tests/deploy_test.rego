package bastion.gates.deploy_test

import rego.v1

import data.bastion.gates.deploy
import data.bastion.testdata as td

# deploy.deny for version `v` deployed by `actor` (fields overridden one by one).
reasons(v, actor) := r if {
	m := td.model
	d := td.deployment
	r := deploy.deny with input.model as m with input.version as v with input.actor as actor with input.deployment as d
}

allows(v, actor) if {
	m := td.model
	d := td.deployment
	deploy.allow with input.model as m with input.version as v with input.actor as actor with input.deployment as d
}

denied_with(v, needle) if {
	not allows(v, td.deployer)
	some msg in reasons(v, td.deployer)
	contains(msg, needle)
}

test_the_fixture_is_deployable if {
	allows(td.version, td.deployer)
	count(reasons(td.version, td.deployer)) == 0
}

# -- signature, scan, status ------------------------------------------------------------------

test_unsigned_is_denied if {
	denied_with(object.union(td.version, {"signature": {"signed": false, "verified": false}}), "no signature that verifies")
}

test_unverified_signature_is_denied if {
	denied_with(object.union(td.version, {"signature": {"signed": true, "verified": false}}), "no signature that verifies")
}

test_missing_signature_field_is_denied if {
	denied_with(object.remove(td.version, ["signature"]), "no signature that verifies")
}

test_dirty_scan_is_denied if {
	denied_with(object.union(td.version, {"scan": {"clean": false, "findings": 2}}), "scan is not clean")
}

test_missing_scan_is_denied if {
	denied_with(object.remove(td.version, ["scan"]), "scan is not clean")
}

test_archived_is_denied if {
	denied_with(object.union(td.version, {"status": "archived"}), "not in status registered")
}

test_deprecated_is_denied if {
	denied_with(object.union(td.version, {"status": "deprecated"}), "not in status registered")
}

# -- validation attestation --------------------------------------------------------------------

test_no_validation_attestation_is_denied if {
	denied_with(object.union(td.version, {"attestations": []}), "validation attestation")
}

test_failed_validation_is_denied if {
	failed := object.union(td.attestation, {"predicate": {"passed": false}})
	denied_with(object.union(td.version, {"attestations": [failed]}), "validation attestation")
}

test_unverified_attestation_is_denied if {
	forged := object.union(td.attestation, {"verified": false})
	denied_with(object.union(td.version, {"attestations": [forged]}), "validation attestation")
}

test_attestation_of_other_bytes_is_denied if {
	other := object.union(td.attestation, {"subject_digest": td.other_digest})
	denied_with(object.union(td.version, {"attestations": [other]}), "validation attestation")
}

test_attestation_of_another_type_is_denied if {
	other := object.union(td.attestation, {"type": "https://example.invalid/other"})
	denied_with(object.union(td.version, {"attestations": [other]}), "validation attestation")
}

# -- quorum per classification -----------------------------------------------------------------

approvals(v, list) := object.union(v, {"approvals": list})

test_confidential_needs_two if {
	one := approvals(td.version, [td.approval("prn_a1", ["approver"])])
	denied_with(one, "needs 2 approvals")
}

test_restricted_needs_three if {
	two := approvals(td.with_lineage("restricted"), [td.approval("prn_a1", ["approver"]), td.approval("prn_s1", ["data-steward"])])
	denied_with(two, "needs 3 approvals")
}

test_restricted_needs_a_data_steward if {
	three := approvals(td.with_lineage("restricted"), [
		td.approval("prn_a1", ["approver"]),
		td.approval("prn_a2", ["approver"]),
		td.approval("prn_a3", ["approver"]),
	])
	denied_with(three, "needs an approval by a data-steward")
}

test_restricted_with_three_including_a_steward_is_allowed if {
	three := approvals(td.with_lineage("restricted"), [
		td.approval("prn_a1", ["approver"]),
		td.approval("prn_a2", ["approver"]),
		td.approval("prn_s1", ["data-steward"]),
	])
	allows(three, td.deployer)
}

test_public_needs_one if {
	allows(approvals(td.with_lineage("public"), [td.approval("prn_a1", ["approver"])]), td.deployer)
	denied_with(approvals(td.with_lineage("public"), []), "needs 1 approvals")
}

test_no_lineage_needs_one if {
	v := object.union(td.version, {"lineage": [], "approvals": [td.approval("prn_a1", ["approver"])]})
	allows(v, td.deployer)
}

test_most_sensitive_dataset_decides if {
	v := object.union(td.version, {
		"lineage": [
			{"role": "training", "dataset": td.dataset("public")},
			{"role": "evaluation", "dataset": td.dataset("restricted")},
		],
	})
	denied_with(v, "restricted data")
}

test_the_author_does_not_count if {
	v := approvals(td.version, [td.approval("prn_a1", ["approver"]), td.approval("prn_dev", ["approver"])])
	denied_with(v, "segregation of duties")
}

test_the_deployer_does_not_count if {
	v := approvals(td.version, [td.approval("prn_a1", ["approver"]), td.approval("prn_ops", ["approver"])])
	denied_with(v, "segregation of duties")
}

test_one_approver_counts_once if {
	v := approvals(td.version, [td.approval("prn_a1", ["approver"]), td.approval("prn_a1", ["approver"])])
	denied_with(v, "it has 1")
}

test_approval_of_other_bytes_does_not_count if {
	stale := object.union(td.approval("prn_a2", ["approver"]), {"artifact_digest": td.other_digest})
	denied_with(approvals(td.version, [td.approval("prn_a1", ["approver"]), stale]), "it has 1")
}

test_approval_for_another_purpose_does_not_count if {
	other := object.union(td.approval("prn_a2", ["approver"]), {"for": "research"})
	denied_with(approvals(td.version, [td.approval("prn_a1", ["approver"]), other]), "it has 1")
}

test_quorum_numbers_are_data if {
	q := {"confidential": {"approvals": 1, "roles": []}, "none": {"approvals": 1, "roles": []}}
	one := approvals(td.version, [td.approval("prn_a1", ["approver"])])
	m := td.model
	d := td.deployment
	a := td.deployer
	deploy.allow with input.model as m with input.version as one with input.actor as a with input.deployment as d with data.bastion.config.quorum as q
}

# -- lineage -----------------------------------------------------------------------------------

test_expired_dataset_is_denied if {
	gone := object.union(td.dataset("confidential"), {"expired": true})
	denied_with(object.union(td.version, {"lineage": [{"role": "training", "dataset": gone}]}), "past its retention")
}

test_purpose_mismatch_is_denied if {
	other := object.union(td.dataset("confidential"), {"purposes": ["marketing"]})
	denied_with(object.union(td.version, {"lineage": [{"role": "training", "dataset": other}]}), "purpose limitation")
}

test_evaluation_data_does_not_limit_purpose if {
	other := object.union(td.dataset("confidential"), {"purposes": ["marketing"]})
	v := object.union(td.version, {"lineage": [
		{"role": "training", "dataset": td.dataset("confidential")},
		{"role": "evaluation", "dataset": other},
	]})
	allows(v, td.deployer)
}

# -- the deployment itself and the input shape ----------------------------------------------------

test_bad_kind_and_weight_are_denied if {
	m := td.model
	v := td.version
	a := td.deployer
	d := {"endpoint": "fraud", "kind": "blue", "weight": 170}
	r := deploy.deny with input.model as m with input.version as v with input.actor as a with input.deployment as d
	"deployment kind must be stable, canary or shadow" in r
	"deployment weight must be a number from 0 to 100" in r
}

test_missing_objects_are_denied if {
	m := td.model
	a := td.deployer
	r := deploy.deny with input.model as m with input.actor as a
	"the input has no version object" in r
	"the input has no deployment object" in r
}
