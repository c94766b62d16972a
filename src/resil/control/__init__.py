"""Control planes: where control state is stored and watched.

Every backend offers the same three operations (:class:`~resil.control.base.ControlPlane`):
``load()`` the current signal, ``watch()`` for new ones, ``publish()`` a new state. Pick
one by URL with :func:`open_control_plane`.
"""

from .base import ControlPlane, Watch, open_control_plane

__all__ = ["ControlPlane", "Watch", "open_control_plane"]
