# Gate dataset_register: may this dataset version enter the inventory?
package bastion.gates.dataset_register

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

d := input.dataset

deny contains msg if some msg in lib.shape_problems(["dataset", "actor"])

deny contains msg if {
	d.classification in lib.config.retention_required
	not positive(d.retention_days)
	msg := concat("", [d.classification, " data needs a retention period (retention_days > 0)"])
}

deny contains "a dataset needs an owner" if {
	not is_string(d.owner)
}

deny contains "a dataset needs an owner" if {
	d.owner == ""
}

deny contains "a dataset needs at least one allowed purpose" if {
	count(d.purposes) == 0
}

deny contains "a dataset needs at least one allowed purpose" if {
	not is_array(d.purposes)
}

deny contains "a dataset needs a classification" if {
	not d.classification in {"public", "internal", "confidential", "restricted"}
}

positive(x) if {
	is_number(x)
	x > 0
}
