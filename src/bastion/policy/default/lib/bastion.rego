# Shared rules of the default bundle (package bastion.lib). Kept deliberately simple:
# rego-cpp evaluates every helper on every decision, and the deploy gate's budget is
# 200 us. Bastion has already filtered approvals (valid now, this digest) and computed
# `expired` for datasets, so no time arithmetic happens here.
#
# rego-cpp 1.5.2: sprintf("%s") quotes computed strings and output strings are not escaped,
# so messages are built with concat() and format_int() from trusted names only.
package bastion.lib

import rego.v1

config := data.bastion.config

version := input.version

version_label := concat("", [input.model.name, "@", format_int(version.number, 10)])

# -- scan, signature, status ------------------------------------------------------------

scan_problems contains "the artifact scan is not clean (or missing)" if {
	not version.scan.clean == true
}

signature_problems contains msg if {
	not version.signature.verified == true
	msg := concat("", [
		version_label,
		" has no signature that verifies under a trusted, unrevoked signer key; sign it (bastion model sign)",
	])
}

status_problems contains msg if {
	not version.status == "registered"
	msg := concat("", [version_label, " is not in status registered"])
}

# -- lineage: expiry, availability, purpose limitation -----------------------------------

lineage_problems contains msg if {
	some link in version.lineage
	link.dataset.expired == true
	msg := concat("", [
		"dataset ", link.dataset.name, "@", format_int(link.dataset.version, 10),
		" is past its retention and may not be used",
	])
}

lineage_problems contains msg if {
	some link in version.lineage
	not link.dataset.status == "active"
	msg := concat("", [
		"dataset ", link.dataset.name, "@", format_int(link.dataset.version, 10), " is not active",
	])
}

lineage_problems contains msg if {
	some link in version.lineage
	link.role == "training"
	not purpose_allowed(link.dataset)
	msg := concat("", [
		"purpose limitation: dataset ", link.dataset.name, "@",
		format_int(link.dataset.version, 10), " may not train a model whose declared purpose is ",
		purpose_text, " (allowed: ", concat(", ", sort(link.dataset.purposes)), ")",
	])
}

purpose_allowed(dataset) if {
	is_string(input.model.purpose)
	input.model.purpose in dataset.purposes
}

purpose_text := input.model.purpose if is_string(input.model.purpose)

else := "(none declared)"

# -- validation attestation ---------------------------------------------------------------

validation_attested if {
	some a in version.attestations
	a.type == config.validation_attestation
	a.verified == true
	a.subject_digest == version.artifact_digest
	a.predicate.passed == true
}

attestation_problems contains msg if {
	not validation_attested
	msg := concat("", [
		"no verified, passing validation attestation (", config.validation_attestation,
		") for this artifact digest; record one with bastion attest",
	])
}

# -- membership-inference audit ------------------------------------------------------------
#
# A version whose lineage holds data of a classification in config.privacy.mia_required
# needs a verified membership-inference attestation (bastion privacy audit) for this artifact
# digest whose worst attack's AUC upper bound (predicate.auc_upper) is at most
# config.privacy.mia_auc_max. Fail closed: a missing or non-numeric bound does not count.

mia_attested if {
	some a in version.attestations
	a.type == config.privacy.mia_attestation
	a.verified == true
	a.subject_digest == version.artifact_digest
	is_number(a.predicate.auc_upper)
	a.predicate.auc_upper <= config.privacy.mia_auc_max
}

privacy_problems contains msg if {
	classification in config.privacy.mia_required
	not mia_attested
	msg := concat("", [
		version_label, " was trained on ", classification,
		" data and needs a verified membership-inference attestation (",
		config.privacy.mia_attestation, ") for this artifact digest with auc_upper <= ",
		sprintf("%v", [config.privacy.mia_auc_max]), "; run bastion privacy audit",
	])
}

# -- approval quorum ----------------------------------------------------------------------

rank := {"public": 1, "internal": 2, "confidential": 3, "restricted": 4}

# The most sensitive classification in the version's lineage ("none" without lineage).
classification := c if {
	ranks := [rank[l.dataset.classification] | some l in version.lineage]
	count(ranks) > 0
	top := max(ranks)
	some c, r in rank
	r == top
} else := "none"

quorum := config.quorum[classification]

# Approvers whose approvals count: for deploy, for this digest, neither the version's
# author nor the actor asking (segregation of duties); each approver once.
counted contains a.approver.id if {
	some a in version.approvals
	a.for == "deploy"
	a.artifact_digest == version.artifact_digest
	a.approver.id != version.author.id
	a.approver.id != input.actor.id
}

excluded contains a.approver.id if {
	some a in version.approvals
	a.for == "deploy"
	a.approver.id in {version.author.id, input.actor.id}
}

role_held(role) if {
	some a in version.approvals
	a.approver.id in counted
	role in a.approver.roles
}

quorum_problems contains msg if {
	count(counted) < quorum.approvals
	msg := concat("", [
		version_label, " needs ", format_int(quorum.approvals, 10),
		" approvals from distinct approvers other than the author and the actor (",
		classification, " data in its lineage); it has ", format_int(count(counted), 10),
		sod_note,
	])
}

quorum_problems contains msg if {
	some role in quorum.roles
	not role_held(role)
	msg := concat("", [version_label, " needs an approval by a ", role, " (", classification, " data)"])
}

quorum_problems contains "no approval quorum is configured for this classification" if {
	not quorum.approvals
}

sod_note := "; approvals by the author or the actor do not count (segregation of duties)" if {
	count(excluded) > 0
} else := ""

# -- shape: the objects a gate reads must be there -----------------------------------------

missing(names) := {n | some n in names; not is_object(input[n])}

shape_problems(names) := {msg | some n in missing(names); msg := concat("", ["the input has no ", n, " object"])}

# Everything deploy requires, shared with alias promotion.
release_problems := (((((scan_problems | signature_problems) | status_problems) | lineage_problems) | attestation_problems) | privacy_problems) | quorum_problems
