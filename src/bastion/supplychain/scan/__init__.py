"""Static, allow-list artifact scanning: pickles and joblib files walked opcode by opcode
(never unpickled), zip containers (PyTorch, skops, npz, plain), `.npy`, safetensors and ONNX
checked for what their loaders would do, and every byte searched for embedded credentials.

An artifact passes only when nothing in it falls outside the allow-list (`allowlist.json`,
versioned data an operator can extend). Imports `bastion.core` and third-party libraries only.
"""

from bastion.supplychain.scan.allowlist import AllowList
from bastion.supplychain.scan.errors import ScanError
from bastion.supplychain.scan.model import (
    ArtifactFormat,
    FileReport,
    Finding,
    ScanLimits,
    ScanReport,
)
from bastion.supplychain.scan.scanner import Scanner

__all__ = [
    "AllowList",
    "ArtifactFormat",
    "FileReport",
    "Finding",
    "ScanError",
    "ScanLimits",
    "ScanReport",
    "Scanner",
]
