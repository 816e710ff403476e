# Gate rollout: changes to a running deployment. Safety actions (kill, rollback, pause) are
# never blocked by policy; promote and resume need a verified signature.
package bastion.gates.rollout

import rego.v1

import data.bastion.lib

default allow := false

safety := {"kill", "rollback", "pause"}

allow if input.rollout.action in safety

allow if {
	input.rollout.action in {"promote", "resume"}
	count(deny) == 0
}

deny contains msg if {
	not input.rollout.action in safety
	some msg in lib.shape_problems(["model", "version", "actor", "rollout"])
}

deny contains msg if {
	input.rollout.action in {"promote", "resume"}
	some msg in lib.signature_problems | lib.status_problems
}

deny contains "rollout action must be promote, pause, resume, rollback or kill" if {
	not input.rollout.action in {"promote", "pause", "resume", "rollback", "kill"}
}
