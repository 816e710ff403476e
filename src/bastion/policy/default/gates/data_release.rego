# Gate data_release: may a dataset be released at a (lower) classification level?
# Data leaving its level for a lower one needs a measured re-identification risk
# (`bastion privacy risk`) with k >= config.release.k_min and, when config.release.l_min > 1,
# distinct l >= l_min. Releases at the same or a higher level need only a reason.
# Messages are built from validated names and numbers only (never from column names or the
# free-text reason), see lib/bastion.rego.
package bastion.gates.data_release

import rego.v1

import data.bastion.lib

default allow := false

allow if count(deny) == 0

d := input.dataset

report := d.privacy_report

release := input.release

cfg := lib.config.release

k_min := cfg.k_min if is_number(cfg.k_min)

l_min := cfg.l_min if is_number(cfg.l_min)

else := 1

label := concat("", [d.name, "@", format_int(d.version, 10)]) if {
	is_string(d.name)
	is_number(d.version)
}

else := "the dataset"

lowering if lib.rank[release.to_classification] < lib.rank[d.classification]

deny contains msg if some msg in lib.shape_problems(["dataset", "actor", "release"])

deny contains "release.to_classification must be public, internal, confidential or restricted" if {
	not lib.rank[release.to_classification]
}

deny contains "the dataset has no known classification" if {
	not lib.rank[d.classification]
}

deny contains "a release needs a reason" if {
	not nonblank(release.reason)
}

deny contains msg if {
	not d.status == "active"
	msg := concat("", [label, " is not active and may not be released"])
}

deny contains "config.release.k_min is not configured: releases to a lower classification are refused" if {
	lowering
	not k_min
}

deny contains msg if {
	lowering
	not is_object(report)
	msg := concat("", [
		label, " has no re-identification measurement; measure it first: bastion privacy risk ",
		label, " --quasi COLUMNS",
	])
}

deny contains msg if {
	lowering
	is_object(report)
	is_number(k_min)
	not k_reached
	msg := concat("", [
		label, " is ", k_text, " over its quasi-identifiers; releasing ", d.classification,
		" data as ", release.to_classification, " needs k >= ", format_int(k_min, 10),
	])
}

deny contains msg if {
	lowering
	is_object(report)
	l_min > 1
	not is_number(report.l)
	msg := concat("", [
		label, " has no l-diversity measurement (no sensitive attribute declared); releasing it as ",
		release.to_classification, " needs l >= ", format_int(l_min, 10),
	])
}

deny contains msg if {
	lowering
	is_number(report.l)
	report.l < l_min
	msg := concat("", [
		label, " has l = ", format_int(report.l, 10), " over its sensitive attributes; releasing it as ",
		release.to_classification, " needs l >= ", format_int(l_min, 10),
	])
}

k_reached if {
	is_number(report.k)
	report.k >= k_min
}

k_text := concat("", [format_int(report.k, 10), "-anonymous"]) if is_number(report.k)

else := "not measured as k-anonymous"

nonblank(x) if {
	is_string(x)
	trim_space(x) != ""
}
