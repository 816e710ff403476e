"""Bastion: secure machine-learning deployment under data governance and privacy controls.

The package is layered one-way (see docs/architecture.md); import-linter enforces it.
"""

__version__ = "0.1.0"
