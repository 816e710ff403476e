package bastion.gates.privacy_budget_test

import rego.v1

import data.bastion.gates.privacy_budget
import data.bastion.testdata as td

units := {"epsilon": 0.000001, "delta": 0.000000000000001}

data_set := {"name": "loans", "version": 2, "classification": "confidential", "status": "active"}

# A budget of epsilon 1.0 and delta 1e-5 with `eps` micro-epsilon and `dl` delta units spent.
budget(eps, dl) := {
	"epsilon_total": 1.0, "delta_total": 0.00001,
	"epsilon_spent": eps / 1000000, "delta_spent": dl / 1000000000000000,
	"exact": {"epsilon_total": 1000000, "delta_total": 10000000000, "epsilon_spent": eps, "delta_spent": dl},
}

request(eps, dl) := {
	"epsilon": eps / 1000000, "delta": dl / 1000000000000000,
	"mechanism": "diffprivlib.LogisticRegression", "purpose": "dp training", "subject": "model:scorer",
	"exact": {"epsilon": eps, "delta": dl},
}

reasons(b, s) := r if {
	a := td.approver_actor
	d := data_set
	u := units
	r := privacy_budget.deny with input.dataset as d with input.actor as a with input.budget as b with input.spend as s with input.exact_units as u
}

allows(b, s) if count(reasons(b, s)) == 0

denied_with(b, s, needle) if {
	some msg in reasons(b, s)
	contains(msg, needle)
}

test_a_spend_within_the_budget_is_allowed if {
	allows(budget(0, 0), request(100000, 0))
}

test_the_last_unit_fits_exactly if {
	# 0.9 spent + 0.1 requested == 1.0: allowed, in exact units (no floating-point drift)
	allows(budget(900000, 0), request(100000, 0))
}

test_one_unit_over_is_denied if {
	denied_with(budget(900001, 0), request(100000, 0), "would exceed the privacy budget")
}

test_delta_adds_up_too if {
	allows(budget(0, 9000000000), request(1, 1000000000))
	denied_with(budget(0, 9000000001), request(1, 1000000000), "spending delta")
}

test_no_budget_is_denied if {
	denied_with(null, request(1, 0), "no privacy budget is set")
}

test_a_missing_budget_is_denied if {
	a := td.approver_actor
	d := data_set
	s := request(1, 0)
	u := units
	r := privacy_budget.deny with input.dataset as d with input.actor as a with input.spend as s with input.exact_units as u
	some msg in r
	contains(msg, "no privacy budget is set")
}

test_a_zero_or_fractional_request_is_denied if {
	denied_with(budget(0, 0), request(0, 0), "positive number of epsilon units")
	denied_with(budget(0, 0), request(0.5, 0), "positive number of epsilon units")
	denied_with(budget(0, 0), request(1, -1), "non-negative number of delta units")
}

test_an_inactive_dataset_is_denied if {
	a := td.approver_actor
	d := object.union(data_set, {"status": "deleted"})
	b := budget(0, 0)
	s := request(1, 0)
	u := units
	r := privacy_budget.deny with input.dataset as d with input.actor as a with input.budget as b with input.spend as s with input.exact_units as u
	some msg in r
	contains(msg, "is not active")
}

test_a_spend_needs_a_mechanism_and_a_purpose if {
	denied_with(budget(0, 0), object.union(request(1, 0), {"mechanism": ""}), "needs a mechanism")
	denied_with(budget(0, 0), object.union(request(1, 0), {"purpose": null}), "needs a mechanism")
}

test_missing_objects_are_denied if {
	a := td.approver_actor
	r := privacy_budget.deny with input.actor as a
	"the input has no dataset object" in r
	"the input has no spend object" in r
	"the input has no exact_units object" in r
}
