# Gate privacy_budget: may this DP run or statistic spend (epsilon, delta) from the dataset's
# privacy budget? Composition is basic sequential composition: over every spend on the
# dataset name, epsilons add up and deltas add up, and the sums may not exceed the totals.
# Sums are compared in exact integer units (input.budget.exact, input.spend.exact; the unit
# sizes are in input.exact_units), never in floating point. The service checks the same sum
# again after an allow, so a bundle can make this gate stricter but never looser.
# Messages: concat() of names, sprintf("%v") of numbers only (see lib/bastion.rego).
package bastion.gates.privacy_budget

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

d := input.dataset

b := input.budget

s := input.spend

deny contains msg if some msg in lib.shape_problems(["dataset", "actor", "spend", "exact_units"])

deny contains msg if {
	not is_object(b)
	msg := concat("", [
		"no privacy budget is set for dataset ", d.name,
		"; a data steward sets one first (bastion privacy budget set)",
	])
}

deny contains "the request must spend a whole, positive number of epsilon units" if {
	not positive_int(s.exact.epsilon)
}

deny contains "the request must spend a whole, non-negative number of delta units" if {
	not non_negative_int(s.exact.delta)
}

deny contains msg if {
	is_object(b)
	b.exact.epsilon_spent + s.exact.epsilon > b.exact.epsilon_total
	msg := concat("", [
		"spending epsilon ", sprintf("%v", [s.epsilon]),
		" would exceed the privacy budget of dataset ", d.name, ": ",
		sprintf("%v", [b.epsilon_spent]), " of ", sprintf("%v", [b.epsilon_total]),
		" is spent (sequential composition)",
	])
}

deny contains msg if {
	is_object(b)
	b.exact.delta_spent + s.exact.delta > b.exact.delta_total
	msg := concat("", [
		"spending delta ", sprintf("%v", [s.delta]),
		" would exceed the privacy budget of dataset ", d.name, ": ",
		sprintf("%v", [b.delta_spent]), " of ", sprintf("%v", [b.delta_total]),
		" is spent (sequential composition)",
	])
}

deny contains msg if {
	not d.status == "active"
	msg := concat("", ["dataset ", d.name, " is not active; its budget may not be spent"])
}

deny contains "a spend needs a mechanism and a purpose" if {
	not non_empty(s.mechanism)
}

deny contains "a spend needs a mechanism and a purpose" if {
	not non_empty(s.purpose)
}

positive_int(x) if {
	is_number(x)
	x == round(x)
	x > 0
}

non_negative_int(x) if {
	is_number(x)
	x == round(x)
	x >= 0
}

non_empty(x) if {
	is_string(x)
	x != ""
}
