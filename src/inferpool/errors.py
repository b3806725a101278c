"""Errors the gateway answers itself, shaped like vLLM's OpenAI server errors.

A leaf module (no inferpool imports): every layer, admission and the simulator included, raises these.
It also renders vLLM's 400s for bodies its schema refuses (pydantic-style messages, type "Bad
Request", param "body.<field>"), once for both the gateway's body parser and the simulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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


# -- vLLM's answers to bodies its schema refuses ---------------------------------------------------

# vLLM types schema errors (FastAPI's, param "body.<field>") "Bad Request" and semantic ones
# (its own checks, param "<field>") "BadRequestError"; clients see either, so both are kept.
SCHEMA_ERROR_TYPE = "Bad Request"

# FastAPI's own words for a body it cannot even decode as text (invalid UTF-8): it raises an
# HTTPException, which vLLM renders with the status phrase as the type and no param.
UNPARSEABLE_BODY = "There was an error parsing the body"


def schema_error(message: str, param: str | None) -> InferenceError:
    """A 400 typed "Bad Request", as vLLM answers what FastAPI refuses before its handlers run."""
    return InferenceError(400, message, param=param, err_type=SCHEMA_ERROR_TYPE)


def semantic_error(message: str, param: str, value: object | None = None) -> InferenceError:
    """A BadRequestError with vLLM's "(parameter=..., value=...)" suffix."""
    suffix = f"(parameter={param})" if value is None else f"(parameter={param}, value={value})"
    return InferenceError(400, f"{message} {suffix}", param=param)


def _shown_input(value: object) -> object:
    # vLLM 0.32 prints containers by size only (recordings 33 and 43), scalars as they are.
    if isinstance(value, dict):
        return f"<dict of {len(value)} items>"
    if isinstance(value, list):
        return f"<list of {len(value)} items>"
    return value


def validation_failure(
    errors: Iterable[Mapping[str, Any]], prefix: Sequence[str | int] = ("body",)
) -> InferenceError:
    """vLLM's 400 for pydantic errors (`ValidationError.errors()`, or dicts of the same keys).

    The message lists each as vLLM 0.32 does: `{'type', 'loc' (dotted, under "body"), 'msg',
    'input' (containers by size), 'ctx'}`; the param is the first error's loc.
    """
    shown = []
    for err in errors:
        item: dict[str, Any] = {
            "type": err["type"],
            "loc": ".".join(str(part) for part in (*prefix, *err["loc"])),
            "msg": err["msg"],
            "input": _shown_input(err.get("input")),
        }
        if "ctx" in err:
            item["ctx"] = {
                k: v if isinstance(v, str | int | float) else str(v) for k, v in err["ctx"].items()
            }
        shown.append(item)
    plural = "s" if len(shown) != 1 else ""
    message = f"{len(shown)} validation error{plural}:\n" + "\n".join(f"  {item!r}" for item in shown)
    return schema_error(message, shown[0]["loc"] if shown else None)


def field_failure(loc: Sequence[str | int], kind: str, msg: str, value: object) -> InferenceError:
    """vLLM's 400 for one field its schema refuses: `kind` and `msg` are pydantic's words."""
    return validation_failure([{"type": kind, "loc": loc, "msg": msg, "input": value}])


def decode_json_body(raw: bytes) -> Any:
    """`raw` decoded as FastAPI decodes a JSON body for vLLM, or vLLM's 400 when it cannot be.

    Python's json, as FastAPI uses, so positions and messages are the ones vLLM reports and
    what it accepts (NaN, integers past 64 bits, a BOM) decodes here too. An empty body is a
    missing one to FastAPI.
    """
    if not raw:
        raise field_failure((), "missing", "Field required", None)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        # FastAPI passes {} as the input of a json_invalid error
        raise validation_failure(
            [
                {
                    "type": "json_invalid",
                    "loc": (exc.pos,),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from None
    except ValueError:  # UnicodeDecodeError: not text at all
        raise schema_error(UNPARSEABLE_BODY, None) from None
