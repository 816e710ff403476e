# Gate policy_change: may this bundle replace the active one? Decided by the CURRENT bundle.
package bastion.gates.policy_change

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

deny contains msg if some msg in lib.shape_problems(["bundle", "actor"])

deny contains msg if {
	not lib.config.admin_role in input.actor.roles
	msg := concat("", ["changing the policy needs the ", lib.config.admin_role, " role"])
}

deny contains "the bundle's own tests must all pass (none failed, none errored, at least one)" if {
	not tests_ok
}

tests_ok if {
	input.bundle.tests.failed == 0
	input.bundle.tests.errors == 0
	input.bundle.tests.passed > 0
}
