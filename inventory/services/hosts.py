"""Admin changes to hosts and GPUs. Each is one transaction with its audit event."""

from __future__ import annotations

from inventory.models import GPU, Host
from portal.services import create_object, delete_object, update_object


def create_host(data: dict, *, actor) -> Host:
    return create_object(Host(**data), actor=actor)


def update_host(host: Host, changes: dict, *, actor) -> Host:
    return update_object(host, changes, actor=actor)


def delete_host(host: Host, *, actor) -> None:
    """Remove a host and its GPU rows (refused while anything still uses them)."""
    delete_object(host, actor=actor)


def create_gpu(data: dict, *, actor) -> GPU:
    return create_object(GPU(**data), actor=actor)


def update_gpu(gpu: GPU, changes: dict, *, actor) -> GPU:
    return update_object(gpu, changes, actor=actor)


def delete_gpu(gpu: GPU, *, actor) -> None:
    delete_object(gpu, actor=actor)
