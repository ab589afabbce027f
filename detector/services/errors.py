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
