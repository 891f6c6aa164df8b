"""Domain errors: each becomes a problem-details answer with the status it names."""

from __future__ import annotations


class ServiceError(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.code = code


class Invalid(ServiceError):
    status, title = 422, "Unprocessable Content"


class BadRequest(ServiceError):
    status, title = 400, "Bad Request"


class Unauthorized(ServiceError):
    status, title = 401, "Unauthorized"


class Forbidden(ServiceError):
    status, title = 403, "Forbidden"


class NotFound(ServiceError):
    status, title = 404, "Not Found"


class Conflict(ServiceError):
    status, title = 409, "Conflict"


class Gone(ServiceError):
    status, title = 410, "Gone"


class TooMany(ServiceError):
    status, title = 429, "Too Many Requests"


class TooLarge(ServiceError):
    status, title = 413, "Content Too Large"


class Unsupported(ServiceError):
    status, title = 415, "Unsupported Media Type"


class Unavailable(ServiceError):
    status, title = 503, "Service Unavailable"
