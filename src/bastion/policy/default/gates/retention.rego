# Gate retention: retention changes and deletion of a dataset.
package bastion.gates.retention

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

d := input.dataset

deny contains msg if some msg in lib.shape_problems(["dataset", "actor", "change"])

deny contains msg if {
	input.change.action == "delete"
	d.legal_hold == true
	msg := concat("", ["dataset ", d.name, " is under legal hold and may not be deleted"])
}

deny contains msg if {
	input.change.action == "set_retention"
	d.classification in lib.config.retention_required
	not positive(input.change.retention_days)
	msg := concat("", [d.classification, " data must keep a retention period"])
}

deny contains "retention action must be set_retention, delete or set_legal_hold" if {
	not input.change.action in {"set_retention", "delete", "set_legal_hold"}
}

positive(x) if {
	is_number(x)
	x > 0
}
