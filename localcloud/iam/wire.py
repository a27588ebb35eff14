"""IAM on the wire: reading requests into :class:`~localcloud.iam.state.Iam` calls, writing the bodies.

One function per operation (``handler(iam, call, **path parameters) -> Reply``) and the routing table
:data:`ROUTES`, registered by ``app.py``.
"""

from __future__ import annotations

import json
from typing import Any

from localcloud.clock import fmt_micros
from localcloud.errors import iam_error
from localcloud.gateway import Call, Reply, Route
from localcloud.iam.state import Iam, ProjectFilters, ProjectRef, Token, User
from localcloud.seed import stable_hex

# ---- POST /v3/auth/tokens ---------------------------------------------------------------------------------


def create_token(iam: Iam, call: Call) -> Reply:
    """``POST /v3/auth/tokens`` with the password method: 201, the token in ``X-Subject-Token``."""
    try:
        body = json.loads(call.raw) if call.raw.strip() else None
    except ValueError:
        raise iam_error("IAM.0011") from None
    auth = body.get("auth") if isinstance(body, dict) else None
    if not isinstance(auth, dict):
        raise iam_error("IAM.0072", "'auth' is a required property.", 400)
    user = iam.authenticate(**_password_identity(auth))
    # The scope is read after the password is checked: a bad password answers first.
    token = iam.create_token(user, project=_scope(auth.get("scope")))
    payload = token_body(iam, token, nocatalog=bool(call.query.get("nocatalog")), base_url=call.base_url)
    return Reply(payload, 201, {"X-Subject-Token": token.value})


def _password_identity(auth: dict[str, Any]) -> dict[str, Any]:
    """``auth.identity`` as :meth:`Iam.authenticate` arguments."""
    identity = auth.get("identity")
    if not isinstance(identity, dict):
        raise iam_error("IAM.0072", "'identity' is a required property.", 400)
    methods = identity.get("methods")
    if methods != ["password"]:
        # The page: methods "Set this parameter to "password"". [inference] Anything else (another or
        # a second method) is IAM.0007.
        raise iam_error("IAM.0007", "Request parameter methods is invalid.", 400)
    user_body = (
        (identity.get("password") or {}).get("user") if isinstance(identity.get("password"), dict) else None
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
    if isinstance(domain_body.get("id"), str):
        domain = {"domain_id": domain_body["id"]}
    elif isinstance(domain_body.get("name"), str):
        domain = {"domain_name": domain_body["name"]}
    else:
        raise iam_error("IAM.0072", "'name' is a required property.", 400)
    return {"user_name": name, "password": password, **domain}


def _scope(scope: Any) -> ProjectRef | None:
    """``auth.scope``: a project, or None for a global (domain) token.

    [inference] A scope of another shape (not an object, neither ``project`` nor ``domain``, a
    ``project`` that is not an object) is 400 ``IAM.0007``; a ``project`` with neither ``id`` nor
    ``name`` is 400 ``IAM.0072``.
    """
    if scope is None or scope == {}:
        return None
    if not isinstance(scope, dict):
        raise iam_error("IAM.0007", "Request parameter scope is invalid.", 400)
    project = scope.get("project")
    if project is None:
        if isinstance(scope.get("domain"), dict):
            return None
        raise iam_error("IAM.0007", "Request parameter scope is invalid.", 400)
    if not isinstance(project, dict):
        raise iam_error("IAM.0007", "Request parameter scope.project is invalid.", 400)
    if isinstance(project.get("id"), str):
        return ProjectRef(id=project["id"])
    if isinstance(project.get("name"), str):
        return ProjectRef(name=project["name"])
    raise iam_error("IAM.0072", "'id' is a required property.", 400)


def token_body(iam: Iam, token: Token, *, nocatalog: bool, base_url: str) -> dict[str, Any]:
    user: User = iam.users[token.user_id]
    domain = iam.domains[token.domain_id]
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
        project = iam.projects[token.project_id]
        body["project"] = {
            "domain": {"id": domain.id, "name": domain.name},
            "id": project.id,
            "name": project.name,
        }
    else:
        body["domain"] = {"id": domain.id, "name": domain.name}
    if not nocatalog:
        body["catalog"] = catalog(iam, token, base_url)
    return {"token": body}


def catalog(iam: Iam, token: Token, base_url: str) -> list[dict[str, Any]]:
    """The service catalog; one port serves everything, told apart by the path prefix."""
    base = base_url.rstrip("/")
    region = iam.projects[token.project_id].name if token.project_id else "*"
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


# ---- HEAD /v3/auth/tokens ---------------------------------------------------------------------------------


def verify_token(iam: Iam, call: Call) -> Reply:
    """``HEAD /v3/auth/tokens``: 200 when ``X-Subject-Token`` is valid, no body."""
    iam.verify_token(call.headers.get("x-auth-token"), call.headers.get("x-subject-token"))
    return Reply(status=200)


# ---- GET /v3/projects -------------------------------------------------------------------------------------


def list_projects(iam: Iam, call: Call) -> Reply:
    """``GET /v3/projects``: the caller's domain's projects, with the page's filters and paging."""
    assert call.caller is not None
    query = call.query
    filters = ProjectFilters(
        name=query.get("name"),
        domain_id=query.get("domain_id"),
        parent_id=query.get("parent_id"),
        enabled=query.get("enabled", "true").lower() != "false",
    )
    try:
        page = int(query.get("page", "1"))
        per_page = int(query.get("per_page", "5000"))
    except ValueError:
        raise iam_error("IAM.0007", "Request parameter page is invalid.", 400) from None
    if page < 1 or not 1 <= per_page <= 5000:
        raise iam_error("IAM.0007", "Request parameter page is invalid.", 400)
    items = iam.list_projects(call.caller.domain_id, filters)
    window = items[(page - 1) * per_page : page * per_page]
    base = call.base_url.rstrip("/") + "/iam/v3"
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return Reply(
        {
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
    )


ROUTES: tuple[Route, ...] = (
    Route("iam", "POST", "/v3/auth/tokens", "iam.create_token", create_token, auth=False),
    Route("iam", "HEAD", "/v3/auth/tokens", "iam.verify_token", verify_token, auth=False),
    Route("iam", "GET", "/v3/auth/projects", "iam.list_projects", list_projects),
    Route("iam", "GET", "/v3/projects", "iam.list_projects", list_projects),
)
