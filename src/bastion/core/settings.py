"""`Settings`: configuration read once at the edge and passed down as a frozen object.

Sources, highest first: keyword overrides, `BASTION_*` environment variables, an optional
TOML file named by `BASTION_CONFIG`, then defaults. The embedded default needs nothing set:
SQLite, blobs and keys all live under `BASTION_HOME` (default `./.bastion`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bastion.core.errors import ConfigError

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASTION_", frozen=True, extra="forbid")

    home: Path = Field(default=Path(".bastion"), description="State directory (BASTION_HOME).")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite under home. postgresql:// uses psycopg 3.",
    )
    blob_url: str | None = Field(
        default=None, description="Blob store URL; default file://home/blobs"
    )
    listen: str = Field(default="127.0.0.1:8080", description="host:port the API server binds")
    master_key: SecretStr | None = Field(
        default=None,
        description="base64url 32-byte master key wrapping the key store; else home/master.key",
    )
    max_request_bytes: int = Field(default=1 * MiB, gt=0, description="Largest accepted body")
    token_default_ttl_seconds: int = Field(default=8 * 3600, gt=0)
    token_max_ttl_seconds: int = Field(default=90 * 24 * 3600, gt=0)
    token_rotation_grace_seconds: int = Field(default=3600, ge=0)
    bootstrap_token_ttl_seconds: int = Field(default=24 * 3600, gt=0)
    ledger_origin: str | None = Field(
        default=None,
        description="Origin line of the log's checkpoints; default derived from the log key",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,199}$",
    )
    auth_cache_seconds: float = Field(
        default=2.0, ge=0, le=60, description="How long a verified token is trusted from memory"
    )
    max_artifact_bytes: int = Field(
        default=8 * 1024 * MiB, gt=0, description="Largest model artifact (all files together)"
    )
    max_artifact_files: int = Field(default=10_000, gt=0, description="Most files per version")
    max_dataset_bytes: int = Field(
        default=4 * 1024 * MiB, gt=0, description="Largest dataset file stored by the registry"
    )
    upload_ttl_seconds: int = Field(
        default=24 * 3600, gt=0, description="How long a staged, uncommitted upload is kept"
    )
    approval_ttl_days: int = Field(
        default=30, gt=0, le=3650, description="How long an approval counts before it expires"
    )
    policy_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="How long a replica trusts its idea of the active policy bundle",
    )
    receipt_queue_size: int = Field(
        default=10_000,
        gt=0,
        le=10_000_000,
        description="Prediction receipts waiting to be written before the queue is full",
    )
    receipt_flush_ms: int = Field(
        default=50, gt=0, le=60_000, description="Write the receipt batch at least this often"
    )
    receipt_flush_max: int = Field(
        default=1000, gt=0, le=100_000, description="...or as soon as this many are waiting"
    )
    receipt_on_full: Literal["reject", "drop"] = Field(
        default="reject",
        description="A full receipt queue rejects predictions (503) or serves them and counts "
        "a dropped receipt (bastion_gateway_receipts_dropped_total)",
    )
    ratelimit_url: str | None = Field(
        default=None,
        description="redis://host:port/db to share rate limits between gateway replicas; "
        "default: in-process buckets",
        pattern=r"^(memory://|redis://|rediss://).*",
    )
    ratelimit_on_error: Literal["local", "reject"] = Field(
        default="local",
        description="When the shared limiter is unreachable: limit in-process, or refuse",
    )
    ratelimit_principal_rate: float = Field(
        default=200.0, gt=0, description="Requests per second per principal and endpoint"
    )
    ratelimit_principal_burst: int = Field(default=400, gt=0)
    ratelimit_endpoint_rate: float = Field(
        default=5000.0, gt=0, description="Requests per second per endpoint (all callers)"
    )
    ratelimit_endpoint_burst: int = Field(default=10_000, gt=0)
    deploy_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often a gateway checks for deployment changes made by other replicas",
    )
    access_log: bool = Field(
        default=False, description="Log one line per HTTP request (uvicorn's access log)"
    )
    max_serving_bytes: int = Field(
        default=2 * 1024 * MiB,
        gt=0,
        description="Largest model version the gateway loads (decrypted into memory)",
    )
    shadow_queue_size: int = Field(
        default=1000, gt=0, description="Shadow requests waiting; beyond it they are dropped"
    )
    redact_logs: bool = Field(
        default=True, description="Redact PII from every log line Bastion writes"
    )
    pii_min_score: float = Field(
        default=0.5, ge=0, le=1, description="Lowest recognizer score that counts as PII"
    )
    retention_check_seconds: float = Field(
        default=3600,
        ge=0,
        le=7 * 86400,
        description="How often the server enforces retention (0: never)",
    )
    prediction_retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="Days prediction-log entries are kept (None: forever)",
    )
    fault_injection: str | None = Field(
        default=None,
        description="Rehearsal only: JSON list of {endpoint, version, error_rate, latency_ms}",
    )
    drift_thresholds: Path | None = Field(
        default=None,
        description='JSON file of per-feature drift thresholds: {"feature": {"psi": .., "js": ..}}',
    )
    monitor_slice_seconds: float = Field(
        default=10.0, ge=0.1, le=3600, description="Length of one slice of a rolling window"
    )
    monitor_slices: int = Field(
        default=30, ge=1, le=10_000, description="Slices in a rolling window (30 x 10 s: 5 min)"
    )
    canary_guard: bool = Field(
        default=True, description="Roll canaries back automatically when their window breaches"
    )
    canary_max_error_rate: float = Field(
        default=0.01, ge=0, lt=1, description="Server-error share a canary may show"
    )
    canary_latency_p95_ms: float = Field(
        default=200.0, gt=0, le=600_000, description="Canary p95 latency limit (or 1.5x stable's)"
    )
    canary_latency_p99_ms: float = Field(
        default=1000.0, gt=0, le=600_000, description="Canary p99 latency limit (or 1.5x stable's)"
    )
    canary_max_anomaly_rate: float = Field(
        default=0.05, ge=0, lt=1, description="Worst field's anomalous-value share for a canary"
    )
    canary_max_drift_score: float = Field(
        default=0.2, ge=0, lt=1, description="Drift score (largest JS distance) for a canary"
    )
    canary_alpha: float = Field(
        default=0.001, gt=0, lt=0.5, description="Significance a breach must reach"
    )
    canary_min_requests: int = Field(
        default=20, ge=1, le=1_000_000, description="Fewest canary requests before judging"
    )
    scan_allowlist: Path | None = Field(
        default=None,
        description="Operator allow-list file merged over the packaged scanner allow-list",
    )
    slo_availability: float = Field(
        default=0.999,
        gt=0,
        lt=1,
        description="Availability objective per endpoint: share of requests that are not 5xx",
    )
    slo_latency_ms: float = Field(
        default=200,
        gt=0,
        le=10_000,
        description="Latency SLO threshold in ms (a bucket bound of the request histogram)",
    )
    slo_latency_objective: float = Field(
        default=0.95, gt=0, lt=1, description="Share of non-5xx requests faster than the threshold"
    )
    slo_min_requests: int = Field(
        default=10,
        ge=1,
        le=1_000_000,
        description="Fewest requests in a burn-rate alert's short window before it may fire",
    )
    alert_webhook_url: str | None = Field(
        default=None,
        description="http(s) URL alerts are POSTed to, HMAC-signed; default: log only",
        pattern=r"^https?://.+",
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC key of the alert webhook (required with its URL)"
    )
    alert_repeat_seconds: float = Field(
        default=3600,
        gt=0,
        le=7 * 24 * 3600,
        description="How often a still-firing alert is sent again",
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen must be host:port, got {value!r}")
        return value

    @model_validator(mode="after")
    def _webhook_has_secret(self) -> Settings:
        secret = self.alert_webhook_secret
        if self.alert_webhook_url is not None and (
            secret is None or len(secret.get_secret_value().encode()) < 16
        ):
            raise ValueError(
                "alert_webhook_url needs alert_webhook_secret (the HMAC key, 16 bytes or more)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("BASTION_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read the environment (and `BASTION_CONFIG`), apply overrides; `ConfigError` if bad."""
        config_file = os.environ.get("BASTION_CONFIG")
        if config_file and not Path(config_file).is_file():
            raise ConfigError(f"BASTION_CONFIG names {config_file}, which is not a file")
        try:
            return cls(**overrides)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"BASTION_CONFIG file {config_file} is not valid TOML: {exc}"
            ) from exc
        except OSError as exc:
            raise ConfigError(f"cannot read BASTION_CONFIG file {config_file}: {exc}") from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(f"invalid configuration: {problems}") from exc

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'bastion.db'}"

    @property
    def resolved_blob_url(self) -> str:
        return self.blob_url or (self.home / "blobs").as_uri()

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def staging_dir(self) -> Path:
        """Private directory for uploads in flight (plaintext until sealed; swept on open)."""
        return self.home / "staging"

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])
