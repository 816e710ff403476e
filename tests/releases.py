"""Release-ready model versions for deployment and serving tests (importable as `releases`).

`Release` registers a real scikit-learn model through the registry's own upload path, signs
it, attests a passing validation and collects the approvals the default policy asks for, so a
deployer can deploy it through the real `deploy` gate.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from bastion.identity import Caller, Role
from bastion.platform import Platform
from bastion.registry import ModelSpec, VersionSpec
from support import MakeActor

VALIDATION = "https://bastion.dev/attestations/validation/v1"


def lr_pickle(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 3))
    return pickle.dumps(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), protocol=5)


@dataclass
class Release:
    platform: Platform
    tmp: Path
    dev: Caller
    approvers: list[Caller]
    deployer: Caller
    client: Caller
    admin: Caller
    callers: dict[str, Caller] = field(default_factory=dict)

    def register(
        self,
        model: str = "scorer",
        files: Mapping[str, bytes] | None = None,
        *,
        contract: Mapping[str, Any] | None = None,
    ) -> int:
        root = self.tmp / f"model-{os.urandom(4).hex()}"
        root.mkdir()
        for path, data in (files or {"model.pkl": lr_pickle()}).items():
            (root / path).write_bytes(data)
        upload = self.platform.staging.create(self.dev)
        self.platform.staging.add_tree(self.dev, upload.id, root)
        version = self.platform.models.register_version(
            self.dev,
            model,
            upload.id,
            VersionSpec(input_contract=contract),
            create=ModelSpec(purpose="scoring"),
        )
        return version.version

    def approve(self, number: int, model: str = "scorer") -> None:
        self.platform.signatures.sign(self.dev, model, number)
        self.platform.attestations.attest(
            self.dev, model, number, VALIDATION, {"passed": True, "auc": 0.9}
        )
        self.platform.approvals.approve(self.approvers[0], model, number, comment="ok")

    def ready(
        self,
        model: str = "scorer",
        files: Mapping[str, bytes] | None = None,
        *,
        contract: Mapping[str, Any] | None = None,
    ) -> int:
        number = self.register(model, files, contract=contract)
        self.approve(number, model)
        return number


def make_release(platform: Platform, make_actor: MakeActor, admin_token: str, tmp: Path) -> Release:
    def caller(name: str, *roles: Role, resources: tuple[str, ...] = ()) -> Caller:
        return platform.tokens.authenticate(make_actor(name, *roles, resources=resources).token)

    return Release(
        platform=platform,
        tmp=tmp,
        dev=caller("dev", Role.MODEL_DEVELOPER),
        approvers=[caller(f"approver{i}", Role.APPROVER) for i in range(2)],
        deployer=caller("ops", Role.DEPLOYER),
        client=caller("app", Role.INFERENCE_CLIENT, resources=("endpoint:fraud",)),
        admin=platform.tokens.authenticate(admin_token),
    )
