"""Domain errors; `detector.api.errors` maps them to HTTP status codes in one place."""


class ServiceError(Exception):
    """Base of the errors a client can cause; ``status`` is the HTTP answer."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    status = 400
    code = "invalid_input"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


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
