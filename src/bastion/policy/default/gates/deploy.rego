# Gate deploy: may this version serve traffic on an endpoint? The actor is the deployer.
package bastion.gates.deploy

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

deny contains msg if some msg in lib.shape_problems(["model", "version", "actor", "deployment"])

deny contains msg if some msg in lib.release_problems

deny contains "deployment kind must be stable, canary or shadow" if {
	not input.deployment.kind in {"stable", "canary", "shadow"}
}

deny contains "deployment weight must be a number from 0 to 100" if {
	not valid_weight
}

valid_weight if {
	is_number(input.deployment.weight)
	input.deployment.weight >= 0
	input.deployment.weight <= 100
}
