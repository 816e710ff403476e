package bastion.gates.others_test

import rego.v1

import data.bastion.gates.alias_set
import data.bastion.gates.approval_grant
import data.bastion.gates.dataset_register
import data.bastion.gates.model_register
import data.bastion.gates.model_sign
import data.bastion.gates.policy_change
import data.bastion.gates.retention
import data.bastion.gates.rollout
import data.bastion.gates.version_status
import data.bastion.testdata as td

unsigned := object.union(td.version, {"signature": {"signed": false, "verified": false}, "approvals": [], "attestations": []})

# -- model_register ------------------------------------------------------------------------------

register_deny(m, v) := r if {
	a := td.deployer
	r := model_register.deny with input.model as m with input.version as v with input.actor as a
}

test_register_allows_a_clean_unsigned_version if {
	m := td.model
	a := td.deployer
	v := unsigned # `with ... as` takes local values: rego-cpp ignores a rule reference there
	model_register.allow with input.model as m with input.version as v with input.actor as a
}

test_register_denies_purpose_mismatch if {
	m := object.union(td.model, {"purpose": "marketing"})
	some msg in register_deny(m, unsigned)
	contains(msg, "purpose limitation")
}

test_register_denies_a_model_without_purpose if {
	m := object.union(td.model, {"purpose": null})
	some msg in register_deny(m, unsigned)
	contains(msg, "(none declared)")
}

test_register_denies_expired_data if {
	gone := object.union(td.dataset("restricted"), {"expired": true})
	v := object.union(unsigned, {"lineage": [{"role": "training", "dataset": gone}]})
	some msg in register_deny(td.model, v)
	contains(msg, "past its retention")
}

test_register_denies_inactive_data if {
	gone := object.union(td.dataset("internal"), {"status": "deleted"})
	v := object.union(unsigned, {"lineage": [{"role": "evaluation", "dataset": gone}]})
	some msg in register_deny(td.model, v)
	contains(msg, "is not active")
}

test_register_denies_a_dirty_scan if {
	v := object.union(unsigned, {"scan": {"clean": false}})
	some msg in register_deny(td.model, v)
	contains(msg, "scan is not clean")
}

# -- model_sign ------------------------------------------------------------------------------------

test_sign_allows_clean_and_denies_archived if {
	m := td.model
	a := td.deployer
	archived := object.union(unsigned, {"status": "archived"})
	v := unsigned
	model_sign.allow with input.model as m with input.version as v with input.actor as a
	not model_sign.allow with input.model as m with input.version as archived with input.actor as a
}

# -- approval_grant ----------------------------------------------------------------------------------

grant(v, actor, purpose) := {"allow": allow, "deny": deny} if {
	m := td.model
	ap := {"for": purpose, "comment": "looks good"}
	allow := approval_grant.allow with input.model as m with input.version as v with input.actor as actor with input.approval as ap
	deny := approval_grant.deny with input.model as m with input.version as v with input.actor as actor with input.approval as ap
}

pending := object.union(td.version, {"approvals": []})

test_grant_allows_an_approver if {
	grant(pending, td.approver_actor, "deploy").allow
}

test_grant_denies_the_author if {
	author := {"id": "prn_dev", "name": "dev", "kind": "user", "roles": ["approver", "model-developer"]}
	result := grant(pending, author, "deploy")
	not result.allow
	"the author of a version may not approve it (segregation of duties)" in result.deny
}

test_grant_denies_without_an_approving_role if {
	not grant(pending, td.deployer, "deploy").allow
}

test_grant_denies_an_unsigned_version if {
	not grant(unsigned, td.approver_actor, "deploy").allow
}

test_grant_denies_other_purposes if {
	not grant(pending, td.approver_actor, "research").allow
}

test_grant_denies_a_second_approval if {
	result := grant(td.version, td.approver_actor, "deploy")
	not result.allow
	some msg in result.deny
	contains(msg, "already approved")
}

# -- alias_set -----------------------------------------------------------------------------------------

alias(v, name, actor) if {
	m := td.model
	al := {"name": name, "previous_version": null}
	alias_set.allow with input.model as m with input.version as v with input.actor as actor with input.alias as al
}

test_champion_needs_the_deploy_evidence if {
	alias(td.version, "champion", td.deployer)
	not alias(pending, "champion", td.deployer)
	not alias(unsigned, "champion", td.deployer)
}

test_other_aliases_are_free_but_not_on_archived if {
	alias(unsigned, "candidate", td.deployer)
	not alias(object.union(unsigned, {"status": "archived"}), "candidate", td.deployer)
}

test_the_promoter_is_not_an_approver if {
	# prn_a1 approved; promoting as prn_a1 leaves one counted approval of two needed.
	not alias(td.version, "champion", td.approver_actor)
}

# -- rollout --------------------------------------------------------------------------------------------

roll(v, action) if {
	m := td.model
	a := td.deployer
	ro := {"endpoint": "fraud", "action": action, "weight": 10}
	rollout.allow with input.model as m with input.version as v with input.actor as a with input.rollout as ro
}

test_safety_actions_are_never_blocked if {
	broken := object.union(unsigned, {"status": "archived", "scan": {"clean": false}})
	roll(broken, "kill")
	roll(broken, "rollback")
	roll(broken, "pause")
}

test_promote_needs_a_verified_signature if {
	roll(td.version, "promote")
	not roll(unsigned, "promote")
	not roll(td.version, "explode")
}

# -- dataset_register ------------------------------------------------------------------------------------

dataset_ok(d) if {
	a := td.deployer
	dataset_register.allow with input.dataset as d with input.actor as a
}

test_dataset_register if {
	dataset_ok(td.dataset("confidential"))
	dataset_ok(object.union(td.dataset("public"), {"retention_days": null}))
	not dataset_ok(object.union(td.dataset("confidential"), {"retention_days": null}))
	not dataset_ok(object.union(td.dataset("restricted"), {"retention_days": 0}))
	not dataset_ok(object.union(td.dataset("public"), {"owner": ""}))
	not dataset_ok(object.union(td.dataset("public"), {"purposes": []}))
	not dataset_ok(object.union(td.dataset("public"), {"classification": "secret"}))
}

# -- retention -------------------------------------------------------------------------------------------

retain(d, change) if {
	a := td.deployer
	retention.allow with input.dataset as d with input.actor as a with input.change as change
}

test_retention if {
	held := object.union(td.dataset("internal"), {"legal_hold": true})
	retain(td.dataset("internal"), {"action": "delete", "retention_days": null, "legal_hold": null})
	not retain(held, {"action": "delete", "retention_days": null, "legal_hold": null})
	retain(td.dataset("confidential"), {"action": "set_retention", "retention_days": 30, "legal_hold": null})
	not retain(td.dataset("confidential"), {"action": "set_retention", "retention_days": null, "legal_hold": null})
	retain(td.dataset("public"), {"action": "set_retention", "retention_days": null, "legal_hold": null})
	not retain(td.dataset("public"), {"action": "shred", "retention_days": null, "legal_hold": null})
}

# -- version_status -------------------------------------------------------------------------------------

status_change(before, after) if {
	m := td.model
	v := td.version
	a := td.deployer
	c := {"before": before, "after": after}
	version_status.allow with input.model as m with input.version as v with input.actor as a with input.change as c
}

test_version_status if {
	status_change("registered", "deprecated")
	status_change("deprecated", "archived")
	not status_change("archived", "registered")
	not status_change("registered", "gone")
}

# -- policy_change ---------------------------------------------------------------------------------------

change(actor, tests) if {
	b := {"digest": td.digest, "version": 2, "files": ["gates/deploy.rego"], "tests": tests}
	policy_change.allow with input.bundle as b with input.actor as actor
}

test_policy_change if {
	change(td.admin, {"passed": 40, "failed": 0, "errors": 0})
	not change(td.deployer, {"passed": 40, "failed": 0, "errors": 0})
	not change(td.admin, {"passed": 40, "failed": 1, "errors": 0})
	not change(td.admin, {"passed": 40, "failed": 0, "errors": 1})
	not change(td.admin, {"passed": 0, "failed": 0, "errors": 0})
}

test_missing_objects_deny_everywhere if {
	not model_register.allow
	not model_sign.allow
	not approval_grant.allow
	not alias_set.allow
	not dataset_register.allow
	not retention.allow
	not version_status.allow
	not policy_change.allow
	not rollout.allow
}
