# Gate alias_set: may this alias point at this version? Promotion aliases (champion) need
# everything a deployment needs; the actor promoting is never counted as an approver.
package bastion.gates.alias_set

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

deny contains msg if some msg in lib.shape_problems(["model", "version", "actor", "alias"])

deny contains msg if {
	input.version.status == "archived"
	msg := concat("", [lib.version_label, " is archived"])
}

deny contains msg if {
	input.alias.name in lib.config.promotion_aliases
	some problem in lib.release_problems
	msg := concat("", ["promotion to ", input.alias.name, ": ", problem])
}
