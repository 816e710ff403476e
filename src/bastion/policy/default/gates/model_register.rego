# Gate model_register: may this scanned, sealed upload become a version of the model?
package bastion.gates.model_register

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

deny contains msg if some msg in lib.shape_problems(["model", "version", "actor"])

deny contains msg if some msg in lib.scan_problems

deny contains msg if some msg in lib.lineage_problems
