# Gate version_status: status changes of a version (archived is final).
package bastion.gates.version_status

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

deny contains msg if some msg in lib.shape_problems(["model", "version", "actor", "change"])

deny contains "archived versions stay archived" if {
	input.change.before == "archived"
	input.change.after != "archived"
}

deny contains "status must be registered, deprecated or archived" if {
	not input.change.after in {"registered", "deprecated", "archived"}
}
