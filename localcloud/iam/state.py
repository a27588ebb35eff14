"""IAM state and rules: domains, users, projects, tokens, access keys. No HTTP here (see wire.py)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from localcloud.clock import Clock
from localcloud.errors import CloudError, iam_error
from localcloud.seed import Seed, stable_hex

AuthReason = Literal["missing", "invalid", "expired"]


class AuthFailure(Exception):
    """A token could not be used; each service turns this into its own 401 body."""

    def __init__(self, reason: AuthReason) -> None:
        super().__init__(reason)
        self.reason: AuthReason = reason


@dataclass
class Domain:
    id: str
    name: str


@dataclass
class Project:
    id: str
    name: str
    domain_id: str


@dataclass
class User:
    id: str
    name: str
    password: str
    domain_id: str
    enabled: bool = True


@dataclass
class AccessKey:
    ak: str
    sk: str
    user_id: str
    domain_id: str
    project_id: str | None
    security_token: str | None = None


@dataclass
class Token:
    value: str
    user_id: str
    domain_id: str
    project_id: str | None
    issued_at: datetime
    expires_at: datetime
    methods: list[str] = field(default_factory=lambda: ["password"])
    revoked: bool = False


@dataclass(frozen=True)
class ProjectRef:
    """A project named by id or, when ``id`` is None, by name (a token's scope)."""

    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ProjectFilters:
    """The filters of ``GET /v3/projects`` (None: not filtered)."""

    name: str | None = None
    domain_id: str | None = None
    parent_id: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Caller:
    """Who is calling, once authenticated (by token or by AK/SK)."""

    user_id: str
    domain_id: str
    project_id: str | None
    token: str | None = None
    access_key: str | None = None


def _new_token_value() -> str:
    # Opaque and long like the real PKI tokens ("MIIDkgYJ..."); the prefix only makes logs recognisable.
    return "MII" + secrets.token_urlsafe(192)


class Iam:
    """The identity service of the local cloud."""

    def __init__(self, seed: Seed, clock: Clock) -> None:
        self.clock = clock
        self.token_ttl = timedelta(seconds=seed.timing.token_ttl_seconds)
        self.domains: dict[str, Domain] = {}
        self.domains_by_name: dict[str, Domain] = {}
        self.users: dict[str, User] = {}
        self.projects: dict[str, Project] = {}
        self.access_keys: dict[str, AccessKey] = {}
        self.tokens: dict[str, Token] = {}
        for d in seed.domains:
            domain = Domain(d.domain_id, d.name)
            self.domains[domain.id] = domain
            self.domains_by_name[domain.name] = domain
            for u in d.users:
                user = User(
                    u.id or stable_hex("user", d.name, u.name), u.name, u.password, domain.id, u.enabled
                )
                self.users[user.id] = user
            for p in d.projects:
                self.projects[p.id] = Project(p.id, p.name, domain.id)
            for k in d.access_keys:
                owner = self._user_named(domain.id, k.user) if k.user else self._first_user(domain.id)
                project_id = self.resolve_project(k.project, domain.id) if k.project else None
                self.access_keys[k.ak] = AccessKey(
                    k.ak,
                    k.sk,
                    owner.id if owner else stable_hex("user", d.name, "-"),
                    domain.id,
                    project_id,
                    k.security_token,
                )

    # ---- lookups -------------------------------------------------------------------------------------

    def _user_named(self, domain_id: str, name: str) -> User | None:
        for user in self.users.values():
            if user.domain_id == domain_id and user.name == name:
                return user
        return None

    def _first_user(self, domain_id: str) -> User | None:
        return next((u for u in self.users.values() if u.domain_id == domain_id), None)

    def resolve_project(self, name_or_id: str, domain_id: str | None = None) -> str | None:
        """A project id from a project id or name (first match within ``domain_id`` if given)."""
        if name_or_id in self.projects:
            return name_or_id
        for project in self.projects.values():
            if project.name == name_or_id and (domain_id is None or project.domain_id == domain_id):
                return project.id
        return None

    # ---- tokens --------------------------------------------------------------------------------------

    def authenticate(
        self, *, user_name: str, password: str, domain_id: str | None = None, domain_name: str | None = None
    ) -> User:
        """The user behind a password, the first step of ``POST /v3/auth/tokens``.

        The domain is named by id or, when ``domain_id`` is None, by name.
        """
        if domain_id is not None:
            domain = self.domains.get(domain_id)
        else:
            domain = self.domains_by_name.get(domain_name or "")
        user = self._user_named(domain.id, user_name) if domain is not None else None
        # Unknown user or domain: the generic authentication failure, so names cannot be probed.
        if user is None:
            raise iam_error("IAM.0001")
        if not secrets.compare_digest(user.password.encode(), password.encode()):
            raise iam_error("IAM.0062")
        if not user.enabled:
            raise iam_error("IAM.0082", f"The user {user.name} is disabled.")
        return user

    def create_token(self, user: User, *, project: ProjectRef | None = None) -> Token:
        """``POST /v3/auth/tokens`` once the user is known: a project token, or a global one."""
        project_id = self._scope_project(project, user) if project is not None else None
        now = self.clock.now()
        token = Token(_new_token_value(), user.id, user.domain_id, project_id, now, now + self.token_ttl)
        self.tokens[token.value] = token
        return token

    def _scope_project(self, ref: ProjectRef, user: User) -> str:
        found: Project | None = None
        if ref.id is not None:
            found = self.projects.get(ref.id)
        else:
            pid = self.resolve_project(ref.name or "", user.domain_id)
            found = self.projects.get(pid) if pid else None
        if found is None or found.domain_id != user.domain_id:
            # [inference] Keystone answers 401 when the requested scope is not available to the user.
            raise iam_error("IAM.0001")
        return found.id

    def check_token(self, value: str | None) -> Token:
        """The token record behind ``value``, or :class:`AuthFailure`."""
        if not value:
            raise AuthFailure("missing")
        token = self.tokens.get(value)
        if token is None or token.revoked:
            raise AuthFailure("invalid")
        if self.clock.now() >= token.expires_at:
            raise AuthFailure("expired")
        return token

    def caller_for_token(self, value: str | None) -> Caller:
        token = self.check_token(value)
        return Caller(token.user_id, token.domain_id, token.project_id, token=token.value)

    def revoke(self, value: str) -> bool:
        token = self.tokens.get(value)
        if token is None:
            return False
        token.revoked = True
        return True

    def verify_token(self, auth_token: str | None, subject: str | None) -> None:
        """``HEAD /v3/auth/tokens``: 200 when ``subject`` is valid, else an error."""
        try:
            self.check_token(auth_token)
        except AuthFailure as exc:
            raise self.auth_error(exc.reason) from None
        if not subject:
            raise iam_error("IAM.0009")
        try:
            self.check_token(subject)
        except AuthFailure:
            # [inference] The page lists 404 "resource cannot be found" for a token that is not valid.
            raise CloudError(404, None) from None

    @staticmethod
    def auth_error(reason: AuthReason) -> CloudError:
        return iam_error({"missing": "IAM.0001", "invalid": "IAM.0067", "expired": "IAM.0066"}[reason])

    # ---- projects ------------------------------------------------------------------------------------

    def list_projects(self, domain_id: str, filters: ProjectFilters) -> list[Project]:
        """``GET /v3/projects`` within the caller's domain, filtered as the page says (the wire pages)."""
        items = [p for p in self.projects.values() if p.domain_id == domain_id]
        if filters.name is not None:
            items = [p for p in items if p.name == filters.name]
        if filters.domain_id is not None:
            items = [p for p in items if p.domain_id == filters.domain_id]
        if filters.parent_id is not None:
            items = [p for p in items if p.domain_id == filters.parent_id]
        if not filters.enabled:
            items = []  # every local project is enabled
        return items
