"""A request core whose one profile is the precise-prefix scorer with a model's tokenizer.json,
over pool `default/pool` (model `m`, endpoints pod0 and pod1), its KV index bound and live."""

from __future__ import annotations

from pathlib import Path

from inferpool.request.core import Core, CoreConfig
from inferpool.scheduling.plugins.precise_prefix import PrecisePrefixCacheScorer
from inferpool.state import Criticality, Endpoint, ModelRoute, Pool
from inferpool.state.kvindex import KVBlockIndex, KVEventsSettings

POOL = "default/pool"


def precise_core(folder: Path, tokenizer_json: Path) -> tuple[Core, PrecisePrefixCacheScorer, KVBlockIndex]:
    config = folder / "picker.yaml"
    config.write_text(
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
        f"- type: precise-prefix-cache-scorer\n  parameters: {{tokenizer: '{tokenizer_json}'}}\n"
        "- type: max-score-picker\nschedulingProfiles:\n- name: default\n  plugins:\n"
        "  - pluginRef: precise-prefix-cache-scorer\n  - pluginRef: max-score-picker\n"
    )
    core = Core(CoreConfig(scheduler=config, scrape=None))
    store = core.datastore
    store.upsert_pool(Pool("default", "pool", {"app": "vllm"}, [8000]))
    store.upsert_model(ModelRoute("default", "m", "m", "pool", Criticality.CRITICAL))
    index = KVBlockIndex()
    for i in range(2):
        endpoint = store.upsert_endpoint(Endpoint(f"pod{i}", f"10.0.0.{i + 1}", 8000, POOL))
        index.set_live(KVEventsSettings().source(endpoint), True)
    scorer = next(p for p in core.scheduler_for(POOL).plugins() if isinstance(p, PrecisePrefixCacheScorer))
    scorer.bind_kv_index(index)
    return core, scorer, index
