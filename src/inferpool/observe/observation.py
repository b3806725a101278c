"""The one observation path: every request record feeds metrics, the decision log, the access log
and, when tracing is on, the span exporter.

Both data planes build one `Observation` and attach it to their core; nothing else watches
requests, so the two planes count (the running-requests gauge included) the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from inferpool.admission.flowcontrol import FlowController
from inferpool.observe.accesslog import AccessLog
from inferpool.observe.decisions import DashboardConfig, DecisionLog
from inferpool.observe.metrics import GatewayMetrics
from inferpool.observe.model_labels import OTHER_MODELS, ModelLabels
from inferpool.observe.tracing import Tracing
from inferpool.records import RequestRecord
from inferpool.request.director import Director, RoutedRequest
from inferpool.state import Datastore


class Observation:
    """Metrics, decision log and (optionally) access log and traces of one process."""

    def __init__(
        self,
        datastore: Datastore,
        *,
        decisions_kept: int = 200,
        access_log: AccessLog | None = None,
        dashboard: DashboardConfig | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.labels = ModelLabels(datastore)
        self._other_in_flight: set[str] = set()  # request ids routed under OTHER_MODELS
        self.metrics = GatewayMetrics(datastore)
        self.decisions = DecisionLog(decisions_kept, dashboard)
        self.access_log = access_log
        self.tracing = tracing  # None: tracing off, no subscriber at all
        self._detach: list[Callable[[], None]] = []

    def attach(self, director: Director, flow_control: FlowController | None = None) -> None:
        self._detach.append(director.subscribe_routed(self._routed))
        self._detach.append(director.subscribe(self.record))
        if self.tracing is not None:
            self._detach.append(director.subscribe(self.tracing.export))
        if flow_control is not None:
            self._detach.append(self.metrics.watch_flow_control(flow_control))

    def detach(self) -> None:
        for undo in self._detach:
            undo()
        self._detach.clear()

    def _routed(self, routed: RoutedRequest) -> None:
        label = self.labels.of(routed.pool, routed.incoming_model)
        if label == OTHER_MODELS:
            # counted down under the same label even if an InferenceModel names it meanwhile
            self._other_in_flight.add(routed.request_id)
        self.metrics.request_routed(label)

    def record(self, record: RequestRecord) -> None:
        """One finished request: pool metrics and decisions for pool traffic, a log line for all."""
        if record.pool is not None:
            if self._other_in_flight and record.request_id in self._other_in_flight:
                self._other_in_flight.discard(record.request_id)
                label = OTHER_MODELS
            else:
                label = self.labels.of(record.pool, record.model)
            if record.model or record.request_bytes or record.status >= 400:
                # a body-less request that went well (GET /health through the pool) is no
                # inference request: upstream's picker counts none; the dashboard still lists it
                self.metrics.observe(record, label)
            self.decisions.add(record, label)
        if self.access_log is not None:
            self.access_log.write(record)
