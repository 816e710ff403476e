"""The composition root: builds every service once from `Settings` and hands them to the edges.

Services receive their collaborators as constructor arguments; nothing holds state at module
level, so a test builds a whole Platform on a temporary directory in milliseconds.
`Platform.initialise` (what `bastion init` runs) creates `BASTION_HOME`, the master key (unless
`BASTION_MASTER_KEY` is set), the key store and the database schema; `Platform.from_settings`
opens what `initialise` made and refuses to start on a missing or outdated one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.core.clock import Clock, SystemClock
from bastion.core.errors import ConfigError, InvalidInput
from bastion.core.settings import Settings
from bastion.crypto.envelope import EnvelopeCipher
from bastion.crypto.keystore import LocalKeyStore
from bastion.crypto.masterkey import ensure_private_dir, resolve_master_key
from bastion.deploy import DeploymentService
from bastion.identity import (
    AccessCounters,
    Authorizer,
    Caller,
    IssuedToken,
    KeyAdmin,
    Principal,
    PrincipalService,
    Role,
    TokenService,
)
from bastion.ledger import AuditLog, TransparencyLog
from bastion.ledger.log import PREDICTION_TABLES
from bastion.ledger.note import NoteSigner, signer_from_seed
from bastion.monitoring.alerts import AlertRouter, AlertSink, LogSink, WebhookSink
from bastion.monitoring.collectors import DownloadCollector
from bastion.monitoring.drift import DriftThresholds, parse_thresholds
from bastion.monitoring.guard import GuardLimits
from bastion.monitoring.incidents import INCIDENT_KEY, IncidentService
from bastion.monitoring.metrics import GatewayMetrics
from bastion.monitoring.monitor import Monitor, MonitorConfig
from bastion.monitoring.slo import SloSpec, SloTracker
from bastion.monitoring.windows import WindowConfig, Windows
from bastion.policy import PolicyService
from bastion.privacy.budget import PrivacyBudgetService
from bastion.privacy.retention import RetentionService
from bastion.privacy.risk import ReidentificationService
from bastion.privacy.scan import DatasetScanService
from bastion.privacy.stats import DpStatistics
from bastion.privacy.tokens import Tokenizer
from bastion.registry import (
    ApprovalService,
    AttestationService,
    DatasetService,
    GateChecks,
    ModelService,
    SignatureService,
    Staging,
)
from bastion.serving.faults import parse_faults
from bastion.serving.gateway import Gateway
from bastion.serving.ratelimit import limiter_from_url
from bastion.serving.receipts import ReceiptLog
from bastion.serving.router import Router
from bastion.serving.runtime import Chore, ServingRuntime
from bastion.serving.shadow import ShadowRunner
from bastion.serving.verified import VerifiedLoader
from bastion.store.blobs import open_blob_store
from bastion.store.db import Database
from bastion.store.sealed import SealedBlobStore
from bastion.supplychain.scan import AllowList
from bastion.workflows import PrivateModels

LEDGER_KEY = "ledger-signing-key"
TOKEN_PEPPER = "api-token-pepper"  # noqa: S105 - the key's name in the key store
MODEL_SIGNING_KEY = "model-signing-key"
PREDICTION_LOG_KEY = "prediction-log-signing-key"
RECEIPT_HMAC_KEY = "receipt-hmac-key"

log = logging.getLogger("bastion")


@dataclass
class Platform:
    settings: Settings
    clock: Clock
    database: Database
    keystore: LocalKeyStore
    cipher: EnvelopeCipher
    blobs: SealedBlobStore
    audit: AuditLog
    access_counters: AccessCounters
    authorizer: Authorizer
    tokens: TokenService
    principals: PrincipalService
    keys: KeyAdmin
    ledger: TransparencyLog
    staging: Staging
    datasets: DatasetService
    models: ModelService
    signatures: SignatureService
    policy: PolicyService
    gates: GateChecks
    approvals: ApprovalService
    attestations: AttestationService
    deployments: DeploymentService
    receipts: ReceiptLog
    incidents: IncidentService
    privacy_budgets: PrivacyBudgetService
    privacy_stats: DpStatistics
    private_models: PrivateModels
    privacy_scan: DatasetScanService
    privacy_risk: ReidentificationService
    retention: RetentionService
    tokenizer: Tokenizer

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> Platform:
        """Open an initialised home. Raises `CryptoError` (`crypto.keystore_missing`),
        `IntegrityError` (`crypto.wrong_master_key`) or `StoreError` (`store.schema_outdated`)."""
        clock = clock or SystemClock()
        master = resolve_master_key(settings, create=False)
        keystore = LocalKeyStore.open(settings.keys_dir, master, clock=clock)
        return cls._wire(settings, clock, keystore, prepare=Database.check_current)

    @classmethod
    def initialise(cls, settings: Settings, *, clock: Clock | None = None) -> Platform:
        """Create (or complete) a home: directory 0700, master key, key store, schema.

        Idempotent: running it again migrates the schema to head and changes nothing else.
        """
        clock = clock or SystemClock()
        ensure_private_dir(settings.home)
        master = resolve_master_key(settings, create=True)
        keystore = LocalKeyStore.create(settings.keys_dir, master, clock=clock)
        platform = cls._wire(settings, clock, keystore, prepare=Database.migrate)
        try:
            platform.signatures.ensure_platform_key(Caller.system("init", [Role.ADMIN]))
        except BaseException:
            platform.close()
            raise
        return platform

    @classmethod
    def _wire(
        cls,
        settings: Settings,
        clock: Clock,
        keystore: LocalKeyStore,
        *,
        prepare: Callable[[Database], None],
    ) -> Platform:
        database = Database(settings.resolved_database_url)
        try:
            prepare(database)
            platform = cls._build(settings, clock, database, keystore)
            # Entries a crashed process committed but never sequenced go in now.
            platform.ledger.sequence_pending()
            # Staged plaintext of uploads that expired or were cut off goes now.
            platform.staging.sweep()
            return platform
        except BaseException:
            database.dispose()
            raise

    @classmethod
    def _build(
        cls, settings: Settings, clock: Clock, database: Database, keystore: LocalKeyStore
    ) -> Platform:
        cipher = EnvelopeCipher(keystore)
        audit = AuditLog(clock=clock)
        ledger = _ledger(settings, clock, database, keystore, audit)
        counters = AccessCounters()
        authorizer = Authorizer(counters=counters)
        tokens = TokenService(
            database=database,
            audit=audit,
            authorizer=authorizer,
            counters=counters,
            clock=clock,
            pepper=keystore.named_key(TOKEN_PEPPER),
            default_ttl=timedelta(seconds=settings.token_default_ttl_seconds),
            max_ttl=timedelta(seconds=settings.token_max_ttl_seconds),
            rotation_grace=timedelta(seconds=settings.token_rotation_grace_seconds),
            cache_seconds=settings.auth_cache_seconds,
        )
        principals = PrincipalService(
            database=database, audit=audit, authorizer=authorizer, tokens=tokens, clock=clock
        )
        blobs = SealedBlobStore(open_blob_store(settings.resolved_blob_url), cipher, keystore)
        policy = PolicyService(
            database=database,
            audit=audit,
            authorizer=authorizer,
            clock=clock,
            cache_seconds=settings.policy_cache_seconds,
        )
        signing_seed = keystore.named_key(MODEL_SIGNING_KEY)
        staging = Staging(
            database=database,
            authorizer=authorizer,
            clock=clock,
            root=settings.staging_dir,
            max_bytes=settings.max_artifact_bytes,
            max_files=settings.max_artifact_files,
            ttl=timedelta(seconds=settings.upload_ttl_seconds),
        )
        models = ModelService(
            database=database,
            audit=audit,
            authorizer=authorizer,
            blobs=blobs,
            staging=staging,
            clock=clock,
            allowlist=AllowList.load(settings.scan_allowlist),
            scratch=settings.home / "scratch",
            policy=policy,
        )
        gates = GateChecks(database=database, authorizer=authorizer, policy=policy, clock=clock)
        budgets = PrivacyBudgetService(
            database=database,
            audit=audit,
            authorizer=authorizer,
            policy=policy,
            clock=clock,
            blobs=blobs,
        )
        datasets = DatasetService(
            database=database,
            audit=audit,
            authorizer=authorizer,
            blobs=blobs,
            staging=staging,
            clock=clock,
            max_bytes=settings.max_dataset_bytes,
            policy=policy,
        )
        attestations = AttestationService(
            database=database,
            audit=audit,
            authorizer=authorizer,
            clock=clock,
            signing_seed=signing_seed,
        )
        return cls(
            settings=settings,
            clock=clock,
            database=database,
            keystore=keystore,
            cipher=cipher,
            blobs=blobs,
            audit=audit,
            access_counters=counters,
            authorizer=authorizer,
            tokens=tokens,
            principals=principals,
            keys=KeyAdmin(keystore=keystore, database=database, audit=audit, authorizer=authorizer),
            ledger=ledger,
            staging=staging,
            datasets=datasets,
            models=models,
            signatures=SignatureService(
                database=database,
                audit=audit,
                authorizer=authorizer,
                models=models,
                clock=clock,
                signing_seed=signing_seed,
                policy=policy,
            ),
            policy=policy,
            gates=gates,
            approvals=ApprovalService(
                database=database,
                audit=audit,
                authorizer=authorizer,
                policy=policy,
                gates=gates,
                clock=clock,
                ttl=timedelta(days=settings.approval_ttl_days),
            ),
            attestations=attestations,
            deployments=DeploymentService(
                database=database,
                audit=audit,
                authorizer=authorizer,
                policy=policy,
                gates=gates,
                clock=clock,
            ),
            receipts=_receipts(settings, clock, database, keystore, authorizer),
            incidents=IncidentService(
                database=database,
                audit=audit,
                authorizer=authorizer,
                signer=_incident_signer(keystore),
                checkpoint=lambda: ledger.latest_checkpoint().note,
                clock=clock,
                config=_monitoring_config(settings),
            ),
            privacy_budgets=budgets,
            privacy_stats=DpStatistics(budgets=budgets),
            private_models=PrivateModels(
                authorizer=authorizer,
                privacy_budgets=budgets,
                datasets=datasets,
                models=models,
                staging=staging,
                attestations=attestations,
                allowlist=models.allowlist,
                max_serving_bytes=settings.max_serving_bytes,
            ),
            privacy_scan=DatasetScanService(
                database=database,
                audit=audit,
                authorizer=authorizer,
                blobs=blobs,
                clock=clock,
                min_score=settings.pii_min_score,
            ),
            privacy_risk=ReidentificationService(
                database=database,
                audit=audit,
                authorizer=authorizer,
                blobs=blobs,
                policy=policy,
                clock=clock,
            ),
            retention=RetentionService(
                database=database,
                audit=audit,
                authorizer=authorizer,
                policy=policy,
                blobs=blobs,
                keystore=keystore,
                clock=clock,
                prediction_retention_days=settings.prediction_retention_days,
            ),
            tokenizer=Tokenizer(
                database=database,
                audit=audit,
                authorizer=authorizer,
                keystore=keystore,
                clock=clock,
            ),
        )

    def serving_runtime(self) -> ServingRuntime:
        """The gateway of a server process (not started): verified loader, routing table,
        rate limiter, shadows and metrics, over this platform's services."""
        settings = self.settings
        metrics = GatewayMetrics()
        metrics.add_collector(DownloadCollector(self.models))
        loader = VerifiedLoader(
            database=self.database,
            models=self.models,
            audit=self.audit,
            allowlist=self.models.allowlist,
            clock=self.clock,
            max_bytes=settings.max_serving_bytes,
        )
        router = Router(
            deployments=self.deployments, load=loader.load, metrics=metrics, clock=self.clock
        )
        limiter = (
            limiter_from_url(
                settings.ratelimit_url,
                on_error=settings.ratelimit_on_error,
                on_backend_error=metrics.ratelimit_backend_error,
            )
            if settings.ratelimit_url and not settings.ratelimit_url.startswith("memory://")
            else limiter_from_url(None)
        )
        monitor = self.monitor(metrics)
        faults = parse_faults(settings.fault_injection)
        if faults:
            log.warning(
                "fault injection is ON for %s (BASTION_FAULT_INJECTION): rehearsal only",
                ", ".join(f"{e} v{v}" for e, v in faults),
            )
        shadows = ShadowRunner(
            metrics=metrics, queue_size=settings.shadow_queue_size, monitor=monitor
        )
        self.receipts.observe(on_drop=metrics.receipt_dropped, on_depth=metrics.set_receipt_queue)
        gateway = Gateway(
            tokens=self.tokens,
            authorizer=self.authorizer,
            router=router,
            limiter=limiter,
            metrics=metrics,
            receipts=self.receipts,
            shadows=shadows,
            settings=settings,
            clock=self.clock,
            monitor=monitor,
            faults=faults,
        )
        return ServingRuntime(
            gateway=gateway,
            router=router,
            deployments=self.deployments,
            receipts=self.receipts,
            shadows=shadows,
            limiter=limiter,
            metrics=metrics,
            clock=self.clock,
            poll_seconds=settings.deploy_poll_seconds,
            monitor=monitor,
            incidents=self.incidents,
            guard=settings.canary_guard,
            chores=[
                Chore("retention", settings.retention_check_seconds, self.retention.enforce_due)
            ],
        )

    def monitor(self, metrics: GatewayMetrics | None = None) -> Monitor:
        """A gateway process's monitor (windows, SLOs, alert sinks), its figures exposed
        through `metrics` when given."""
        settings = self.settings
        sinks: list[AlertSink] = [LogSink()]
        if settings.alert_webhook_url and settings.alert_webhook_secret is not None:
            sinks.append(
                WebhookSink(
                    settings.alert_webhook_url,
                    settings.alert_webhook_secret.get_secret_value().encode(),
                )
            )
        windows = Windows(
            WindowConfig(
                slice_seconds=settings.monitor_slice_seconds, slices=settings.monitor_slices
            )
        )
        slo = SloTracker(SloSpec.from_settings(settings), min_requests=settings.slo_min_requests)
        alerts = AlertRouter(sinks, repeat_interval=settings.alert_repeat_seconds)
        guard = GuardLimits(
            max_error_rate=settings.canary_max_error_rate,
            latency_p95=settings.canary_latency_p95_ms / 1000,
            latency_p99=settings.canary_latency_p99_ms / 1000,
            max_anomaly_rate=settings.canary_max_anomaly_rate,
            max_drift_score=settings.canary_max_drift_score,
            alpha=settings.canary_alpha,
            min_requests=settings.canary_min_requests,
        )
        monitor = Monitor(
            windows=windows,
            slo=slo,
            alerts=alerts,
            database=self.database,
            config=MonitorConfig(
                guard=guard,
                per_feature=_drift_thresholds(settings.drift_thresholds),
                publish_seconds=min(5.0, settings.monitor_slice_seconds),
            ),
        )
        if metrics is not None:
            for collector in (monitor.collector(), slo.collector(), alerts.collector()):
                metrics.add_collector(collector)
        return monitor

    def bootstrap_admin(self, name: str = "admin") -> tuple[Principal, IssuedToken]:
        """First admin and its token (or a fresh token for it): the local break-glass path."""
        return self.principals.bootstrap_admin(
            name, ttl=timedelta(seconds=self.settings.bootstrap_token_ttl_seconds)
        )

    def close(self) -> None:
        self.receipts.close()  # drains the prediction log's queue first
        self.database.dispose()

    def __enter__(self) -> Platform:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _ledger(
    settings: Settings,
    clock: Clock,
    database: Database,
    keystore: LocalKeyStore,
    audit: AuditLog,
) -> TransparencyLog:
    seed = keystore.named_key(LEDGER_KEY)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    origin = (
        settings.ledger_origin or f"bastion.local/ledger/{hashlib.sha256(public).hexdigest()[:16]}"
    )
    ledger = TransparencyLog(
        database=database,
        audit=audit,
        signer=signer_from_seed(seed, origin),
        origin=origin,
        clock=clock,
    )
    database.after_commit(ledger.on_commit)
    return ledger


def _receipts(
    settings: Settings,
    clock: Clock,
    database: Database,
    keystore: LocalKeyStore,
    authorizer: Authorizer,
) -> ReceiptLog:
    """The prediction log: its own tables and its own signing key, so a compromise of the
    serving path cannot forge checkpoints of the governance ledger. The writer is not
    started here (CLI commands build a Platform too); a server starts it."""
    seed = keystore.named_key(PREDICTION_LOG_KEY)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    origin = f"bastion.local/predictions/{hashlib.sha256(public).hexdigest()[:16]}"
    log = TransparencyLog(
        database=database,
        signer=signer_from_seed(seed, origin),
        origin=origin,
        clock=clock,
        tables=PREDICTION_TABLES,
    )
    return ReceiptLog(
        database=database,
        log=log,
        authorizer=authorizer,
        hmac_key=keystore.named_key(RECEIPT_HMAC_KEY),
        clock=clock,
        queue_size=settings.receipt_queue_size,
        flush_interval=settings.receipt_flush_ms / 1000,
        flush_max=settings.receipt_flush_max,
        on_full=settings.receipt_on_full,
    )


def _monitoring_config(settings: Settings) -> dict[str, object]:
    """The monitoring settings an incident snapshot records (no secrets, no URLs)."""
    return {
        "slo_availability": settings.slo_availability,
        "slo_latency_ms": settings.slo_latency_ms,
        "slo_latency_objective": settings.slo_latency_objective,
        "monitor_window_seconds": settings.monitor_slice_seconds * settings.monitor_slices,
        "canary_guard": settings.canary_guard,
        "canary_max_error_rate": settings.canary_max_error_rate,
        "canary_latency_p95_ms": settings.canary_latency_p95_ms,
        "canary_latency_p99_ms": settings.canary_latency_p99_ms,
        "canary_max_anomaly_rate": settings.canary_max_anomaly_rate,
        "canary_max_drift_score": settings.canary_max_drift_score,
        "canary_alpha": settings.canary_alpha,
        "canary_min_requests": settings.canary_min_requests,
        "alert_webhook": settings.alert_webhook_url is not None,
        "fault_injection": bool(settings.fault_injection),
    }


def _incident_signer(keystore: LocalKeyStore) -> NoteSigner:
    seed = keystore.named_key(INCIDENT_KEY)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return signer_from_seed(
        seed, f"bastion.local/incidents/{hashlib.sha256(public).hexdigest()[:16]}"
    )


def _drift_thresholds(path: Path | None) -> dict[str, DriftThresholds] | None:
    """Per-feature drift thresholds from `BASTION_DRIFT_THRESHOLDS` (ConfigError if bad)."""
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return parse_thresholds(doc, base=DriftThresholds())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"BASTION_DRIFT_THRESHOLDS: cannot read {path}: {exc}", code="config.bad_thresholds"
        ) from None
    except InvalidInput as exc:
        raise ConfigError(
            f"BASTION_DRIFT_THRESHOLDS: {exc.message}", code="config.bad_thresholds"
        ) from None
