"""The one exception tree of imsflow.

Classes are grouped by what a caller does about them, not by which service raised them::

    ImsflowError                       hint: what the user should do
    ├── ConfigError                    settings are incomplete or unsafe
    ├── InvalidRequestError            client-side validation (names the field and the IMS rule)
    ├── TransportError                 retryable: connect/read failures and timeouts (carries url)
    │   └── TlsVerificationError       not retryable: the endpoint's certificate is not trusted
    ├── EcsNotReadyError               client-side check: the ECS is not in a state to be imaged
    ├── DataDiskError                  client-side check: the data disks asked for cannot be imaged
    │   ├── NoDataDiskError            the ECS has no data disk (kind system-and-data)
    │   └── DataVolumeNotFoundError    a volume asked for is not a data disk of the ECS
    ├── ImageSetIncompleteError        a request's image set lost a member (deleted): not made again
    ├── CoverageGapError               an ECS has no recent active image (`imsflow coverage`)
    ├── JobFailedError                 an IMS/ECS job ended in FAIL (raised by the polling code)
    ├── JobTimeoutError                a job did not finish in time (raised by the polling code)
    └── ApiError                       any non-2xx answer: status, code, message, url, request_id
        ├── AuthenticationError        401: get a new token / fix credentials
        │   ├── InvalidCredentialsError
        │   ├── TokenExpiredError
        │   ├── TokenInvalidError
        │   └── AccountLockedError
        ├── PermissionDeniedError      403: ask an administrator for rights
        ├── NotFoundError              404: the thing is gone or the id is wrong
        │   ├── EcsNotFoundError
        │   ├── ImageNotFoundError
        │   ├── JobNotFoundError
        │   └── ProjectNotFoundError
        ├── InvalidParameterError      400: fix the request
        ├── UnsupportedOperationError  the resource cannot be used this way at all
        │   ├── ImageNotShareableError yourself, a public, encrypted or full-ECS image (sharing)
        │   ├── ImageNotReplicableError an ISO image, a shared one not accepted or encrypted
        │   └── WholeImageNotExportableError  a full-ECS image cannot be exported or replicated
        ├── ConflictError              409 / wrong state: change the state, or wait
        │   ├── EcsNotStoppedError
        │   ├── EcsBusyError
        │   ├── EcsLockedError
        │   ├── ImageNameExistsError
        │   ├── ImageBeingCreatedError
        │   ├── ImageBeingExportedError
        │   └── ImageProtectedError
        ├── QuotaExceededError         free quota or ask for more
        │   └── ShareLimitError        an image has as many members as it may (sharing)
        ├── ThrottledError             retryable: flow control (429, IMG.0060, Common.0024 on 202, ...)
        ├── ServerError                retryable: 5xx and server-side failures reported as 400
        └── UnexpectedResponseError    a success answer we cannot read (wrong shape, not JSON)

``ERROR_CODES`` maps every documented code the flow can meet to its class; ``error_for`` picks the
class by code, else by HTTP status. ``parse_error_response`` is the only place that reads error bodies.
Only ``imsflow.client`` catches httpx exceptions; it turns them into ``TransportError``.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import httpx

__all__ = [
    "ERROR_CODES",
    "NO_SUCH_API_HINT",
    "AccountLockedError",
    "ApiError",
    "AuthenticationError",
    "ConfigError",
    "ConflictError",
    "CoverageGapError",
    "DataDiskError",
    "DataVolumeNotFoundError",
    "EcsBusyError",
    "EcsLockedError",
    "EcsNotFoundError",
    "EcsNotReadyError",
    "EcsNotStoppedError",
    "ImageBeingCreatedError",
    "ImageBeingExportedError",
    "ImageNameExistsError",
    "ImageNotFoundError",
    "ImageNotReplicableError",
    "ImageNotShareableError",
    "ImageProtectedError",
    "ImageQuotaError",
    "ImageSetIncompleteError",
    "ImsflowError",
    "InvalidCredentialsError",
    "InvalidParameterError",
    "InvalidRequestError",
    "JobFailedError",
    "JobNotFoundError",
    "JobTimeoutError",
    "NoDataDiskError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProjectNotFoundError",
    "QuotaExceededError",
    "ServerError",
    "ShareLimitError",
    "SlotsUnavailableError",
    "ThrottledError",
    "TlsVerificationError",
    "TokenExpiredError",
    "TokenInvalidError",
    "TransportError",
    "UnexpectedResponseError",
    "UnsupportedOperationError",
    "WholeImageNotExportableError",
    "error_for",
    "is_gateway_not_found",
    "parse_error_response",
    "request_id_of",
]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _rebuild(cls: type[ImsflowError], args: tuple[Any, ...], state: dict[str, Any]) -> ImsflowError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ImsflowError(Exception):
    """Root of every error imsflow raises.

    ``retryable`` tells the tasks whether trying the same call again can help (transport failures,
    throttling, 5xx); ``hint`` tells the user what to do.
    """

    retryable: ClassVar[bool] = False
    hint: str = "See the message for details."

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return _one_line(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default pickling; Prefect pickles task failures.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class ConfigError(ImsflowError):
    """The settings are incomplete or unsafe."""

    hint = "Check the IMSFLOW_* environment variables or the .env file (`imsflow config` shows them)."


class InvalidRequestError(ImsflowError, ValueError):
    """A request was refused before it was sent because it breaks an IMS rule.

    Also a ``ValueError``, so pydantic validators can raise it and the ``ValidationError`` states the rule.
    """

    hint = "Fix the named field so that it follows the rule."

    def __init__(self, field: str, value: object, rule: str, *, hint: str | None = None) -> None:
        self.field = field
        self.rule = rule
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"invalid {field} {shown}: {rule}", hint=hint)


class TransportError(ImsflowError):
    """The request did not get an HTTP answer (connect error, reset, timeout)."""

    retryable = True
    hint = "Check the network and the endpoint URL; the operation can be retried."

    def __init__(self, message: str, *, url: str, hint: str | None = None) -> None:
        self.url = url
        super().__init__(f"{message} ({url})", hint=hint)


class TlsVerificationError(TransportError):
    """The endpoint's TLS certificate did not verify: no request was sent, and trying again cannot help."""

    retryable = False
    hint = (
        "Install the endpoint's CA (SSL_CERT_FILE), or set IMSFLOW_VERIFY_TLS=false for a test endpoint only."
    )


class EcsNotReadyError(ImsflowError):
    """Checked before asking IMS: the ECS is not stopped (or cannot be stopped) now."""

    hint = (
        "Stop the ECS first, or let imsflow stop it ('Stop if running' in the run's form, --stop-if-running "
        "on the command line)."
    )


class DataDiskError(ImsflowError):
    """Checked before asking IMS: the data-disk images asked for cannot be made from this ECS."""

    hint = "`imsflow create --kind system` images the system disk alone; --data-volume picks data disks."


class NoDataDiskError(DataDiskError):
    """A system-and-data image set was asked for an ECS that has no data disk attached."""

    hint = (
        "Image its system disk alone (--kind system, the form's 'Image kind: system'), or attach a data disk."
    )


class DataVolumeNotFoundError(DataDiskError):
    """A volume asked for (``--data-volume``, the form's 'Data disks') is not a data disk of the ECS."""

    hint = "Name only the ECS's data disks (its system disk never); leave the list empty for all of them."


class ImageSetIncompleteError(ImsflowError):
    """Images of this request exist, but not all of its set: one was deleted (or never listed).

    Making the set again would duplicate the members that are there, so imsflow stops instead.
    """

    hint = (
        "Delete the images that carry this request's imsflow-request tag and run again, or run with another "
        "image name (or request key) for a new set."
    )


class CoverageGapError(ImsflowError):
    """Checked by the coverage flow: selected ECSs have no active image younger than the maximum age.

    ``result`` is the whole check (every ECS, covered or not), so a caller that catches the error can still
    show the table; ``gaps`` are the instance IDs without a recent image.
    """

    hint = (
        "image them: `imsflow fleet` with the same selection (--tag KEY=VALUE, --instance-id ID), or see why "
        "the last fleet run failed; `imsflow coverage` checks again"
    )

    def __init__(self, message: str, *, gaps: list[str], result: Any = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.gaps = gaps
        self.result = result


def _with_request_id(text: str, request_id: str | None) -> str:
    return f"{text} [request id {request_id}]" if request_id else text


class JobFailedError(ImsflowError):
    """An asynchronous IMS or ECS job ended with status FAIL.

    ``request_id`` is the cloud's request ID of the job query that reported the failure, when known.
    """

    hint = "Read the fail reason; fix the cause (server state, quota, name) and start a new job."

    def __init__(
        self,
        *,
        job_id: str | None,
        error_code: str | None,
        fail_reason: str | None,
        request_id: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.error_code = error_code
        self.fail_reason = fail_reason
        self.request_id = request_id
        reason = f"{error_code or 'no error code'}: {fail_reason or 'no reason given'}"
        super().__init__(f"job {job_id or '(unknown)'} failed: {reason}")

    def __str__(self) -> str:
        return _with_request_id(super().__str__(), self.request_id)


class JobTimeoutError(ImsflowError):
    """A job did not reach SUCCESS or FAIL in time; it may still finish in the cloud.

    ``request_id`` is the cloud's request ID of the last job query answered, when known.
    """

    hint = "The job may still finish: query it later, or raise IMSFLOW_JOB_TIMEOUT."

    def __init__(
        self,
        *,
        job_id: str,
        last_status: str | None,
        waited_seconds: float,
        request_id: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.last_status = last_status
        self.waited_seconds = waited_seconds
        self.request_id = request_id
        super().__init__(
            f"job {job_id} still {last_status or 'unknown'} after {waited_seconds:.0f} s",
        )

    def __str__(self) -> str:
        return _with_request_id(super().__str__(), self.request_id)


class ImageQuotaError(ImsflowError):
    """Checked before a fleet submits: its new images do not fit the project's private-image quota.

    Not the cloud's ``IMG.0015`` (:class:`QuotaExceededError`), which refuses one image after the fact.
    """

    hint = "`imsflow prune --dry-run` shows what the retention rules would delete."


class SlotsUnavailableError(ImsflowError):
    """No IMS job slot came free within the wait's bound: other runs hold them all.

    Not the cloud's error: the fleet's own job limit (a Prefect global concurrency limit) is full.
    """

    hint = "Or let the holders finish first, or wait longer (--slot-wait; the form's 'Wait for job slots')."


class ApiError(ImsflowError):
    """The cloud answered with an error."""

    hint = "See the error code in the API documentation."

    def __init__(
        self,
        *,
        status: int,
        code: str | None,
        message: str,
        url: str,
        request_id: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.url = url
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(message, hint=hint)

    def __str__(self) -> str:
        message = _one_line(self.message) or "(no message)"
        return _with_request_id(
            f"HTTP {self.status} {self.code or '-'}: {message} ({self.url})", self.request_id
        )

    def as_(self, cls: type[ApiError]) -> ApiError:
        """The same answer as another class (status, code, message, url, request ID and Retry-After kept)."""
        return cls(
            status=self.status,
            code=self.code,
            message=self.message,
            url=self.url,
            request_id=self.request_id,
            retry_after=self.retry_after,
        )


class AuthenticationError(ApiError):
    hint = "Log in again; check IMSFLOW_DOMAIN, IMSFLOW_USERNAME and the password or AK/SK."


class InvalidCredentialsError(AuthenticationError):
    hint = "Check the user name, domain and password (or the AK/SK pair)."


class TokenExpiredError(AuthenticationError):
    hint = "The token expired: log in again."


class TokenInvalidError(AuthenticationError):
    hint = "The token is not valid for this project or was revoked: log in again for the right project."


class AccountLockedError(AuthenticationError):
    hint = "The account or access key is locked; wait, or ask the account administrator to unlock it."


class PermissionDeniedError(ApiError):
    hint = "Ask the account administrator for the IMS/ECS permissions (or programmatic access)."


class NotFoundError(ApiError):
    hint = "Check the id; the resource may have been deleted."


class EcsNotFoundError(NotFoundError):
    hint = "Check the ECS id and that IMSFLOW_REGION / IMSFLOW_PROJECT_ID name the project it lives in."


class ImageNotFoundError(NotFoundError):
    hint = "Check the image id and that IMSFLOW_REGION / IMSFLOW_PROJECT_ID name the project it lives in."


class JobNotFoundError(NotFoundError):
    hint = "Check the job id; query IMS jobs on the IMS endpoint and ECS jobs on the ECS endpoint."


class ProjectNotFoundError(NotFoundError):
    hint = "Check IMSFLOW_PROJECT_ID / IMSFLOW_REGION; the project is named after the region."


class InvalidParameterError(ApiError):
    hint = "Fix the request parameters named in the message."


class UnsupportedOperationError(ApiError):
    hint = "This resource cannot be used for this operation; pick another server or image."


class ImageNotShareableError(UnsupportedOperationError):
    hint = (
        "Only your own private system-disk or data-disk images can be shared, and not with your own project "
        "(restrictions on image sharing)."
    )


class ImageNotReplicableError(UnsupportedOperationError):
    """The image cannot be replicated (replicating_an_image_within_a_region.rst, Constraints; error codes)."""

    hint = (
        "Full-ECS images and images made from ISO files cannot be replicated; an image shared with you must "
        "be accepted first (imsflow accept), and a shared image encrypted with KMS cannot be replicated."
    )


class WholeImageNotExportableError(UnsupportedOperationError):
    """IMS refused to export (or replicate) a full-ECS image (IMG.0128, IMG.0130)."""

    hint = (
        "A full-ECS image cannot be exported or replicated (creating_a_full-ecs_image.rst); export a "
        "system-disk image of the ECS instead (imsflow create --kind system, or system-and-data)."
    )


class ConflictError(ApiError):
    hint = "The resource is in the wrong state; change its state or wait, then try again."


class EcsNotStoppedError(ConflictError):
    hint = "Stop the ECS first (imsflow stops it when asked to)."


class EcsBusyError(ConflictError):
    hint = "The ECS has tasks in progress; wait until they finish and try again."


class EcsLockedError(ConflictError):
    hint = "The ECS is locked; unlock it in the console first."


class ImageNameExistsError(ConflictError):
    hint = "Choose another image name, or delete the old image."


class ImageBeingCreatedError(ConflictError):
    hint = "Wait until the image is active, then try again."


class ImageBeingExportedError(ConflictError):
    hint = "Wait until the running export finishes."


class ImageProtectedError(ConflictError):
    hint = "The image is protected; remove the protection first."


class QuotaExceededError(ApiError):
    hint = "Delete unused images or ask for a higher quota."


class ShareLimitError(QuotaExceededError):
    hint = "An image can be shared with at most 256 projects; stop sharing it with some first."


class ThrottledError(ApiError):
    retryable = True
    hint = "The cloud is throttling requests; wait and retry."


class ServerError(ApiError):
    retryable = True
    hint = "The cloud had an internal problem; retry later."


class UnexpectedResponseError(ApiError):
    hint = "The endpoint answered in an unexpected shape; check the endpoint URL (a proxy or wrong service?)."


def _codes(cls: type[ApiError], prefix: str, numbers: str) -> dict[str, type[ApiError]]:
    return {f"{prefix}{n}": cls for n in numbers.split()}


# Every code of the IMS error code page (177), the ECS/Common codes of the contract, the IAM codes of the
# IAM error code page that token, project and AK/SK calls can return, and the API gateway codes.
# Codes the pages send with HTTP 400 but that describe a server-side failure are ServerError (retryable).
# IMG.0023 ("An exception occurred during task query.") stays one here; answering a job query, where it
# means an unknown job, the client makes it JobNotFoundError (imsflow.client.JOB_QUERY_ERRORS).
ERROR_CODES: dict[str, type[ApiError]] = {
    **_codes(
        InvalidParameterError,
        "IMG.",
        "0001 0002 0003 0004 0007 0011 0012 0013 0016 0017 0019 0021 0024 0025 0031 0034 0035 0041 0054 "
        "0055 0056 0057 0062 0066 0068 0073 0074 0075 0085 0104 0109 0115 0122 0123 0141 0162 0175 0192 "
        "0212",
    ),
    **_codes(
        UnsupportedOperationError,
        "IMG.",
        "0006 0033 0058 0059 0063 0069 0071 0072 0077 0079 0080 0081 0083 0084 0094 0096 "
        "0105 0110 0111 0117 0118 0119 0125 0128 0130 0140 0153 0160 0163 0164 0166 0167 0168 0169 "
        "0170 0171 0172 0173 0174 0177 0178 0180 0189 0190 0193 0195 0196 0197",
    ),
    # Sharing (restrictions_on_image_sharing.rst): yourself, public, encrypted, full-ECS.
    **_codes(ImageNotShareableError, "IMG.", "0076 0089 0098 0135"),
    # Replication (replicating_an_image_within_a_region.rst): ISO (IMG.0167), a shared image not accepted
    # (IMG.0196) or encrypted (IMG.0197). Listed under UnsupportedOperationError above too; this later entry
    # wins (the subclass keeps that meaning). A full-ECS image (IMG.0130) is the next entry's.
    **_codes(ImageNotReplicableError, "IMG.", "0167 0196 0197"),
    # Full-ECS images (creating_a_full-ecs_image.rst: "A full-ECS image cannot be exported or replicated."),
    # listed among the unsupported operations above: the later entry names them more precisely.
    **_codes(WholeImageNotExportableError, "IMG.", "0128 0130"),
    **_codes(EcsNotFoundError, "IMG.", "0005"),
    **_codes(ImageNotFoundError, "IMG.", "0027 0086 0144"),
    **_codes(NotFoundError, "IMG.", "0020 0095 0101 0120 0121 0127 0198"),
    **_codes(ProjectNotFoundError, "IMG.", "0067 0108 0145"),
    **_codes(
        PermissionDeniedError,
        "IMG.",
        "0026 0047 0092 0099 0100 0103 0106 0133 0161 0165 0238 0239 0241 0242",
    ),
    **_codes(TokenInvalidError, "IMG.", "0030 0087 0179"),
    **_codes(EcsNotStoppedError, "IMG.", "0008"),
    **_codes(EcsBusyError, "IMG.", "0010 0136 0139"),
    **_codes(ImageNameExistsError, "IMG.", "0009"),
    **_codes(ImageBeingCreatedError, "IMG.", "0090"),
    **_codes(ImageBeingExportedError, "IMG.", "0148"),
    **_codes(ImageProtectedError, "IMG.", "0028"),
    **_codes(ConflictError, "IMG.", "0022 0029 0032 0046 0070 0097 0102 0126 0132 0134 0176 0183 0186 0188"),
    **_codes(QuotaExceededError, "IMG.", "0015 0116 0182 0185 0194"),
    **_codes(ShareLimitError, "IMG.", "0088"),
    **_codes(ThrottledError, "IMG.", "0060 0187"),
    **_codes(
        ServerError,
        "IMG.",
        "0014 0018 0023 0036 0037 0038 0039 0040 0045 0053 0061 0064 0065 0112 0113 0114 0137 0138 0154 "
        "0155 0156 0181 0184 0191 1075",
    ),
    # ECS (contract section 4.6).
    "Ecs.0005": InvalidParameterError,
    "Ecs.0023": TokenInvalidError,
    "Ecs.0100": ConflictError,
    "Ecs.0114": EcsNotFoundError,
    "Ecs.0614": EcsNotFoundError,
    "Ecs.0226": ConflictError,
    "Ecs.0603": EcsBusyError,
    "Ecs.0605": EcsLockedError,
    "Common.0002": InvalidParameterError,
    "Common.0011": JobNotFoundError,
    "Common.0013": TokenInvalidError,
    "Common.0018": TokenInvalidError,
    "Common.0024": ThrottledError,
    "Common.1503": ThrottledError,
    # IAM (error code appendix).
    **_codes(InvalidParameterError, "IAM.", "0007 0008 0009 0010 0011 0072 0073 0077 1101 1102 1103"),
    "IAM.0001": AuthenticationError,
    "IAM.0061": AccountLockedError,
    "IAM.0062": InvalidCredentialsError,
    "IAM.0063": InvalidCredentialsError,
    "IAM.0064": PermissionDeniedError,
    "IAM.0066": TokenExpiredError,
    "IAM.0067": TokenInvalidError,
    "IAM.1104": InvalidCredentialsError,
    "IAM.1105": InvalidCredentialsError,
    "IAM.1106": InvalidCredentialsError,
    "IAM.1107": InvalidCredentialsError,
    "IAM.1108": TokenExpiredError,
    "IAM.1109": ProjectNotFoundError,
    **_codes(PermissionDeniedError, "IAM.", "0002 0003 0080 0081 0082 0083"),
    "IAM.0004": NotFoundError,
    "IAM.0005": ConflictError,
    "IAM.0006": ServerError,
    "IAM.0012": ThrottledError,
    "IAM.0020": ServerError,
    # API gateway: IAM authentication, app authentication, throttling.
    "APIG.0301": AuthenticationError,
    "APIG.0303": AuthenticationError,
    "APIG.0308": ThrottledError,
}

_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidParameterError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: ThrottledError,
}

# IAM sends Keystone bodies with the HTTP status as an integer code; these documented messages
# recover the IAM.* code (placeholders such as %(key)s or %d match anything).
_IAM_MESSAGES: dict[str, str] = {
    "IAM.0001": "The request you have made requires authentication.",
    "IAM.0002": "You are not authorized to perform the requested action.",
    "IAM.0003": "Policy doesn't allow %(actions)s to be performed.",
    "IAM.0004": "Could not find %(target)s: %(target_id)s.",
    "IAM.0006": "An unexpected error prevented the server from fulfilling your request.",
    "IAM.0007": "Request parameter %(key)s is invalid.",
    "IAM.0011": "Request body is invalid.",
    "IAM.0012": "The throttling threshold has been reached. Threshold: %d times per %d seconds",
    "IAM.0061": "Account locked.",
    "IAM.0062": "Incorrect password.",
    "IAM.0063": "Access token authentication failed.",
    "IAM.0066": "The token has expired.",
    "IAM.0067": "Invalid token.",
    "IAM.0072": "'%(key)s' is a required property.",
    "IAM.0080": "The user %s with access key %s is disabled.",
    "IAM.0081": "This user only supports console access, not programmatic access.",
    "IAM.0082": "The user %s is disabled.",
}


def _message_pattern(template: str) -> re.Pattern[str]:
    # The trailing period is optional: gateways and emulators are not consistent about it.
    parts = re.split(r"%\(\w+\)s|%[sd]", template.rstrip("."))
    return re.compile(".+".join(re.escape(p) for p in parts) + r"\.?$", re.IGNORECASE)


_IAM_PATTERNS = [(code, _message_pattern(text)) for code, text in _IAM_MESSAGES.items()]


def iam_code_for_message(message: str) -> str | None:
    """The IAM.* code whose documented message matches ``message``, if any."""
    text = message.strip()
    for code, pattern in _IAM_PATTERNS:
        if pattern.match(text):
            return code
    return None


def error_for(
    status: int,
    code: str | None,
    message: str,
    url: str,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ApiError:
    """Build the ApiError subclass that fits ``code`` (else ``status``)."""
    cls: type[ApiError] | None = ERROR_CODES.get(code) if code else None
    if cls is None:
        cls = ServerError if status >= 500 else _BY_STATUS.get(status, ApiError)
    error = cls(
        status=status,
        code=code,
        message=message,
        url=url,
        request_id=request_id,
        retry_after=retry_after,
    )
    if is_gateway_not_found(error):
        error.hint = NO_SUCH_API_HINT
    return error


#: What to do when the API gateway, not the service, answers 404: the request never reached IAM, ECS or IMS.
NO_SUCH_API_HINT = (
    "The endpoint has no such API: check IMSFLOW_IAM_URL / IMSFLOW_ECS_URL / IMSFLOW_IMS_URL and "
    "IMSFLOW_IMS_JOB_API (`imsflow doctor` checks them)."
)


def is_gateway_not_found(error: ApiError) -> bool:
    """A 404 from the API gateway itself (``APIG.*``, e.g. APIG.0101 "The API does not exist ..."):
    no service saw the request, so it says nothing about the resource the URL names."""
    return error.status == 404 and (error.code or "").startswith("APIG.")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        # An HTTP date is allowed too, but none of these services documents one.
        return None
    return seconds if seconds >= 0 else None


def _request_id(response: httpx.Response, body: dict[str, Any]) -> str | None:
    for key in ("request_id", "requestId"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return request_id_of(response)


def request_id_of(response: httpx.Response) -> str | None:
    """The cloud's request ID from the response headers (``X-Request-Id``, or an OpenStack one), if any."""
    for header in ("X-Request-Id", "X-Openstack-Request-Id", "X-Compute-Request-Id"):
        value: str | None = response.headers.get(header)
        if value:
            return value
    return None


def _safe_url(response: httpx.Response) -> str:
    try:
        return str(response.request.url)
    except RuntimeError:  # a Response built without a request, e.g. in a test
        return "(unknown url)"


def parse_error_response(response: httpx.Response) -> ApiError:
    """Turn an error response of IAM, ECS, IMS or the API gateway into an ApiError.

    Body shapes understood: IMS/ECS ``{"error": {"code": "IMG.0005", "message": ...}}``, Keystone
    ``{"error": {"code": 401, "message": ..., "title": ...}}`` (integer code), gateway
    ``{"error_msg", "error_code", "request_id"}``, ECS job-query ``{"code", "message"}``, and anything else.
    """
    url = _safe_url(response)
    status = response.status_code
    try:
        body: Any = json.loads(response.content) if response.content else {}
    except (ValueError, UnicodeDecodeError):
        body = None
    code: str | None = None
    message = ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            raw_code = error.get("code")
            message = str(error.get("message") or error.get("title") or "")
            # Keystone sends the HTTP status as an integer code; its message tells which IAM.* error it is.
            code = raw_code if isinstance(raw_code, str) and raw_code else iam_code_for_message(message)
        elif "error_code" in body or "error_msg" in body:
            code = str(body.get("error_code") or "") or None
            message = str(body.get("error_msg") or "")
        elif isinstance(body.get("code"), str):
            code = str(body["code"])
            message = str(body.get("message") or "")
        elif isinstance(error, str):
            message = error
    else:
        text = response.text.strip() if body is None else ""
        # A proxy's HTML page is noise; keep only a short, single-line excerpt.
        message = _one_line(text)[:200] or (response.reason_phrase or "")
    if not message:
        message = response.reason_phrase or ""
    return error_for(
        status,
        code,
        message,
        url,
        request_id=_request_id(response, body if isinstance(body, dict) else {}),
        retry_after=_retry_after(response),
    )
