"""The async cloud client: ``CloudClient`` with ``.iam``, ``.ecs`` and ``.ims`` service APIs.

The transport is injected (``httpx.ASGITransport(app)``, ``httpx.MockTransport`` in tests). This is the
only module that catches httpx exceptions: transport failures become ``TransportError``, error answers
become the ``ApiError`` subclasses of ``imsflow.errors``. There are no retries here; the Prefect tasks
own the retry policy, and two stacked retry layers would multiply.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from imsflow import __version__
from imsflow.auth import AkSkAuth, TokenAuth, token_request_body
from imsflow.errors import (
    ApiError,
    ConfigError,
    ImageNotFoundError,
    JobNotFoundError,
    TlsVerificationError,
    TransportError,
    UnexpectedResponseError,
    is_gateway_not_found,
    parse_error_response,
    request_id_of,
)
from imsflow.models import (
    CopyImageRequest,
    CreateDataImagesRequest,
    CreateImageFromEcsRequest,
    CreateWholeImageRequest,
    DeleteImageRequest,
    EcsJob,
    ExportImageRequest,
    IamToken,
    Image,
    ImageList,
    ImageListQuery,
    ImageMembers,
    ImageMembersRequest,
    ImageTagsRequest,
    ImsJob,
    JobIdResponse,
    Project,
    ProjectList,
    Quota,
    QuotaResponse,
    Server,
    ServerActionRequest,
    ServerDetail,
    ServerPage,
    TokenRequest,
    TokenResponse,
    UpdateImageMembersRequest,
)
from imsflow.settings import LOCAL_ENDPOINT, ImsflowSettings, Service

__all__ = ["USER_AGENT", "CloudClient", "EcsApi", "IamApi", "ImsApi", "login", "parse_model", "ssl_context"]

logger = logging.getLogger("imsflow.client")

USER_AGENT = f"imsflow/{__version__}"
M = TypeVar("M", bound=BaseModel)
Refresh = Callable[[], Awaitable[IamToken]]
_NO_AUTH: None = None  # httpx: ``auth=None`` on a request means "no auth", not "client default"


#: The documented answers to a job query for a job the service does not know: IMS ``IMG.0023`` ("An
#: exception occurred during task query.", HTTP 400, the job page's only query error) and ECS ``Common.0011``
#: ("Failed to query system tasks."). Either one, from either service, is :class:`JobNotFoundError`: ECS and
#: IMS share the job path, so behind one base URL the other service may be the one that answers.
JOB_QUERY_ERRORS = frozenset({"IMG.0023", "Common.0011"})


def _job_query(exc: ApiError) -> ApiError:
    """A job query's error: the documented job-query codes become ``JobNotFoundError`` (never retried)."""
    if exc.code in JOB_QUERY_ERRORS and not isinstance(exc, JobNotFoundError):
        return exc.as_(JobNotFoundError)
    return exc


def _image_query(exc: ApiError) -> ApiError:
    """An error of a request about one image: HTTP 404 is "no such image" whatever the body.

    The Glance-native image pages (show, delete) document 404 without a body; some gateways send an HTML
    page or a code of their own. IMS's own codes for a missing image (``IMG.0144`` ...) map already.
    """
    if exc.status == 404 and not isinstance(exc, ImageNotFoundError) and not is_gateway_not_found(exc):
        # Not a gateway 404 (a wrong endpoint must never read as "the image is already gone").
        return exc.as_(ImageNotFoundError)
    return exc


def _segment(value: str) -> str:
    # Ids go into the path; quoting keeps a stray "/" or "?" from changing which resource is addressed.
    return quote(value, safe="")


def ssl_context(verify: bool) -> ssl.SSLContext:
    """The TLS context for ``verify``, built once per process (and per ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``).

    Loading the CA bundle costs about 20 ms of CPU, and every task builds a client: a fleet run paid it
    hundreds of times. It is the context httpx builds itself (``trust_env``: ``SSL_CERT_FILE``, else
    ``SSL_CERT_DIR``, else certifi), and an ``SSLContext`` is made to be shared by connections and threads.
    """
    return _ssl_context(verify, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _ssl_context(verify: bool, cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    # cert_file and cert_dir only key the cache (a changed CA variable gets a new context): httpx reads them.
    del cert_file, cert_dir
    return httpx.create_ssl_context(verify=verify)


def _untrusted_certificate(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure under an httpx error (httpx wraps httpcore's error, which wraps ssl's)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


class _NoTokenAuth(httpx.Auth):
    """Stands in for a token that was never obtained."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise ConfigError(
            f"no token for {request.method} {request.url.path}: password login must come first",
            hint="Call imsflow.client.login(settings) (or iam.create_token) and pass the token.",
        )
        yield request  # pragma: no cover - makes this a generator, as httpx expects


class CloudClient:
    """Async client for IAM, ECS and IMS; use as ``async with CloudClient(settings, auth=...) as c:``."""

    def __init__(
        self,
        settings: ImsflowSettings,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        project_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self._http = httpx.AsyncClient(
            auth=auth,
            transport=transport,
            verify=ssl_context(settings.verify_tls),
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
        )
        self._project_id = project_id or settings.project_id
        if self._project_id is None and isinstance(auth, TokenAuth):
            self._project_id = auth.token.project_id
        if isinstance(auth, AkSkAuth) and self._project_id and auth.project_id is None:
            auth.project_id = self._project_id
        self.iam = IamApi(self)
        self.ecs = EcsApi(self)
        self.ims = ImsApi(self)

    @classmethod
    def from_settings(
        cls,
        settings: ImsflowSettings,
        token: IamToken | None = None,
        refresh: Refresh | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> CloudClient:
        """A client with AK/SK signing when the settings hold an AK/SK pair, else token auth."""
        auth: httpx.Auth
        # Same test as settings.auth_mode == "aksk", spelled out so the types narrow.
        if settings.access_key and settings.secret_key:
            auth = AkSkAuth(
                settings.access_key,
                settings.secret_key,
                project_id=settings.project_id,
                security_token=settings.security_token,
            )
        elif token is not None:
            auth = TokenAuth(token, refresh=refresh)
        else:
            # Enough for iam.create_token (which sends no auth); anything else fails clearly.
            auth = _NoTokenAuth()
        return cls(settings, auth=auth, transport=transport)

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"CloudClient(profile={self.settings.profile.value!r}, region={self.settings.region!r})"

    # ------------------------------------------------------------------------------------ project

    @property
    def project_id(self) -> str | None:
        return self._project_id

    @project_id.setter
    def project_id(self, value: str | None) -> None:
        self._project_id = value
        if isinstance(self.auth, AkSkAuth):
            self.auth.project_id = value

    async def resolve_project_id(self) -> str:
        """The project id: set explicitly, from the settings, from the token, else IAM by region name."""
        if self._project_id:
            return self._project_id
        projects = await self.iam.list_projects(name=self.settings.region)
        matches = [p for p in projects if p.name == self.settings.region]
        if not matches:
            raise ConfigError(
                f"no IAM project named {self.settings.region!r} is visible to this account",
                hint="Set IMSFLOW_PROJECT_ID, or IMSFLOW_REGION to a region the account can use.",
            )
        self.project_id = matches[0].id
        return matches[0].id

    async def _project_path(self) -> str:
        return f"/v1/{_segment(await self.resolve_project_id())}"

    async def _ensure_signing_project(self) -> None:
        # IMS URIs without a project id take the project from X-Project-Id when signing with AK/SK.
        if isinstance(self.auth, AkSkAuth) and not self.auth.project_id:
            await self.resolve_project_id()

    # ------------------------------------------------------------------------------------ transport

    async def request(
        self,
        method: str,
        service: Service,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        no_auth: bool = False,
    ) -> httpx.Response:
        """Send one request; return a 2xx response or raise the matching ``ImsflowError``."""
        url = f"{self.settings.endpoint(service)}{path}"
        extra: dict[str, Any] = {"auth": _NO_AUTH} if no_auth else {}
        try:
            response = await self._http.request(method, url, params=params, json=json_body, **extra)
        except httpx.TimeoutException as exc:
            raise TransportError(f"{method} timed out ({type(exc).__name__})", url=url) from exc
        except httpx.RequestError as exc:
            untrusted = _untrusted_certificate(exc)
            if untrusted is not None:
                reason = untrusted.verify_message or str(untrusted)
                raise TlsVerificationError(
                    f"{method} failed: certificate not trusted: {reason}", url=url
                ) from exc
            hint = None
            if isinstance(exc, httpx.ConnectError) and url.startswith(LOCAL_ENDPOINT):
                # The local profile's default endpoint: nothing answers unless the local cloud was started.
                hint = (
                    f"Nothing answers at {LOCAL_ENDPOINT}: start the local cloud with `imsflow cloud --seed "
                    "localcloud/demo_seed.yaml` (or set IMSFLOW_PROFILE and credentials for a real cloud)."
                )
            raise TransportError(f"{method} failed: {type(exc).__name__}: {exc}", url=url, hint=hint) from exc
        except httpx.InvalidURL as exc:
            raise ConfigError(f"invalid URL {url!r}: {exc}") from exc
        # Bodies are never logged: IAM answers carry tokens, and bodies can be large.
        logger.debug("%s %s -> %s", method, response.request.url, response.status_code)
        if not response.is_success:
            raise parse_error_response(response)
        if _is_error_body(response):
            # ECS answers flow control with HTTP 202 and an error body (Common.0024).
            raise parse_error_response(response)
        return response

    async def request_model(
        self,
        model: type[M],
        method: str,
        service: Service,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> M:
        response = await self.request(method, service, path, params=params, json_body=json_body)
        return parse_model(model, response)


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def _is_error_body(response: httpx.Response) -> bool:
    content_type = response.headers.get("Content-Type", "")
    if not response.content or "json" not in content_type:
        return False
    body = _json(response)
    if not isinstance(body, dict):
        return False
    # Job bodies carry "error_code": null on success; only an error object or a gateway body counts.
    return isinstance(body.get("error"), dict) or ("error_msg" in body and bool(body.get("error_code")))


def parse_model(model: type[M], response: httpx.Response) -> M:
    """Validate a success body; a body that does not fit raises ``UnexpectedResponseError``."""
    body = _json(response)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        raise UnexpectedResponseError(
            status=response.status_code,
            code=None,
            message=f"unexpected {model.__name__} body: {where}: {problem['msg']}",
            url=str(response.request.url),
            request_id=request_id_of(response),
        ) from None


class IamApi:
    """Identity: tokens and projects."""

    def __init__(self, client: CloudClient) -> None:
        self._c = client

    async def create_token(
        self,
        *,
        domain: str,
        username: str,
        password: SecretStr,
        project_id: str | None = None,
        project_name: str | None = None,
    ) -> IamToken:
        """``POST /v3/auth/tokens`` (password method); the token comes in ``X-Subject-Token``."""
        request = TokenRequest.password(
            domain=domain,
            username=username,
            password=password,
            project_id=project_id,
            project_name=project_name,
        )
        response = await self._c.request(
            "POST",
            "iam",
            "/v3/auth/tokens",
            params={"nocatalog": "true"},
            json_body=token_request_body(request),
            no_auth=True,
        )
        subject_token = response.headers.get("X-Subject-Token")
        if not subject_token:
            raise UnexpectedResponseError(
                status=response.status_code,
                code=None,
                message="IAM answered without an X-Subject-Token header",
                url=str(response.request.url),
                request_id=request_id_of(response),
            )
        return IamToken.from_response(subject_token, parse_model(TokenResponse, response))

    async def list_projects(self, name: str | None = None) -> list[Project]:
        """``GET /v3/projects`` (optionally filtered by exact name, e.g. the region)."""
        params = {"name": name} if name else None
        page = await self._c.request_model(ProjectList, "GET", "iam", "/v3/projects", params=params)
        return page.projects


class EcsApi:
    """Elastic Cloud Server: servers, batch stop/start, ECS jobs."""

    def __init__(self, client: CloudClient) -> None:
        self._c = client

    async def get_server(self, server_id: str) -> Server:
        """``GET /v1/{project_id}/cloudservers/{server_id}``."""
        path = f"{await self._c._project_path()}/cloudservers/{_segment(server_id)}"
        return (await self._c.request_model(ServerDetail, "GET", "ecs", path)).server

    async def list_servers(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        tags: str | None = None,
        not_tags: str | None = None,
        limit: int = 25,
        offset: int = 1,
    ) -> ServerPage:
        """One page of ``GET /v1/{project_id}/cloudservers/detail``; ``offset`` is a page number from 1."""
        params = {"limit": str(limit), "offset": str(offset)}
        for key, value in (("name", name), ("status", status), ("tags", tags), ("not-tags", not_tags)):
            if value is not None:
                params[key] = value
        path = f"{await self._c._project_path()}/cloudservers/detail"
        return await self._c.request_model(ServerPage, "GET", "ecs", path, params=params)

    async def iter_servers(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        tags: str | Sequence[str] | None = None,
        not_tags: str | None = None,
        limit: int = 100,
    ) -> AsyncIterator[Server]:
        """Every matching server, page by page.

        ``tags``: one ``key=value`` tag, or several that a server must *all* carry. The list API documents
        one value for ``tags``, so the first tag is the query and the others are checked here, on each
        server's ``tags``. ``name`` is a substring of the server name (checked here too: the API's fuzzy
        match reads ``.`` as any character).
        """
        wanted = [tags] if isinstance(tags, str) else list(tags or [])
        offset, seen = 1, 0
        while True:
            page = await self.list_servers(
                name=name,
                status=status,
                tags=wanted[0] if wanted else None,
                not_tags=not_tags,
                limit=limit,
                offset=offset,
            )
            for server in page.servers:
                if all(tag in server.tags for tag in wanted) and (name is None or name in server.name):
                    yield server
            seen += len(page.servers)
            if not page.servers or len(page.servers) < limit or seen >= page.count:
                return
            offset += 1

    async def _action(self, body: ServerActionRequest) -> str:
        path = f"{await self._c._project_path()}/cloudservers/action"
        response = await self._c.request_model(JobIdResponse, "POST", "ecs", path, json_body=body.to_body())
        return response.job_id

    async def stop_servers(self, ids: Sequence[str], type: Literal["SOFT", "HARD"] = "SOFT") -> str:
        """Batch stop (``os-stop``); returns the ECS job id."""
        return await self._action(ServerActionRequest.stop(list(ids), type=type))

    async def start_servers(self, ids: Sequence[str]) -> str:
        """Batch start (``os-start``); returns the ECS job id."""
        return await self._action(ServerActionRequest.start(list(ids)))

    async def get_job(self, job_id: str) -> EcsJob:
        """``GET /v1/{project_id}/jobs/{job_id}`` on the ECS endpoint.

        An unknown job (``Common.0011``, or IMS's ``IMG.0023`` behind a shared base URL) raises
        ``JobNotFoundError``.
        """
        path = f"{await self._c._project_path()}/jobs/{_segment(job_id)}"
        try:
            response = await self._c.request("GET", "ecs", path)
        except ApiError as exc:
            raise _job_query(exc) from None
        body = _json(response)
        if isinstance(body, dict) and isinstance(body.get("code"), str) and "status" not in body:
            # The job query itself failed (e.g. Common.0011 for an unknown job id), answered with HTTP 200.
            raise _job_query(parse_error_response(response))
        job = parse_model(EcsJob, response)
        job._request_id = request_id_of(response)
        return job


class ImsApi:
    """Image Management Service: create, jobs, list, details, delete, export, sharing, quota."""

    def __init__(self, client: CloudClient) -> None:
        self._c = client

    async def create_image_from_ecs(self, req: CreateImageFromEcsRequest | CreateDataImagesRequest) -> str:
        """``POST /v2/cloudimages/action``: a system-disk image of an ECS, or data-disk images of data disks
        (never both in one request: the page forbids ``instance_id`` with ``data_images``); the IMS job id."""
        await self._c._ensure_signing_project()
        response = await self._c.request_model(
            JobIdResponse, "POST", "ims", "/v2/cloudimages/action", json_body=req.to_body()
        )
        return response.job_id

    async def create_whole_image(self, req: CreateWholeImageRequest) -> str:
        """``POST /v1/cloudimages/wholeimages/action``: a full-ECS image (an ECS's system disk and every data
        disk as one image; from the ECS, or from a CSBS/CBR backup); the IMS job id
        (``imsCreateWholeImageByInstanceJob`` / ``imsCreateWholeImageByBackupJob``, followed as any image
        job: its ``entities.image_id`` is the image)."""
        await self._c._ensure_signing_project()
        path = "/v1/cloudimages/wholeimages/action"
        response = await self._c.request_model(JobIdResponse, "POST", "ims", path, json_body=req.to_body())
        return response.job_id

    async def get_job(self, job_id: str) -> ImsJob:
        """An IMS job by the path the settings name (``ims_job_api``, by default per profile).

        ``project-jobs``: ``GET /v1/{project_id}/jobs/{job_id}`` (the OTC page; deprecated on Huawei Cloud).
        ``cloudimages-job``: ``GET /v1/cloudimages/job/{job_id}`` (Huawei Cloud's ShowJobProgress, same
        fields).
        An unknown job (``IMG.0023``, or ECS's ``Common.0011`` behind a shared base URL) raises
        ``JobNotFoundError``, whichever path and endpoint layout.
        """
        if self._c.settings.effective_ims_job_api == "cloudimages-job":
            await self._c._ensure_signing_project()
            path = f"/v1/cloudimages/job/{_segment(job_id)}"
        else:
            path = f"{await self._c._project_path()}/jobs/{_segment(job_id)}"
        try:
            response = await self._c.request("GET", "ims", path)
        except ApiError as exc:
            raise _job_query(exc) from None
        job = parse_model(ImsJob, response)
        job._request_id = request_id_of(response)
        return job

    async def list_images(self, query: ImageListQuery | None = None) -> list[Image]:
        """``GET /v2/cloudimages`` with the filters of ``query``."""
        await self._c._ensure_signing_project()
        params = query.to_params() if query is not None else None
        page = await self._c.request_model(ImageList, "GET", "ims", "/v2/cloudimages", params=params)
        return page.images

    async def iter_images(self, query: ImageListQuery | None = None) -> AsyncIterator[Image]:
        """Every matching image, following ``marker`` paging (page size ``query.limit``, default 500)."""
        base = query or ImageListQuery()
        limit = base.limit or 500
        marker = base.marker
        while True:
            page = await self.list_images(base.model_copy(update={"marker": marker, "limit": limit}))
            for image in page:
                yield image
            if len(page) < limit or page[-1].id == marker:
                return
            marker = page[-1].id

    async def get_image(self, image_id: str) -> Image:
        """``GET /v2/images/{image_id}``; no such image (HTTP 404, any body) raises ``ImageNotFoundError``."""
        await self._c._ensure_signing_project()
        try:
            return await self._c.request_model(Image, "GET", "ims", f"/v2/images/{_segment(image_id)}")
        except ApiError as exc:
            raise _image_query(exc) from None

    async def delete_image(self, image_id: str, *, delete_backup: bool | None = None) -> None:
        """``DELETE /v2/images/{image_id}`` (204); no such image (HTTP 404, any body) raises
        ``ImageNotFoundError``."""
        await self._c._ensure_signing_project()
        body = DeleteImageRequest(delete_backup=delete_backup).to_body() or None
        try:
            await self._c.request("DELETE", "ims", f"/v2/images/{_segment(image_id)}", json_body=body)
        except ApiError as exc:
            raise _image_query(exc) from None

    async def export_image(self, image_id: str, req: ExportImageRequest) -> str:
        """``POST /v1/cloudimages/{image_id}/file``; returns the IMS job id."""
        await self._c._ensure_signing_project()
        path = f"/v1/cloudimages/{_segment(image_id)}/file"
        response = await self._c.request_model(JobIdResponse, "POST", "ims", path, json_body=req.to_body())
        return response.job_id

    # ---- sharing (ims_apis/image_sharing/*.rst): every call answers a job id -----------------------------

    async def _members(self, method: str, body: dict[str, Any]) -> str:
        await self._c._ensure_signing_project()
        path = "/v1/cloudimages/members"
        return (await self._c.request_model(JobIdResponse, method, "ims", path, json_body=body)).job_id

    async def add_image_members(self, req: ImageMembersRequest) -> str:
        """``POST /v1/cloudimages/members``: share ``req.images`` with ``req.projects``; the IMS job id
        (an ``imsAddImageMembersJob``; the projects are ``pending`` members once it succeeded)."""
        return await self._members("POST", req.to_body())

    async def remove_image_members(self, req: ImageMembersRequest) -> str:
        """``DELETE /v1/cloudimages/members``: stop sharing; the IMS job id (``imsDelImageMembersJob``)."""
        return await self._members("DELETE", req.to_body())

    async def update_image_members(self, req: UpdateImageMembersRequest) -> str:
        """``PUT /v1/cloudimages/members``, sent by the receiving project: accept or reject shared images;
        the IMS job id (``imsUpdateImageMembersJob``)."""
        return await self._members("PUT", req.to_body())

    async def list_image_members(self, image_id: str) -> ImageMembers:
        """``GET /v2/images/{image_id}/members`` (Glance-native); no such image: ``ImageNotFoundError``."""
        await self._c._ensure_signing_project()
        path = f"/v2/images/{_segment(image_id)}/members"
        try:
            return await self._c.request_model(ImageMembers, "GET", "ims", path)
        except ApiError as exc:
            raise _image_query(exc) from None

    async def get_quota(self) -> Quota:
        """``GET /v1/cloudimages/quota``."""
        await self._c._ensure_signing_project()
        return (await self._c.request_model(QuotaResponse, "GET", "ims", "/v1/cloudimages/quota")).quotas

    # ---- replication within a region, image tags -----------------------------------------------------------

    async def copy_image(self, image_id: str, req: CopyImageRequest) -> str:
        """``POST /v1/cloudimages/{image_id}/copy`` (replicating_an_image_within_a_region.rst): a new image
        copied from ``image_id`` (encrypted with ``req.cmk_id``, in ``req.enterprise_project_id``); the IMS
        job id (an ``imsCopyImageInRegionJob``: ``entities.image_id`` names the copy). It takes no tags.

        No such image: ``ImageNotFoundError``; a full-ECS or ISO image, or a shared image not accepted or
        encrypted: ``ImageNotReplicableError``.
        """
        await self._c._ensure_signing_project()
        path = f"/v1/cloudimages/{_segment(image_id)}/copy"
        try:
            response = await self._c.request_model(
                JobIdResponse, "POST", "ims", path, json_body=req.to_body()
            )
        except ApiError as exc:
            raise _image_query(exc) from None
        return response.job_id

    async def update_image_tags(self, image_id: str, req: ImageTagsRequest) -> None:
        """``POST /v2/{project_id}/images/{image_id}/tags/action`` (204): add or overwrite (``create``) or
        remove (``delete``) tags by key. Idempotent (the page), so a retry is safe."""
        project = _segment(await self._c.resolve_project_id())
        path = f"/v2/{project}/images/{_segment(image_id)}/tags/action"
        try:
            await self._c.request("POST", "ims", path, json_body=req.to_body())
        except ApiError as exc:
            raise _image_query(exc) from None


async def login(settings: ImsflowSettings, transport: httpx.AsyncBaseTransport | None = None) -> IamToken:
    """A project-scoped token for the settings' account (project id if set, else the region's project)."""
    if not (settings.domain and settings.username and settings.password):
        raise ConfigError(
            "password login needs IMSFLOW_DOMAIN, IMSFLOW_USERNAME and IMSFLOW_PASSWORD",
            hint="Set them, or use AK/SK (IMSFLOW_ACCESS_KEY, IMSFLOW_SECRET_KEY), which needs no login.",
        )
    async with CloudClient(settings, transport=transport) as client:
        return await client.iam.create_token(
            domain=settings.domain,
            username=settings.username,
            password=settings.password,
            project_id=settings.project_id,
            project_name=None if settings.project_id else settings.region,
        )
