"""Changes to the vGPU profile catalog made by hand (the seed command has its own path)."""

from core.writes import create_object, delete_object, update_object
from inventory.models import VGPUProfile


def create_profile(data: dict, *, actor) -> VGPUProfile:
    return create_object(VGPUProfile(**data), actor=actor)


def update_profile(profile: VGPUProfile, changes: dict, *, actor) -> VGPUProfile:
    return update_object(profile, changes, actor=actor)


def delete_profile(profile: VGPUProfile, *, actor) -> None:
    """Refused (409) while a GPU runs it or a template or quota names it."""
    delete_object(profile, actor=actor)
