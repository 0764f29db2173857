"""The two HMAC-SHA256 signatures of the audit trail: checkpoints (``AUDIT_CHECKPOINT_KEY``) and export
manifests (``PORTAL_AUDIT_EXPORT_KEY``). Both sign canonical JSON (sorted keys, no whitespace), so the
same content always gives the same signature and any changed field gives another."""

from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings

from audit.hashing import when

#: The fields a checkpoint's signature covers, in the anchor's JSON lines too.
CHECKPOINT_FIELDS = ("number", "seq", "events", "hash", "created_at", "prev_signature")


def _mac(key: str, data: dict) -> str:
    message = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def checkpoint_record(values) -> dict:
    """A checkpoint (model or dict) as the plain record that is signed and anchored."""
    get = values.get if isinstance(values, dict) else lambda name: getattr(values, name)
    record = {name: get(name) for name in CHECKPOINT_FIELDS}
    record["created_at"] = when(record["created_at"])
    return record


def sign_checkpoint(values) -> str:
    return _mac(settings.AUDIT_CHECKPOINT_KEY, checkpoint_record(values))


def checkpoint_signature_ok(values, signature: str) -> bool:
    return hmac.compare_digest(str(signature or ""), sign_checkpoint(values))


def export_key_id() -> str:
    """Names the export key without revealing it, so a verifier can tell "another key" from "tampered"."""
    return _mac(settings.PORTAL_AUDIT_EXPORT_KEY, {"purpose": "key-id"})[:16]


def sign_manifest(manifest: dict) -> dict:
    """The manifest with ``key_id`` and ``signature`` (over every other field, the body digest included)."""
    signed = {k: v for k, v in manifest.items() if k != "signature"}
    signed["key_id"] = export_key_id()
    signed["signature"] = _mac(settings.PORTAL_AUDIT_EXPORT_KEY, signed)
    return signed


def manifest_problem(manifest: dict, *, allow_unsigned: bool = False) -> str | None:
    """Why the manifest's signature cannot be trusted, or None when it is this deployment's and intact."""
    if "signature" not in manifest:
        if allow_unsigned:
            return None
        return (
            "the manifest is not signed (written before manifests were signed, or its signature was removed): "
            "its digest and row count prove nothing, since anyone can recompute them (--allow-unsigned to check "
            "the file against it anyway)"
        )
    if manifest.get("key_id") != export_key_id():
        return (
            f"the manifest was signed with another key (key id {manifest.get('key_id')}; this deployment's is "
            f"{export_key_id()}): verify it where PORTAL_AUDIT_EXPORT_KEY is the exporting deployment's"
        )
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    if not hmac.compare_digest(str(manifest["signature"]), _mac(settings.PORTAL_AUDIT_EXPORT_KEY, unsigned)):
        return "the manifest's signature does not match: the manifest (digest, rows or filter) was changed after export"
    return None
