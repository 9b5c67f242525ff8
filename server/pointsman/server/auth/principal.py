"""Who a credential speaks for, and how the roles rank."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.ports.stores import UserRole

# Each role includes the ones below it.
ROLE_RANK: dict[UserRole, int] = {UserRole.VIEWER: 1, UserRole.DEVELOPER: 2, UserRole.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    organisation: str
    role: UserRole
    email: str = ""
    # How the caller proved it: "jwt", "api_key" or "dev" (no credential, dev mode).
    via: str = "jwt"

    @property
    def name(self) -> str:
        return f"users/{self.user_id}"

    def has_role(self, required: UserRole) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[required]
