"""Domain errors and the one place that turns any exception into an HTTP problem response."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example, OpenAPIResponse, Operation, Schema
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DBAPIError

from bot.contracts import FieldError, Problem

log = logging.getLogger("jem.errors")

PROBLEM_JSON = "application/problem+json"


class DomainError(Exception):
    """Base of every error the API reports on purpose; the docstring is the default detail."""

    status_code = 400
    title = "Bad Request"

    def __init__(self, detail: str | None = None, *, errors: list[FieldError] | None = None) -> None:
        self.detail = detail or (type(self).__doc__ or self.title).strip()
        self.errors = errors
        super().__init__(self.detail)


class BadRequestError(DomainError):
    """The request is malformed."""


class UnauthorizedError(DomainError):
    """A valid bearer token is required: send `Authorization: Bearer <token>`."""

    status_code = 401
    title = "Unauthorized"


class NotFoundError(DomainError):
    """No such resource."""

    status_code = 404
    title = "Not Found"


class ConflictError(DomainError):
    """The resource is not in a state that allows this."""

    status_code = 409
    title = "Conflict"


class PayloadTooLargeError(DomainError):
    """The request body is too large."""

    status_code = 413
    title = "Payload Too Large"


class UnsupportedMediaTypeError(DomainError):
    """This kind of content is not accepted here."""

    status_code = 415
    title = "Unsupported Media Type"


class BadGatewayError(DomainError):
    """WhatsApp (Graph) refused or did not answer."""

    status_code = 502
    title = "Bad Gateway"


class ValidationFailedError(DomainError):
    """The request has invalid fields."""

    status_code = 422
    title = "Unprocessable Content"

    @classmethod
    def one(cls, field: str, message: str) -> ValidationFailedError:
        return cls(f"{field}: {message}", errors=[FieldError(field=field, message=message)])

    @classmethod
    def many(cls, errors: list[FieldError]) -> ValidationFailedError:
        shown = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return cls(f"{shown}{more}", errors=errors)


# RFC 9110's reason phrases (422's as RFC 9110 renamed it), the problem `title` of each status we answer.
TITLES: Mapping[int, str] = MappingProxyType(
    {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        413: "Payload Too Large",
        415: "Unsupported Media Type",
        422: "Unprocessable Content",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
    }
)


def problem_response(
    status: int,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    body = msgspec.json.encode(Problem(title=title, status=status, detail=detail, errors=errors))
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def domain_error_handler(_: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    return problem_response(exc.status_code, exc.title, exc.detail, exc.errors)


def _field_from_key(key: str) -> str:
    return key.removeprefix("data.").removeprefix("data")


def field_error(message: str, field: str) -> FieldError:
    """Turn a msgspec message into one naming the field: a missing field is reported at its own path."""
    missing = re.match(r"Object missing required field `([^`]+)`", message)
    if missing:
        return FieldError(field=f"{field}.{missing.group(1)}" if field else missing.group(1), message="is required")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
    if unknown:
        name = unknown.group(1)
        return FieldError(field=f"{field}.{name}" if field else name, message="is not a known field")
    return FieldError(field=field or "body", message=message)


def from_msgspec_error(exc: msgspec.ValidationError, prefix: str = "") -> FieldError:
    message, _, path = str(exc).partition(" - at `$")
    return field_error(message, prefix + path.rstrip("`"))


def validation_error_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    errors: list[FieldError] = []
    for item in extra:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key") or "")
        message = str(item.get("message") or "invalid value")
        if key == "data" and item.get("source") == "body" and message == "'data'":
            # Litestar reports an empty body as a missing `data` field: that is a malformed request.
            return problem_response(400, "Bad Request", "a JSON request body is required")
        errors.append(field_error(message, _field_from_key(key)))
    if not errors:
        return problem_response(400, "Bad Request", str(exc.detail))
    return domain_error_handler(_, ValidationFailedError.many(errors))


def http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    detail = str(exc.detail)
    if status == 400 and "JSON is malformed" in detail:
        detail = "the body is not valid JSON: " + detail.split(":", 1)[-1].strip()
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(status, TITLES.get(status, "Error"), detail, headers=headers)


def too_deep_handler(request: Request[Any, Any, Any], exc: RecursionError) -> Response[bytes]:
    """msgspec (and json) give up on a body nested deeper than Python's recursion limit by raising RecursionError,
    before any handler or authentication runs. No request we accept nests more than a few levels: it is bad
    input, not our failure."""
    log.warning("refused a body nested too deeply on %s %s", request.method, request.url.path)
    return problem_response(400, "Bad Request", "the JSON body is nested too deeply")


def unexpected_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Internal Server Error",
        "an unexpected error occurred; it has been logged",
    )


def database_error_handler(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[bytes]:
    """A value the database cannot hold (SQLSTATE class 22: out of range, malformed) came from the request.

    Handlers validate their input, so this is a safety net: bad input must be a 422, never a 500. Anything
    else from the database is unexpected.
    """
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
    if not sqlstate.startswith("22"):
        return unexpected_error_handler(request, exc)
    log.warning("data error on %s %s: SQLSTATE %s", request.method, request.url.path, sqlstate)
    return problem_response(
        422, "Unprocessable Content", "a value in the request is out of range or malformed for this field"
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DBAPIError: database_error_handler,
    DomainError: domain_error_handler,
    ValidationException: validation_error_handler,
    HTTPException: http_exception_handler,
    RecursionError: too_deep_handler,
    Exception: unexpected_error_handler,
}


# --- the OpenAPI document ---------------------------------------------------------------------------------------

# What a status means wherever it is answered, and an example body; an operation may say more (see `problems`).
_MEANINGS: Mapping[int, tuple[str, str]] = MappingProxyType(
    {
        400: ("Malformed request: the body is not JSON, or a JSON body is missing", "a JSON request body is required"),
        401: ("No valid bearer token: send `Authorization: Bearer <token>`", "the token is invalid or revoked"),
        403: ("Refused", "forbidden"),
        404: ("No such resource for this employer (another employer's ids are answered alike)", "not found"),
        409: ("The resource is not in a state that allows this", "the resource is not in a state that allows this"),
        413: ("The request body is over 8 MiB", "The request body is too large."),
        415: ("This kind of content is not accepted here", "this kind of content is not accepted here"),
        422: (
            "Validation failed; `errors` names every invalid field (`field` is a path such as `employees[3].phone`)",
            "phone: must be in international E.164 form with a leading + and country code, e.g. +27821234567",
        ),
        500: ("A bug on our side: it is logged, and `detail` says only that", "an unexpected error occurred"),
        502: ("WhatsApp (Graph) refused or did not answer", "WhatsApp refused the request"),
        503: ("A service this needs is unavailable", "the database is unavailable"),
    }
)


def problems(*statuses: int | tuple[int, str]) -> dict[int, ResponseSpec]:
    """`responses=` of a route handler: a problem-details answer (`application/problem+json`) for each status it can
    give, `(status, description)` where the operation has more to say, and always 500 (any operation can fail
    unexpectedly). Use with `operation_class=ProblemOperation`, which drops Litestar's own error shape."""
    specs: dict[int, ResponseSpec] = {}
    for item in (*statuses, 500):
        status, description = item if isinstance(item, tuple) else (item, _MEANINGS[item][0])
        detail = _MEANINGS[status][1]
        example: dict[str, object] = {"title": TITLES[status], "status": status, "detail": detail}
        if status == 422:
            field, _, message = detail.partition(": ")
            example["errors"] = [{"field": field, "message": message}]
        specs[status] = ResponseSpec(
            Problem,
            description=description,
            media_type=PROBLEM_JSON,
            generate_examples=False,
            examples=[Example(summary=TITLES[status], value=example)],
        )
    return specs


def _litestar_error_shape(response: object) -> bool:
    """Litestar's generated error response: `{status_code, detail, extra}`, which this service never answers."""
    if not isinstance(response, OpenAPIResponse) or not response.content:
        return False
    return any(
        isinstance(media.schema, Schema) and set(media.schema.properties or ()) == {"status_code", "detail", "extra"}
        for media in response.content.values()
    )


@dataclass
class ProblemOperation(Operation):
    """An operation documented with only the statuses its handler declares.

    Litestar adds a 400 of its own shape to every operation with a parameter (and the header `Authorization` is
    one), including those that can never answer 400. Handlers list the statuses they really answer with
    `problems()`; what Litestar added besides is dropped here.
    """

    def __post_init__(self) -> None:
        if self.responses:
            self.responses = {code: r for code, r in self.responses.items() if not _litestar_error_shape(r)}
