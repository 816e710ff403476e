package bastion.gates.data_release_test

import rego.v1

import data.bastion.gates.data_release
import data.bastion.testdata as td

measured(k, l) := {
	"quasi_identifiers": ["age_band", "postcode"], "sensitive": ["diagnosis"],
	"k": k, "l": l, "l_entropy": 2.5, "unique_share": 0.0, "classes": 40, "rows": 900,
	"measured_at": "2026-11-30T09:15:00+00:00",
}

dataset(classification, report) := {
	"id": "ds_1", "name": "visits", "version": 4, "digest": td.digest,
	"classification": classification, "status": "active", "privacy_report": report,
}

to(level) := {"to_classification": level, "reason": "analytics extract"}

release_deny(d, r) := x if {
	a := td.deployer
	x := data_release.deny with input.dataset as d with input.actor as a with input.release as r
}

release_allow(d, r) if {
	a := td.deployer
	data_release.allow with input.dataset as d with input.actor as a with input.release as r
}

test_release_to_a_lower_level_with_enough_k if {
	release_allow(dataset("confidential", measured(5, 2)), to("internal"))
	release_allow(dataset("restricted", measured(50, 1)), to("public"))
}

test_release_below_k_min_is_denied_with_the_numbers if {
	d := dataset("confidential", measured(4, 2))
	not release_allow(d, to("internal"))
	some msg in release_deny(d, to("internal"))
	contains(msg, "visits@4 is 4-anonymous")
	contains(msg, "needs k >= 5")
}

test_release_without_a_measurement_says_measure_it_first if {
	d := dataset("restricted", null)
	not release_allow(d, to("confidential"))
	some msg in release_deny(d, to("confidential"))
	contains(msg, "measure it first: bastion privacy risk visits@4")
}

test_release_at_the_same_or_a_higher_level_needs_no_measurement if {
	release_allow(dataset("internal", null), to("internal"))
	release_allow(dataset("internal", null), to("restricted"))
	release_allow(dataset("public", measured(1, 1)), to("public"))
}

test_an_empty_dataset_is_not_releasable_downwards if {
	d := dataset("confidential", object.union(measured(0, 0), {"rows": 0, "classes": 0}))
	not release_allow(d, to("public"))
}

test_release_needs_a_reason_and_a_known_level if {
	d := dataset("confidential", measured(10, 3))
	not release_allow(d, {"to_classification": "internal", "reason": "  "})
	not release_allow(d, {"to_classification": "internal"})
	"a release needs a reason" in release_deny(d, {"to_classification": "internal", "reason": ""})
	not release_allow(d, to("secret"))
	not release_allow(dataset("secret", measured(10, 3)), to("public"))
}

test_release_of_an_inactive_dataset_is_denied if {
	d := object.union(dataset("confidential", measured(10, 3)), {"status": "deleted"})
	not release_allow(d, to("confidential"))
	some msg in release_deny(d, to("confidential"))
	contains(msg, "is not active")
}

test_release_k_min_comes_from_the_config if {
	d := dataset("confidential", measured(7, 2))
	release_allow(d, to("internal"))
	a := td.deployer
	r := to("internal")
	strict := {"k_min": 10, "l_min": 1}
	not data_release.allow with input.dataset as d with input.actor as a with input.release as r with data.bastion.config.release as strict
}

test_release_l_min_when_configured if {
	a := td.deployer
	r := to("internal")
	diverse := {"k_min": 5, "l_min": 3}
	low := dataset("confidential", measured(7, 2))
	none := dataset("confidential", measured(7, null))
	good := dataset("confidential", measured(7, 3))
	data_release.allow with input.dataset as good with input.actor as a with input.release as r with data.bastion.config.release as diverse
	not data_release.allow with input.dataset as low with input.actor as a with input.release as r with data.bastion.config.release as diverse
	not data_release.allow with input.dataset as none with input.actor as a with input.release as r with data.bastion.config.release as diverse
}

test_release_without_config_fails_closed if {
	a := td.deployer
	r := to("internal")
	d := dataset("confidential", measured(7, 2))
	empty := {}
	not data_release.allow with input.dataset as d with input.actor as a with input.release as r with data.bastion.config.release as empty
}
