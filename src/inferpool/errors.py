"""Errors the gateway answers itself, shaped like vLLM's OpenAI server errors.

A leaf module (no inferpool imports): every layer, admission and the simulator included, raises these.
"""

from __future__ import annotations

import orjson

_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    413: "RequestTooLargeError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


class InferenceError(Exception):
    """An error with an HTTP status and an OpenAI-style body.

    Body: {"error": {"message", "type", "param", "code"}} where code is the status,
    exactly as vLLM sends it, so OpenAI clients raise the matching exception.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        err_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.err_type = err_type or _TYPES.get(status, "InternalServerError")
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.err_type,
                "param": self.param,
                "code": self.status,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.body())

    def __repr__(self) -> str:
        return f"InferenceError({self.status}, {self.message!r})"
