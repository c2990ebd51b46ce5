"""The JSON shapes of SPEC §6 (CLI ``--json``) — built once, for the CLI and the HTTP API alike.

``list`` views carry the same top-level fields as ``show`` views; nested lists are left out of
lists where noted.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from ingestd.clock import isoformat
from ingestd.models import (
    Batch,
    Call,
    CallVersion,
    Campaign,
    IngestFile,
    QualityCheck,
    SftpUser,
    VersionKind,
)


def campaign_view(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "slug": campaign.slug,
        "csv_mode": campaign.csv_mode,
        "batch_window": campaign.batch_window,
        "auto_process": campaign.auto_process,
        "archived": campaign.archived,
        "transcriber": campaign.transcriber,
        "analyzer": campaign.analyzer,
        "flag_threshold": campaign.flag_threshold,
        "created_at": isoformat(campaign.created_at),
    }


def sftp_user_view(user: SftpUser) -> dict[str, Any]:
    return {
        "username": user.username,
        "password": user.password_hash is not None,
        "public_keys": len(user.public_keys),
        "campaigns": list(user.campaigns),
        "created_at": isoformat(user.created_at),
    }


def check_view(check: QualityCheck) -> dict[str, Any]:
    return {
        "id": check.id,
        "name": check.name,
        "kind": check.kind,
        "phrases": list(check.phrases),
        "pattern": check.pattern,
        "question": check.question,
        "speaker": check.speaker,
        "within": check.within_seconds,
        "weight": check.weight,
        "critical": check.critical,
    }


def batch_view(session: Session, batch: Batch, *, with_files: bool = True) -> dict[str, Any]:
    campaign = session.get(Campaign, batch.campaign_id)
    view: dict[str, Any] = {
        "id": batch.id,
        "campaign": campaign.slug if campaign else None,
        "scope": batch.scope,
        "status": batch.status,
        "reason": batch.reason,
        "csv_file": batch.csv_file,
        "deadline": isoformat(batch.deadline),
        "created_at": isoformat(batch.created_at),
        "closed_at": isoformat(batch.closed_at),
        "missing": list(batch.missing),
    }
    if with_files:
        view["files"] = batch_file_views(session, batch.id)
    return view


def batch_file_views(session: Session, batch_id: str) -> list[dict[str, Any]]:
    """The batch's files with their calls' hash and status, in one query (a query per file's
    call made ``batch show`` of a 20,000-file batch take 5 s)."""
    query = (select(IngestFile, Call.sha256, Call.status)
             .outerjoin(Call, col(Call.id) == col(IngestFile.call_id))
             .where(IngestFile.batch_id == batch_id)
             .order_by(col(IngestFile.created_at), col(IngestFile.name)))
    return [file_view(row, call_sha256, call_status)
            for row, call_sha256, call_status in session.exec(query)]


def file_view(row: IngestFile, call_sha256: str | None, call_status: str | None
              ) -> dict[str, Any]:
    """A file of a batch; ``call_*``: its call's columns (None when it has no call)."""
    return {
        "name": row.name,
        "kind": row.kind,
        "status": row.status,
        "reason": row.reason,
        "warnings": list(row.warnings),
        "size": row.size,
        "sha256": row.sha256 or call_sha256,
        "call_id": row.call_id,
        "call_status": call_status,
    }


def call_view(session: Session, call: Call, *, with_details: bool = True) -> dict[str, Any]:
    campaign = session.get(Campaign, call.campaign_id)
    view: dict[str, Any] = {
        "id": call.id,
        "campaign": campaign.slug if campaign else None,
        "source": call.source,
        "status": call.status,
        "file_name": call.file_name,
        "metadata": dict(call.meta),
        "agent_code": call.agent_code,
        "duration": call.duration,
        "score": call.score,
        "flagged": call.flagged,
        "flag_reasons": list(call.flag_reasons),
        "stage": call.stage,
        "error": call.error,
        "duplicate_of": call.duplicate_of,
        "created_at": isoformat(call.created_at),
        "completed_at": isoformat(call.completed_at),
    }
    if with_details:
        versions = _versions(session, call.id)
        transcript = _current(versions, VersionKind.TRANSCRIPT, call.transcript_version)
        analysis = _current(versions, VersionKind.ANALYSIS, call.analysis_version)
        view["transcript"] = transcript.data.get("utterances", []) if transcript else []
        view["checks"] = analysis.data.get("checks", []) if analysis else []
        view["versions"] = [_version_view(v) for v in versions]
    return view


def _versions(session: Session, call_id: str) -> list[CallVersion]:
    query = (select(CallVersion).where(CallVersion.call_id == call_id)
             .order_by(col(CallVersion.kind), col(CallVersion.version)))
    return list(session.exec(query).all())


def _current(versions: list[CallVersion], kind: VersionKind, number: int) -> CallVersion | None:
    for version in versions:
        if version.kind == kind.value and version.version == number:
            return version
    return None


def _version_view(version: CallVersion) -> dict[str, Any]:
    return {
        "kind": version.kind,
        "version": version.version,
        "provider": version.provider,
        "created_at": isoformat(version.created_at),
    }
