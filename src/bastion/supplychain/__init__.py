"""Safeguards for model artifacts: allow-list scanning, OpenSSF model signing, ML-BOMs.

Pure functions and small classes over files and bytes. Imports only `bastion.core`,
`bastion.crypto` and third-party libraries; nothing from the store, ledger or above.
"""
