"""Which model name a request is counted under in the metrics and on the dashboard.

The name comes from the client. Declared names (an InferenceModel of the pool) are counted under
their own name. So are the first `limit` undeclared names: a pool without InferenceModels passes
any name through to its servers. Every later undeclared name counts as OTHER_MODELS. Without the
limit, a client that sends made-up names would add a dozen series to /metrics and a row to the
dashboard per name, without bound.
"""

from __future__ import annotations

from inferpool.state import Datastore

OTHER_MODELS = "(other)"
UNDECLARED_LIMIT = 100


class ModelLabels:
    """One per process: the names given their own label so far (kept for good). A name under
    OTHER_MODELS gets its own label once an InferenceModel declares it; Observation counts a
    request routed before that down under OTHER_MODELS still."""

    def __init__(self, datastore: Datastore, limit: int = UNDECLARED_LIMIT) -> None:
        self._datastore = datastore
        self._limit = limit
        self._named: set[str] = {""}  # "": a request that names no model (one label)
        self._undeclared = 0

    def of(self, pool: str | None, model: str) -> str:
        if model in self._named:
            return model
        declared = pool is not None and self._datastore.model_for(pool, model) is not None
        if not declared:
            if self._undeclared >= self._limit:
                return OTHER_MODELS
            self._undeclared += 1
        self._named.add(model)
        return model
