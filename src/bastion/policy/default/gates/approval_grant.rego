# Gate approval_grant: may the actor approve this version? The actor is the approver.
package bastion.gates.approval_grant

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

deny contains msg if some msg in lib.shape_problems(["model", "version", "actor", "approval"])

deny contains msg if some msg in lib.scan_problems

deny contains msg if some msg in lib.signature_problems

deny contains msg if some msg in lib.status_problems

deny contains "the author of a version may not approve it (segregation of duties)" if {
	input.actor.id == input.version.author.id
}

deny contains msg if {
	not input.approval["for"] in lib.config.approval_purposes
	msg := concat("", ["an approval is for one of: ", concat(", ", sort(lib.config.approval_purposes))])
}

deny contains msg if {
	count({r | some r in input.actor.roles; r in lib.config.approver_roles}) == 0
	msg := concat("", ["approving needs one of the roles ", concat(", ", sort(lib.config.approver_roles))])
}

deny contains msg if {
	some a in input.version.approvals
	a.approver.id == input.actor.id
	a["for"] == input.approval["for"]
	msg := concat("", ["you already approved ", lib.version_label, " for ", a["for"]])
}
