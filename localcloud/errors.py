"""Error codes and error bodies, per service, as the API pages print them.

Services raise :class:`CloudError`; the HTTP layer turns it into a response. The state modules never build
HTTP responses themselves.
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from typing import Any

# ---- IMS (ims/api-ref/source/error_codes.rst: "If the returned status code is 400, a customized error
# message will be returned"; body {"error": {"message", "code"}}) -----------------------------------------
IMS_CODES: dict[str, tuple[int, str]] = {
    "IMG.0001": (400, "The request message format is invalid."),
    "IMG.0002": (400, "The image name contains more than 128 characters."),
    "IMG.0003": (400, "The image name format is invalid."),
    "IMG.0004": (400, "The description contains more than 1024 characters."),
    "IMG.0005": (400, "The ECS does not exist."),
    "IMG.0007": (400, "The request body is empty."),
    "IMG.0008": (400, "The ECS cannot be used to create images because it is not in stopped state."),
    "IMG.0009": (400, "The image name already exists."),
    "IMG.0010": (400, "The ECS cannot be used to create an image because it has in-progress tasks."),
    "IMG.0012": (400, "The ECS ID is not specified."),
    "IMG.0013": (400, "The image name is not specified."),
    "IMG.0014": (400, "An exception occurred when IaaS OpenStack was executing the task."),
    "IMG.0015": (400, "The number of private images has reached the maximum allowed."),
    "IMG.0018": (400, "An error occurred when the job was submitted."),
    "IMG.0023": (400, "An exception occurred during task query."),
    "IMG.0026": (
        403,
        "The role is invalid. You need to apply for the required permissions or pass the real-name "
        "authentication.",
    ),
    "IMG.0027": (400, "The image ID in the request does not exist."),
    "IMG.0028": (400, "The image in the request is protected."),
    "IMG.0030": (400, "The project ID and token in the request are invalid."),
    "IMG.0046": (400, "The image is unavailable."),
    "IMG.0047": (400, "This operation can be performed only by the image owner."),
    "IMG.0054": (400, "The image description format is invalid."),
    "IMG.0055": (400, "The memory or disk size is invalid."),
    "IMG.0060": (400, "The number of tasks exceeds the flow control limit."),
    "IMG.0061": (400, "Unknown system error."),
    "IMG.0066": (400, "The image ID is incorrect."),
    "IMG.0067": (400, "The project ID is incorrect."),
    "IMG.0068": (400, "The specified bucket name is empty."),
    "IMG.0069": (400, "The specified bucket cannot be accessed."),
    "IMG.0070": (
        400,
        "The image file already exists. Confirm the file in the corresponding directory of the OBS bucket "
        "or in the OBS bucket.",
    ),
    "IMG.0071": (400, "The image cannot be exported."),
    "IMG.0072": (400, "The specified image format is not supported."),
    "IMG.0073": (400, "The name of the exported file is empty."),
    "IMG.0074": (400, "The file name length exceeds the limit."),
    "IMG.0075": (400, "The file name contains invalid characters."),
    "IMG.0076": (400, "You cannot share an image with yourself."),
    "IMG.0077": (400, "The public image cannot be exported."),
    "IMG.0087": (400, "The token is incorrect."),
    "IMG.0088": (400, "The number of shared images has reached the maximum allowed."),
    "IMG.0089": (400, "The public image cannot be shared."),
    "IMG.0090": (400, "The image being created cannot be deleted."),
    "IMG.0092": (400, "The image can only be deleted by the owner."),
    "IMG.0094": (400, "The public image cannot be deleted."),
    "IMG.0105": (400, "The operation is not supported."),
    "IMG.0106": (400, "The image owner is another tenant."),
    "IMG.0108": (400, "The tenant ID was not found in the current region."),
    "IMG.0109": (400, "The bucket name contains invalid characters."),
    "IMG.0112": (400, "Failed to add the tenant."),
    "IMG.0113": (400, "Failed to delete the tenant."),
    "IMG.0115": (400, "The image tag is invalid."),
    "IMG.0116": (400, "The number of image tags exceeds the quota."),
    "IMG.0120": (400, "The specified data disk ID is unavailable."),
    "IMG.0140": (400, "The disks in the request come from different ECSs."),
    "IMG.0144": (400, "The image does not exist."),
    "IMG.0148": (400, "The image is being exported."),
    # Replication within a region (replicating_an_image_within_a_region.rst) and its constraints.
    "IMG.0095": (400, "The KMS key does not exist."),
    "IMG.0096": (400, "The specified KMS key ID must be different from the image key ID."),
    "IMG.0130": (400, "The full-ECS image cannot be exported or replicated."),
    "IMG.0167": (400, "This operation cannot be performed for ISO images."),
    "IMG.0196": (400, "The image cannot be replicated because it is not accepted by the recipient."),
    "IMG.0197": (400, "Failed to replicate the shared image because it is encrypted using KMS."),
    # Full-ECS images (creating_a_full-ecs_image.rst, exporting_an_image.rst).
    "IMG.0126": (400, "The VM in the current stage cannot be used to create a full-ECS image."),
    "IMG.0128": (400, "The full-ECS image cannot be exported."),
    "IMG.0136": (400, "Failed to create a full-ECS image because the ECS is being backed up."),
    "IMG.0188": (400, "Vault is unavailable."),
    "IMG.0135": (400, "The full-ECS image cannot be shared."),
}

# ---- ECS (contract §4.6; ECS body {"error": {"code", "message", "details"?}}) ---------------------------
ECS_CODES: dict[str, tuple[int, str]] = {
    "Ecs.0005": (400, "Invalid parameter values. Contact customer service."),
    "Ecs.0023": (400, "project_id in token mismatches with project_id in url."),
    "Ecs.0100": (
        400,
        "The ECS status does not meet requirements. Make the ECS in the required status and try again.",
    ),
    "Ecs.0114": (404, "The ECS does not exist."),
    "Ecs.0226": (400, "Failed to start."),
    "Ecs.0603": (501, "The commands are being executed. Try again later."),
    "Ecs.0605": (400, "ECS locked."),
    "Common.0002": (400, "The request body cannot be left blank."),
    "Common.0011": (400, "Failed to query system tasks."),
    "Common.0013": (401, "Invalid token."),
    "Common.0018": (400, "The project ID in the URL is different from that in the token."),
    "Common.0024": (202, "Flow limit exceeded."),
    "Common.1503": (429, "Api flow control Error because %s."),
}

# ---- IAM (iam/api-ref/source/appendix/error_codes.rst) -------------------------------------------------
IAM_CODES: dict[str, tuple[int, str]] = {
    "IAM.0001": (401, "The request you have made requires authentication."),
    "IAM.0007": (400, "Request parameter %(key)s is invalid."),
    "IAM.0009": (400, "X-Subject-Token is invalid in the request."),
    "IAM.0011": (400, "Request body is invalid."),
    "IAM.0012": (429, "The throttling threshold has been reached. Threshold: %d times per %d seconds"),
    "IAM.0061": (401, "Account locked."),
    "IAM.0062": (401, "Incorrect password."),
    "IAM.0066": (401, "The token has expired."),
    "IAM.0067": (401, "Invalid token."),
    "IAM.0072": (400, "'%(key)s' is a required property."),
    "IAM.0082": (403, "The user %s is disabled."),
}

HTTP_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


#: The id of the request being answered, set by the outermost ASGI layer (``gateway.py``), which also sends it
#: as ``X-Request-Id``; gateway bodies carry the same value in ``request_id``.
CURRENT_REQUEST_ID: ContextVar[str | None] = ContextVar("localcloud_request_id", default=None)

# [inference] The gateway pages only show "request_id" as 32 lowercase hex characters in bodies; we use the
# same form for the X-Request-Id header.
APIG_0101 = "The API does not exist or has not been published in the environment."


def new_request_id() -> str:
    """A fresh request id: 32 lowercase hex characters."""
    return secrets.token_hex(16)


def request_id() -> str:
    """The current request's id (the one in ``X-Request-Id``), or a fresh one outside a request."""
    return CURRENT_REQUEST_ID.get() or new_request_id()


class CloudError(Exception):
    """An API error: HTTP status, JSON body (None = no body) and extra headers."""

    def __init__(
        self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @property
    def code(self) -> str | None:
        """The service error code carried by the body, whatever its shape (for tests and logs)."""
        if not self.body:
            return None
        if "error_code" in self.body:
            return str(self.body["error_code"])
        err = self.body.get("error")
        if isinstance(err, dict):
            return str(err.get("code"))
        return None


def ims_error(code: str, message: str | None = None, status: int | None = None) -> CloudError:
    """IMS body: ``{"error": {"message": ..., "code": "IMG.xxxx"}}``."""
    default_status, default_message = IMS_CODES.get(code, (400, "Unknown system error."))
    return CloudError(
        status or default_status, {"error": {"message": message or default_message, "code": code}}
    )


def ecs_error(
    code: str, message: str | None = None, status: int | None = None, details: bool = False
) -> CloudError:
    """ECS body: ``{"error": {"message": ..., "code": "Ecs.xxxx"}}`` (``details`` optional per page)."""
    default_status, default_message = ECS_CODES.get(code, (400, "Invalid parameter values."))
    err: dict[str, Any] = {"message": message or default_message, "code": code}
    if details:
        err["details"] = [{"message": err["message"], "code": code}]
    return CloudError(status or default_status, {"error": err})


def ecs_job_error() -> CloudError:
    """An ECS job query that failed (an unknown job id, or another project's).

    The job page: top-level ``code``/``message`` appear when the job query itself fails (Common.0011 = bad
    job id). [inference] We also keep the usual ``error`` object of ECS errors.
    """
    err = ecs_error("Common.0011")
    assert err.body is not None
    err.body.update(err.body["error"])
    return err


def iam_error(code: str, message: str | None = None, status: int | None = None) -> CloudError:
    """IAM body.

    [inference] The IAM pages show two shapes: the generic ``{"error_msg", "error_code"}`` (calling_apis/
    response.rst) and, per the contract, Keystone's ``{"error": {"code": <int>, "message", "title"}}``.
    We send both in one body, so a client reading either shape finds the status and the ``IAM.xxxx`` code.
    """
    default_status, default_message = IAM_CODES.get(code, (400, "Request body is invalid."))
    status = status or default_status
    message = message or default_message
    return CloudError(
        status,
        {
            "error": {"code": status, "message": message, "title": HTTP_TITLES.get(status, "Error")},
            "error_msg": message,
            "error_code": code,
        },
    )


def gateway_error(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> CloudError:
    """API gateway body: ``{"error_msg", "error_code", "request_id"}`` (APIG.0301 / APIG.0308 ...)."""
    return CloudError(status, {"error_msg": message, "error_code": code, "request_id": request_id()}, headers)
