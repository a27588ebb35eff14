"""IAM state and rules: domains, users, projects, tokens, access keys. No HTTP here."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from localcloud.clock import Clock, fmt_micros
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

    def issue_token(self, body: Any, *, nocatalog: bool, base_url: str) -> tuple[str, dict[str, Any]]:
        """``POST /v3/auth/tokens`` with the password method. Returns (token, response body)."""
        auth = body.get("auth") if isinstance(body, dict) else None
        if not isinstance(auth, dict):
            raise iam_error("IAM.0072", "'auth' is a required property.", 400)
        identity = auth.get("identity")
        if not isinstance(identity, dict):
            raise iam_error("IAM.0072", "'identity' is a required property.", 400)
        methods = identity.get("methods")
        if methods != ["password"]:
            # The page: methods "Set this parameter to "password"". [inference] Anything else (another or
            # a second method) is IAM.0007.
            raise iam_error("IAM.0007", "Request parameter methods is invalid.", 400)
        user_body = (
            (identity.get("password") or {}).get("user")
            if isinstance(identity.get("password"), dict)
            else None
        )
        if not isinstance(user_body, dict):
            raise iam_error("IAM.0072", "'user' is a required property.", 400)
        name, password, domain_body = (
            user_body.get("name"),
            user_body.get("password"),
            user_body.get("domain"),
        )
        # The page's table auth.identity.password.user: name, password and domain are mandatory (no user
        # id). domain: the table shows "name"; the ECS dev guide's example (request_example.rst) sends "id".
        for field_name, value in (("name", name), ("password", password)):
            if not isinstance(value, str) or not value:
                raise iam_error("IAM.0072", f"'{field_name}' is a required property.", 400)
        if not isinstance(domain_body, dict):
            raise iam_error("IAM.0072", "'domain' is a required property.", 400)
        assert isinstance(name, str)
        assert isinstance(password, str)
        domain = None
        if isinstance(domain_body.get("id"), str):
            domain = self.domains.get(domain_body["id"])
        elif isinstance(domain_body.get("name"), str):
            domain = self.domains_by_name.get(domain_body["name"])
        else:
            raise iam_error("IAM.0072", "'name' is a required property.", 400)
        user = self._user_named(domain.id, name) if domain is not None else None
        # Unknown user or domain: the generic authentication failure, so names cannot be probed.
        if user is None:
            raise iam_error("IAM.0001")
        if not secrets.compare_digest(user.password.encode(), password.encode()):
            raise iam_error("IAM.0062")
        if not user.enabled:
            raise iam_error("IAM.0082", f"The user {user.name} is disabled.")

        project_id = self._scope_project(auth.get("scope"), user)
        now = self.clock.now()
        token = Token(_new_token_value(), user.id, user.domain_id, project_id, now, now + self.token_ttl)
        self.tokens[token.value] = token
        return token.value, self.token_body(token, nocatalog=nocatalog, base_url=base_url)

    def _scope_project(self, scope: Any, user: User) -> str | None:
        if scope is None or scope == {}:
            return None  # a global (domain) token
        if not isinstance(scope, dict):
            raise iam_error("IAM.0007", "Request parameter scope is invalid.", 400)
        project = scope.get("project")
        if project is None:
            if isinstance(scope.get("domain"), dict):
                return None
            raise iam_error("IAM.0007", "Request parameter scope is invalid.", 400)
        if not isinstance(project, dict):
            raise iam_error("IAM.0007", "Request parameter scope.project is invalid.", 400)
        found: Project | None = None
        if isinstance(project.get("id"), str):
            found = self.projects.get(project["id"])
        elif isinstance(project.get("name"), str):
            pid = self.resolve_project(project["name"], user.domain_id)
            found = self.projects.get(pid) if pid else None
        else:
            raise iam_error("IAM.0072", "'id' is a required property.", 400)
        if found is None or found.domain_id != user.domain_id:
            # [inference] Keystone answers 401 when the requested scope is not available to the user.
            raise iam_error("IAM.0001")
        return found.id

    def token_body(self, token: Token, *, nocatalog: bool, base_url: str) -> dict[str, Any]:
        user = self.users[token.user_id]
        domain = self.domains[token.domain_id]
        body: dict[str, Any] = {
            "methods": list(token.methods),
            "expires_at": fmt_micros(token.expires_at),
            "issued_at": fmt_micros(token.issued_at),
            "user": {
                "domain": {"id": domain.id, "name": domain.name},
                "id": user.id,
                "name": user.name,
                "password_expires_at": "",
            },
            "roles": [{"name": "te_admin", "id": stable_hex("role", "te_admin")}],
        }
        if token.project_id:
            project = self.projects[token.project_id]
            body["project"] = {
                "domain": {"id": domain.id, "name": domain.name},
                "id": project.id,
                "name": project.name,
            }
        else:
            body["domain"] = {"id": domain.id, "name": domain.name}
        if not nocatalog:
            body["catalog"] = self.catalog(token, base_url)
        return {"token": body}

    def catalog(self, token: Token, base_url: str) -> list[dict[str, Any]]:
        """The service catalog; one port serves everything, told apart by the path prefix."""
        base = base_url.rstrip("/")
        region = self.projects[token.project_id].name if token.project_id else "*"
        tenant = token.project_id or "$(tenant_id)s"

        def entry(kind: str, name: str, url: str) -> dict[str, Any]:
            return {
                "type": kind,
                "id": stable_hex("service", name),
                "name": name,
                "endpoints": [
                    {
                        "id": stable_hex("endpoint", name, region),
                        "interface": "public",
                        "region": region,
                        "region_id": region,
                        "url": url,
                    }
                ],
            }

        return [
            entry("identity", "iam", f"{base}/iam/v3"),
            entry("image", "ims", f"{base}/ims"),
            entry("ecs", "ecs", f"{base}/ecs/v1/{tenant}"),
        ]

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

    def verify_subject(self, auth_token: str | None, subject: str | None) -> None:
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

    def list_projects(self, caller: Caller, query: dict[str, str], base_url: str) -> dict[str, Any]:
        """``GET /v3/projects`` within the caller's domain, filtered as the page describes."""
        base = base_url.rstrip("/") + "/iam/v3"
        items = [p for p in self.projects.values() if p.domain_id == caller.domain_id]
        if "name" in query:
            items = [p for p in items if p.name == query["name"]]
        if "domain_id" in query:
            items = [p for p in items if p.domain_id == query["domain_id"]]
        if "parent_id" in query:
            items = [p for p in items if p.domain_id == query["parent_id"]]
        if "enabled" in query and query["enabled"].lower() == "false":
            items = []
        try:
            page = int(query.get("page", "1"))
            per_page = int(query.get("per_page", "5000"))
        except ValueError:
            raise iam_error("IAM.0007", "Request parameter page is invalid.", 400) from None
        if page < 1 or not 1 <= per_page <= 5000:
            raise iam_error("IAM.0007", "Request parameter page is invalid.", 400)
        window = items[(page - 1) * per_page : page * per_page]
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return {
            "links": {
                "self": f"{base}/projects" + (f"?{qs}" if qs else ""),
                "previous": None,
                "next": None,
            },
            "projects": [
                {
                    "is_domain": False,
                    "description": "",
                    "links": {"self": f"{base}/projects/{p.id}"},
                    "enabled": True,
                    "id": p.id,
                    "parent_id": p.domain_id,
                    "domain_id": p.domain_id,
                    "name": p.name,
                }
                for p in window
            ],
        }
