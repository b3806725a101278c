"""The few vLLM admin calls the syncer needs: health, model list, adapter load and unload."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import orjson


class AdapterOpError(Exception):
    """A load/unload/list call that failed, with the server's status (0 for no answer at all)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ServedModels:
    """What GET /v1/models says is loaded: base models (parent null) and adapters (parent set)."""

    base: frozenset[str]
    adapters: frozenset[str]


class VLLMAdminClient:
    """Talks to one vLLM (or `inferpool sim`) server at base_url, e.g. http://127.0.0.1:8000."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def healthy(self) -> bool:
        try:
            async with self._session.get(
                f"{self.base_url}/health", timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                await resp.read()
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def models(self) -> ServedModels:
        body = await self._call("GET", "/v1/models", None)
        try:
            entries = orjson.loads(body)["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise AdapterOpError(200, f"unexpected /v1/models body: {body[:200]!r}") from exc
        base = frozenset(e["id"] for e in entries if not e.get("parent"))
        adapters = frozenset(e["id"] for e in entries if e.get("parent"))
        return ServedModels(base=base, adapters=adapters)

    async def load(self, name: str, path: str, base_model: str | None) -> None:
        payload: dict[str, str] = {"lora_name": name, "lora_path": path}
        if base_model:
            payload["base_model_name"] = base_model
        await self._call("POST", "/v1/load_lora_adapter", payload)

    async def unload(self, name: str) -> None:
        await self._call("POST", "/v1/unload_lora_adapter", {"lora_name": name})

    async def _call(self, method: str, path: str, payload: dict[str, str] | None) -> bytes:
        data = orjson.dumps(payload) if payload is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            async with self._session.request(
                method, f"{self.base_url}{path}", data=data, headers=headers, timeout=self._timeout
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise AdapterOpError(resp.status, _error_message(body))
                return body
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AdapterOpError(0, f"{method} {path}: {exc!r}") from exc


def _error_message(body: bytes) -> str:
    """vLLM answers {"error": {"message": ...}}; fall back to the raw text."""
    try:
        err = orjson.loads(body)["error"]
        return f"{err.get('type')}: {err.get('message')}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:300].decode(errors="replace")
