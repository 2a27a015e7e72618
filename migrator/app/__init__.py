"""The user's application: its profile, and how every command and worker gets it."""

from migrator.app.profile import (
    AppProfile,
    active_profile,
    find_app_pyproject,
    load_profile,
    use_profile,
)

__all__ = ["AppProfile", "active_profile", "find_app_pyproject", "load_profile", "use_profile"]
