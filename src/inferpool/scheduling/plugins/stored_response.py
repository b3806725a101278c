"""stored-response-filter: send a Responses API follow-up to the server that stored its predecessor.

A `/v1/responses` request may continue an earlier answer by naming it (`previous_response_id`).
vLLM keeps stored answers in the memory of the server that made them (with
VLLM_ENABLE_RESPONSES_API_STORE=1), and any other server answers 404 "Response with id '…' not
found." So the filter remembers which endpoint answered each response id (read off the answer
by the request's accounting: the JSON body's `id`, or a stream's `response.created` event) and
keeps only that endpoint for a request that names it. Each answer in a chain is remembered in
turn, so a whole conversation stays where it began. A request that names the id in its path
and has no body (`GET /v1/responses/{id}`, `POST /v1/responses/{id}/cancel`) goes there too
(`endpoint_for_path`).

Soft: an id it never saw (made before this gateway started, or through another replica of the
picker) or whose endpoint is no candidate (gone, unready, outside the subset hint) leaves the
candidates unchanged; the server then answers as vLLM does. The memory is a bounded LRU
(`maxResponses`), one entry per answered response; an endpoint that leaves the pool takes its
entries with it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

from pydantic import Field

from inferpool.records import RequestRecord
from inferpool.scheduling.plugins.params import Params
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


class StoredResponseParams(Params):
    max_responses: int = Field(
        default=65536, ge=1, description="response ids remembered (least recently used forgotten first)"
    )


def previous_response_id(req: SchedulingRequest) -> str | None:
    body = req.body
    if body is None:
        return None
    value = body.get("previous_response_id")
    return value if isinstance(value, str) and value else None


STORING_API = "responses"  # the only API whose answers carry an id a later request names
# A stored response named in the path: retrieve, cancel, its input items (OpenAI's Responses API)
_BY_ID = re.compile(r"/v1/responses/([^/?]+)(?:/(?:cancel|input_items))?/?(?:\?.*)?$")


def _stores(req: SchedulingRequest) -> bool:
    """Whether the answer may be stored: a Responses request not sent with store=false (by its
    path; without one, by its `input`, which an embeddings request has too)."""
    body = req.body
    if body is None or (req.api and req.api != STORING_API):
        return False
    return "input" in body and body.get("store", True) is not False


@dataclass
class StoredResponseFilter:
    params: StoredResponseParams = field(default_factory=StoredResponseParams)
    name: str = "stored-response-filter"
    soft: bool = True
    answer_kinds: frozenset[str] = frozenset({STORING_API})  # the path tells before the body is read
    _where: OrderedDict[str, str] = field(default_factory=OrderedDict)  # response id -> endpoint name

    def filter(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        previous = previous_response_id(req)
        if previous is None:
            return endpoints
        name = self._where.get(previous)
        if name is None:
            return endpoints
        self._where.move_to_end(previous)
        kept = [e for e in endpoints if e.name == name]
        return kept or endpoints

    def needs_answer(self, req: SchedulingRequest) -> bool:
        """Whether this request's answer must be read (its id learnt): the picker asks Envoy for it."""
        return _stores(req)

    def on_finished(self, req: SchedulingRequest, endpoint: Endpoint, record: RequestRecord) -> None:
        if record.response_id is None or not _stores(req):
            return
        self._where[record.response_id] = endpoint.name
        self._where.move_to_end(record.response_id)
        while len(self._where) > self.params.max_responses:
            self._where.popitem(last=False)

    def endpoint_for_path(self, path: str) -> str | None:
        """Where the response a body-less request names in its path was stored, if remembered."""
        found = _BY_ID.search(path)
        if found is None:
            return None
        name = self._where.get(found.group(1))
        if name is not None:
            self._where.move_to_end(found.group(1))
        return name

    def on_endpoint_removed(self, name: str) -> None:
        for response_id in [r for r, e in self._where.items() if e == name]:
            del self._where[response_id]

    def remembered(self) -> int:
        return len(self._where)
