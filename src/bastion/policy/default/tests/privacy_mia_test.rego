package bastion.gates.privacy_mia_test

import rego.v1

import data.bastion.gates.alias_set
import data.bastion.gates.deploy
import data.bastion.testdata as td

# deploy.deny for version `v` by the fixture deployer.
reasons(v) := r if {
	m := td.model
	d := td.deployment
	a := td.deployer
	r := deploy.deny with input.model as m with input.version as v with input.actor as a with input.deployment as d
}

mia_denied(v) if {
	some msg in reasons(v)
	contains(msg, "membership-inference attestation")
}

without_mia := object.union(td.version, {"attestations": [td.attestation]})

with_mia(predicate) := object.union(td.version, {"attestations": [td.attestation, object.union(td.mia_attestation, {"predicate": predicate})]})

test_confidential_lineage_needs_a_membership_inference_audit if {
	mia_denied(without_mia)
	count(reasons(without_mia)) == 1
	count(reasons(td.version)) == 0
}

test_the_message_names_the_threshold if {
	some msg in reasons(without_mia)
	contains(msg, "scorer@3 was trained on confidential data")
	contains(msg, "auc_upper <= 0.6")
}

test_restricted_lineage_needs_it_too if {
	v := object.union(td.with_lineage("restricted"), {"attestations": [td.attestation]})
	mia_denied(v)
}

test_public_and_internal_lineage_do_not if {
	not mia_denied(object.union(td.with_lineage("public"), {"attestations": [td.attestation]}))
	not mia_denied(object.union(td.with_lineage("internal"), {"attestations": [td.attestation]}))
	not mia_denied(object.union(td.version, {"lineage": [], "attestations": [td.attestation]}))
}

test_the_bound_is_inclusive_and_a_higher_one_is_denied if {
	not mia_denied(with_mia({"auc_upper": 0.6}))
	mia_denied(with_mia({"auc_upper": 0.6001}))
	mia_denied(with_mia({"auc_upper": 0.81}))
}

test_a_missing_or_non_numeric_bound_is_denied if {
	mia_denied(with_mia({}))
	mia_denied(with_mia({"auc_upper": "0.5"}))
	mia_denied(with_mia({"auc_upper": null}))
}

test_an_unverified_or_stale_audit_does_not_count if {
	forged := object.union(td.mia_attestation, {"verified": false})
	mia_denied(object.union(td.version, {"attestations": [td.attestation, forged]}))
	stale := object.union(td.mia_attestation, {"subject_digest": td.other_digest})
	mia_denied(object.union(td.version, {"attestations": [td.attestation, stale]}))
	other := object.union(td.mia_attestation, {"type": td.validation})
	mia_denied(object.union(td.version, {"attestations": [td.attestation, other]}))
}

test_the_classes_and_the_threshold_are_data if {
	m := td.model
	d := td.deployment
	a := td.deployer
	v := without_mia
	deploy.allow with input.model as m with input.version as v with input.actor as a with input.deployment as d with data.bastion.config.privacy.mia_required as ["restricted"]
	strict := with_mia({"auc_upper": 0.55})
	not deploy.allow with input.model as m with input.version as strict with input.actor as a with input.deployment as d with data.bastion.config.privacy.mia_auc_max as 0.52
}

test_promotion_to_champion_needs_it_as_deployment_does if {
	m := td.model
	a := td.deployer
	v := without_mia
	al := {"name": "champion"}
	some msg in alias_set.deny with input.model as m with input.version as v with input.actor as a with input.alias as al
	contains(msg, "promotion to champion")
	contains(msg, "membership-inference")
}
