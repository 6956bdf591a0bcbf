"""RBAC in one place: ``Policy.check(actor, action, resource)``.

Every permission decision in hearth goes through a ``Policy``; channels, the admin API and skills
never compare roles themselves. Roles grant actions; an action is a dotted name (``chat.send``,
``admin.users.write``); a grant ending in ``*`` covers every action under it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hearth.errors import PermissionDenied
from hearth.types import Actor

DEFAULT_GRANTS: Mapping[str, frozenset[str]] = {
    "admin": frozenset({"*"}),
    "user": frozenset({"chat.*", "conversation.own.*", "tool.*"}),
    "guest": frozenset({"chat.send", "conversation.own.read"}),
}

ROLES: tuple[str, ...] = tuple(DEFAULT_GRANTS)


class Policy:
    def __init__(self, grants: Mapping[str, Iterable[str]] | None = None) -> None:
        source = grants if grants is not None else DEFAULT_GRANTS
        self._grants = {role: frozenset(actions) for role, actions in source.items()}

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self._grants)

    def allows(self, actor: Actor, action: str) -> bool:
        for role in actor.roles:
            for grant in self._grants.get(role, ()):
                if grant == action or grant == "*":
                    return True
                if grant.endswith(".*") and action.startswith(grant[:-1]):
                    return True
        return False

    def check(self, actor: Actor, action: str, resource: str = "") -> None:
        """Raise ``PermissionDenied`` unless ``actor`` may do ``action`` (on ``resource``)."""
        if not self.allows(actor, action):
            target = f" on {resource}" if resource else ""
            raise PermissionDenied(f"{actor.name} may not {action}{target}")
