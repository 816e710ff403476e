# Gate model_sign: may Bastion (or a team) put a signature on this version?
package bastion.gates.model_sign

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

deny contains msg if some msg in lib.shape_problems(["model", "version", "actor"])

deny contains msg if some msg in lib.scan_problems

deny contains msg if {
	not input.version.status in {"registered", "deprecated"}
	msg := concat("", [lib.version_label, " is archived; archived versions are not signed"])
}
