"""Privacy safeguards: PII detection and redaction, keyed tokenization, retention with
crypto-shredding, re-identification risk (k-anonymity, l-diversity), differential-privacy
training with a per-dataset budget, membership-inference audits.

Beside `bastion.supplychain` in the layers: may import `bastion.policy`, `bastion.identity`,
`bastion.ledger`, `bastion.store`, `bastion.crypto` and `bastion.core`; never
`bastion.supplychain`, `bastion.registry` or anything above.
"""
