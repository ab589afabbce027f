"""Domain errors; `detector.api.errors` maps them to HTTP status codes in one place."""


class ServiceError(Exception):
    """Base of the errors a client can cause; ``status`` is the HTTP answer."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: str) -> None:
        super().__init__(message)
        self.message = message
        # More fields of the error's body (JobEnded: the job's final status).
        self.details = details


class InvalidInput(ServiceError):
    status = 400
    code = "invalid_input"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class JobEnded(Conflict):
    """The job had already ended (its final ``status`` is in the body): nothing to cancel."""

    code = "job_ended"

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} has already {status}", status=status)


class Forbidden(ServiceError):
    """The caller is known but may not do this (a wrong current password, an API key
    without the scope, registration closed)."""

    status = 403
    code = "forbidden"


class TryAgainLater(ServiceError):
    """The request was accepted and committed, but a server it needs (the message broker)
    failed; the same request, sent again after ``retry_after`` seconds, finishes it."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Gone(ServiceError):
    """What was asked for existed and was deleted for good (a video past its retention)."""

    status = 410
    code = "gone"


class QuotaExceeded(ServiceError):
    """Keeping this video would take its owner past STORAGE_QUOTA_MB.

    413 Payload Too Large rather than 403: the request is refused for its size, as an
    upload over MAX_UPLOAD_MB is, and it is no question of permission; a smaller
    video, or one sent after deleting jobs, is accepted.
    """

    status = 413
    code = "quota_exceeded"


class NotAVideo(ServiceError):
    """The upload is not a media container with a video stream."""

    status = 415
    code = "unsupported_media"


class UnreadableVideo(ServiceError):
    """A video container whose frames cannot be decoded or are refused."""

    status = 422
    code = "unreadable_video"


class Misconfigured(ServiceError):
    """The deployment's settings keep the service from doing this; the message says which."""

    status = 503
    code = "misconfigured"
