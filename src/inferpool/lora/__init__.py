"""LoRA adapter syncer: keeps a vLLM server's runtime-loaded adapters matching a vLLMLoRAConfig."""

from inferpool.lora.backoff import BackoffPolicy
from inferpool.lora.syncer import AdapterState, LoRASyncer, SyncerOptions

__all__ = ["AdapterState", "BackoffPolicy", "LoRASyncer", "SyncerOptions"]
