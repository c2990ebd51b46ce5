"""Database tables (SQLModel) and the status enums, spelled exactly as SPEC §2.

Every other module imports statuses from here; nothing else spells them. Timestamps are aware
UTC (see ``ingestd.clock``). JSON columns hold lists and dicts that are read whole.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class CsvMode(StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"


class BatchStatus(StrEnum):
    DETECTING = "DETECTING"
    WAITING_FOR_CSV = "WAITING_FOR_CSV"
    WAITING_FOR_FILES = "WAITING_FOR_FILES"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    INCOMPLETE = "INCOMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


OPEN_BATCH_STATUSES = frozenset(
    {BatchStatus.DETECTING, BatchStatus.WAITING_FOR_CSV, BatchStatus.WAITING_FOR_FILES}
)
TERMINAL_BATCH_STATUSES = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.INCOMPLETE, BatchStatus.FAILED, BatchStatus.CANCELLED}
)


class FileStatus(StrEnum):
    DETECTED = "DETECTED"
    MATCHED = "MATCHED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DUPLICATE = "DUPLICATE"
    SKIPPED = "SKIPPED"


TERMINAL_FILE_STATUSES = frozenset(
    {FileStatus.COMPLETED, FileStatus.FAILED, FileStatus.DUPLICATE, FileStatus.SKIPPED}
)


_ACTIVE_FILE_SQL = "status IN ('DETECTED', 'MATCHED')"


class FileKind(StrEnum):
    AUDIO = "audio"
    CSV = "csv"
    OTHER = "other"


class CallStatus(StrEnum):
    PENDING = "PENDING"
    TRANSCRIBING = "TRANSCRIBING"
    ANALYZING = "ANALYZING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DUPLICATE = "DUPLICATE"


class CallSource(StrEnum):
    SFTP = "SFTP"
    API = "API"
    BULK = "BULK"
    WATCH = "WATCH"
    PULL = "PULL"


class BulkJobStatus(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class CheckKind(StrEnum):
    PHRASE = "phrase"
    FORBIDDEN_PHRASE = "forbidden_phrase"
    REGEX = "regex"
    LLM = "llm"


class CheckResult(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_APPLICABLE = "NOT_APPLICABLE"
    NOT_EVALUATED = "NOT_EVALUATED"


class Speaker(StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"
    UNKNOWN = "unknown"


class VersionKind(StrEnum):
    TRANSCRIPT = "transcript"
    ANALYSIS = "analysis"


def new_id(prefix: str) -> str:
    """A short random id with a readable prefix (``cmp_``, ``bat_``, ``fil_``, ``call_``)."""
    return f"{prefix}_{secrets.token_hex(8)}"


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def _big_int(default: int | None) -> Any:
    """Byte sizes past 2 GiB and mtimes in nanoseconds overflow a 32-bit INTEGER."""
    return Field(default=default, sa_column=Column(BigInteger, nullable=default is None))


class Campaign(SQLModel, table=True):
    __tablename__ = "campaigns"

    id: str = Field(default_factory=lambda: new_id("cmp"), primary_key=True)
    name: str
    slug: str = Field(unique=True, index=True)
    csv_mode: str = CsvMode.OPTIONAL.value
    batch_window: int = 600
    auto_process: bool = True
    archived: bool = False
    transcriber: str = "pocketsphinx"
    analyzer: str = "rules"
    flag_threshold: int = 70
    # Stereo calls: which channel holds the agent (0 = left); the other one is the customer.
    agent_channel: int = 0
    created_at: datetime


class SftpUser(SQLModel, table=True):
    __tablename__ = "sftp_users"

    username: str = Field(primary_key=True)
    password_hash: str | None = None
    public_keys: list[str] = _json_list()
    campaigns: list[str] = _json_list()  # allowed slugs; empty means all
    created_at: datetime


class Agent(SQLModel, table=True):
    __tablename__ = "agents"

    code: str = Field(primary_key=True)
    name: str
    created_at: datetime


class QualityCheck(SQLModel, table=True):
    __tablename__ = "checks"
    __table_args__ = (UniqueConstraint("campaign_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.id", index=True)
    name: str
    kind: str
    phrases: list[str] = _json_list()
    pattern: str | None = None
    question: str | None = None
    speaker: str | None = None
    within_seconds: float | None = None
    weight: float = 1.0
    critical: bool = False
    created_at: datetime


class Batch(SQLModel, table=True):
    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_scope_status", "scope", "status"),)

    id: str = Field(default_factory=lambda: new_id("bat"), primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.id", index=True)
    scope: str  # folder relative to the SFTP root: "<slug>" or "<slug>/<sub>/…"
    status: str = Field(index=True)
    reason: str | None = None
    csv_file: str | None = None  # the manifest's file name
    csv_file_id: str | None = None
    # Parsed manifest rows: [{"file_name": …, "metadata": {…}, "warnings": […]}]
    manifest_rows: list[dict[str, Any]] = _json_list()
    missing: list[str] = _json_list()
    deadline: datetime
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None


class IngestFile(SQLModel, table=True):
    """One file seen in a scope, from detection to its terminal status."""

    __tablename__ = "files"
    __table_args__ = (
        # The status beside the path and the batch: a scope's open batch holds thousands of
        # waiting rows of one status, and with the status alone indexed SQLite read every one
        # of them to record a few landed paths or to find the files ready for routing.
        Index("ix_files_landing_path_status", "landing_path", "status"),
        Index("ix_files_ready", "status", "batch_id", "stable_at"),
        Index("ix_files_scope_name", "scope", "name"),
        # One waiting row per landed file, even when the SFTP close and a landing scan record
        # it at the same moment (ingestd.landing retries the loser as an update).
        Index("uq_files_active_landing_path", "landing_path", unique=True,
              sqlite_where=text(_ACTIVE_FILE_SQL), postgresql_where=text(_ACTIVE_FILE_SQL)),
    )

    id: str = Field(default_factory=lambda: new_id("fil"), primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.id", index=True)
    scope: str
    name: str
    landing_path: str  # relative to the landing root, POSIX separators
    kind: str
    source: str = CallSource.SFTP.value
    size: int = _big_int(0)
    mtime_ns: int | None = _big_int(None)
    sha256: str | None = None
    status: str = Field(default=FileStatus.DETECTED.value, index=True)
    reason: str | None = None
    warnings: list[str] = _json_list()
    # When the file counts as complete; None while a writer still has it open.
    stable_at: datetime | None = None
    batch_id: str | None = Field(default=None, foreign_key="batches.id", index=True)
    csv_row: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    call_id: str | None = Field(default=None, index=True)
    created_at: datetime
    updated_at: datetime


class Call(SQLModel, table=True):
    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_claim", "status", "queued", "lease_until"),
        Index("ix_calls_campaign_reference", "campaign_id", "client_reference"),
        Index("ix_calls_campaign_sha256", "campaign_id", "sha256"),
        Index("ix_calls_campaign_file_name", "campaign_id", "file_name"),
    )

    id: str = Field(default_factory=lambda: new_id("call"), primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.id", index=True)
    source: str
    status: str = CallStatus.PENDING.value
    file_name: str
    storage_key: str | None = None
    size: int = _big_int(0)
    sha256: str | None = None
    duration: float | None = None
    channels: int | None = None
    sample_rate: int | None = None
    # "metadata" is reserved by SQLAlchemy's declarative base, hence the attribute name.
    meta: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSON, nullable=False)
    )
    client_reference: str | None = None
    call_date: str | None = None
    agent_code: str | None = Field(default=None, foreign_key="agents.code")
    duplicate_of: str | None = None
    queued: bool = False  # ready for the pipeline (auto_process, or `call process`)
    stage: str | None = None  # the stage that failed
    error: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    claimed_by: str | None = None
    lease_until: datetime | None = None
    score: float | None = None
    flagged: bool = False
    flag_reasons: list[str] = _json_list()
    transcript_version: int = 0
    analysis_version: int = 0
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None


class CallVersion(SQLModel, table=True):
    """One transcript or analysis of a call; reprocessing adds a version, never overwrites."""

    __tablename__ = "call_versions"
    __table_args__ = (UniqueConstraint("call_id", "kind", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    call_id: str = Field(foreign_key="calls.id", index=True)
    kind: str
    version: int
    provider: str
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class WebhookEvent(StrEnum):
    CALL_COMPLETED = "call.completed"
    CALL_FAILED = "call.failed"
    BATCH_COMPLETED = "batch.completed"


class ApiKey(SQLModel, table=True):
    """A campaign's API key, stored only as the sha256 of the key (keys are 256-bit random)."""

    __tablename__ = "api_keys"

    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.id", index=True)
    key_hash: str = Field(unique=True, index=True)
    prefix: str  # the first characters, to tell keys apart in listings
    created_at: datetime
    revoked_at: datetime | None = None


class Webhook(SQLModel, table=True):
    __tablename__ = "webhooks"

    id: str = Field(default_factory=lambda: new_id("whk"), primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.id", index=True)
    url: str
    secret: str  # the HMAC-SHA256 signing secret
    events: list[str] = _json_list()  # WebhookEvent values; empty means all
    active: bool = True
    created_at: datetime


class WebhookDelivery(SQLModel, table=True):
    """One event for one webhook: an outbox row, claimed and retried like a pipeline job."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_claim", "status", "next_attempt_at"),)

    id: str = Field(default_factory=lambda: new_id("dlv"), primary_key=True)
    webhook_id: str = Field(foreign_key="webhooks.id", index=True)
    event: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = DeliveryStatus.PENDING.value
    attempts: int = 0
    next_attempt_at: datetime | None = None
    claimed_by: str | None = None
    lease_until: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None


class BulkJob(SQLModel, table=True):
    """An ``ingestd upload`` run: many files pushed through the HTTP API as one job."""

    __tablename__ = "bulk_jobs"

    id: str = Field(default_factory=lambda: new_id("job"), primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.id", index=True)
    status: str = BulkJobStatus.QUEUED.value
    total_files: int = 0
    total_bytes: int = _big_int(0)
    done_files: int = 0
    failed_files: int = 0
    duplicate_files: int = 0
    done_bytes: int = _big_int(0)
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
