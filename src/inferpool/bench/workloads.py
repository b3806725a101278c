"""Built-in workloads: each turns arrival times into a seeded, replayable request trace.

Nothing is downloaded: text is synthetic (`text.py`), lengths follow ShareGPT's shape
(lognormal), and every choice comes from one `random.Random(seed)`, so the same seed gives
the same trace byte for byte, which is what lets `compare` replay it to every contender.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from inferpool.bench.arrivals import RAMP_FRACTIONS, ramp_step
from inferpool.bench.text import lognormal_int, words
from inferpool.request.resolve import OBJECTIVE_HEADER
from inferpool.sim.profile import load_profile
from inferpool.tokenization import Tokenizer

WORKLOADS = (
    "sharegpt-like",
    "shared-prefix",
    "multi-lora",
    "criticality-overload",
    "multi-turn-chat",
    "agent-long-tail",
    "cache-pressure",
    "long-prompt",
    "long-answer",
)
COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
CRITICALITY_MIX = (("critical", 0.2), ("standard", 0.5), ("sheddable", 0.3))
# The InferenceObjective each class names in OBJECTIVE_HEADER, with its priority (compare writes them).
OBJECTIVE_PRIORITIES = {"critical": 1, "standard": 0, "sheddable": -1}


def request_classes(workload: str) -> tuple[str, ...]:
    """The request tags a workload's results are also broken down by (criticality classes, ramp steps)."""
    if workload == "criticality-overload":
        return tuple(name for name, _ in CRITICALITY_MIX)
    if workload == "cache-pressure":
        return CACHE_PRESSURE_STEPS
    return ()


def class_window_s(workload: str, duration_s: float) -> float | None:
    """The span each class's rates are measured over: a ramp step's own stretch of the arrivals
    (its requests arrive only then); None: the whole run (criticality classes arrive throughout)."""
    if workload == "cache-pressure":
        return duration_s / len(CACHE_PRESSURE_STEPS)
    return None


def _default_replica_kv_tokens() -> int:
    """One replica's KV cache in tokens under the default simulator profile (vLLM's blocks × block size)."""
    profile = load_profile("llama-3.1-8b-h100")
    return profile.num_gpu_blocks * profile.block_size


@dataclass(frozen=True)
class WorkloadOptions:
    """Knobs shared by the workloads; each workload reads the ones it needs."""

    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    stream: bool = True
    chat: bool = False  # sharegpt-like / shared-prefix / multi-lora: chat instead of completions
    groups: int = 150  # shared-prefix: distinct system prompts
    prompts_per_group: int = 5  # shared-prefix: questions per system prompt
    system_prompt_tokens: int = 2000
    question_tokens: int = 100
    output_tokens: int = 100  # shared-prefix and multi-turn-chat: fixed output length
    adapters: tuple[str, ...] = tuple(f"adapter-{i}" for i in range(8))  # multi-lora
    zipf_s: float = 1.1
    base_fraction: float = 0.2  # multi-lora: share of requests to the base model
    conversations: int = 50  # multi-turn-chat
    turn_tokens: int = 80  # multi-turn-chat: user turn length
    # cache-pressure: one replica's KV cache in tokens (the fleet's sim profile: blocks × block size)
    replica_kv_tokens: int = field(default_factory=_default_replica_kv_tokens)
    duration_s: float | None = None  # the trace's arrival window (TraceSpec sets it): ramp steps


@dataclass(frozen=True)
class BenchRequest:
    """One request of a trace: when to send it (seconds after start), where and what."""

    index: int
    at: float
    path: str
    body: dict[str, Any]
    tag: str  # the class this request belongs to (group, adapter, criticality) for breakdowns
    headers: dict[str, str] = field(default_factory=dict)


def build_trace(
    name: str, arrivals: list[float], seed: int, options: WorkloadOptions | None = None
) -> list[BenchRequest]:
    """The trace of workload `name` for these arrival times."""
    opts = options or WorkloadOptions()
    rng = random.Random(f"{name}:{seed}")
    builders = {
        "sharegpt-like": _sharegpt,
        "shared-prefix": _shared_prefix,
        "multi-lora": _multi_lora,
        "criticality-overload": _criticality,
        "multi-turn-chat": _multi_turn,
        "agent-long-tail": _agent_long_tail,
        "cache-pressure": _cache_pressure,
        "long-prompt": _long_prompt,
        "long-answer": _long_answer,
    }
    if name not in builders:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    return builders[name](arrivals, rng, opts)


def _body(opts: WorkloadOptions, model: str, prompt: str, max_tokens: int, chat: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "ignore_eos": True}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if opts.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _path(chat: bool) -> str:
    return CHAT if chat else COMPLETIONS


def _sharegpt_lengths(rng: random.Random) -> tuple[int, int]:
    # ShareGPT shape: input median ~150 tokens, output median ~128, both heavy-tailed.
    return lognormal_int(rng, 150, 1.0, 4, 4096), lognormal_int(rng, 128, 1.0, 1, 1024)


def _sharegpt(arrivals: list[float], rng: random.Random, opts: WorkloadOptions) -> list[BenchRequest]:
    out = []
    for i, at in enumerate(arrivals):
        n_in, n_out = _sharegpt_lengths(rng)
        body = _body(opts, opts.model, words(n_in, rng), n_out, opts.chat)
        out.append(BenchRequest(i, at, _path(opts.chat), body, "base"))
    return out


def _shared_prefix(arrivals: list[float], rng: random.Random, opts: WorkloadOptions) -> list[BenchRequest]:
    """inference-perf's shared_prefix: `groups` long system prompts, `prompts_per_group` questions each."""
    systems = [f"[group {g}] " + words(opts.system_prompt_tokens, rng) for g in range(opts.groups)]
    questions = [
        [words(opts.question_tokens, rng) for _ in range(opts.prompts_per_group)] for _ in range(opts.groups)
    ]
    out = []
    for i, at in enumerate(arrivals):
        g = rng.randrange(opts.groups)
        q = questions[g][rng.randrange(opts.prompts_per_group)]
        if opts.chat:
            body = _body(opts, opts.model, q, opts.output_tokens, True)
            body["messages"].insert(0, {"role": "system", "content": systems[g]})
        else:
            body = _body(opts, opts.model, systems[g] + "\n" + q, opts.output_tokens, False)
        out.append(BenchRequest(i, at, _path(opts.chat), body, f"group-{g}"))
    return out


def zipf_weights(n: int, s: float) -> list[float]:
    raw = [1.0 / (k + 1) ** s for k in range(n)]
    total = sum(raw)
    return [w / total for w in raw]


def _multi_lora(arrivals: list[float], rng: random.Random, opts: WorkloadOptions) -> list[BenchRequest]:
    """A share `base_fraction` to the base model, the rest Zipf(s) over the adapters (adapter-0 hottest)."""
    weights = zipf_weights(len(opts.adapters), opts.zipf_s)
    out = []
    for i, at in enumerate(arrivals):
        model = opts.model
        if opts.adapters and rng.random() >= opts.base_fraction:
            model = rng.choices(opts.adapters, weights)[0]
        n_in, n_out = _sharegpt_lengths(rng)
        body = _body(opts, model, words(n_in, rng), n_out, opts.chat)
        out.append(BenchRequest(i, at, _path(opts.chat), body, model))
    return out


def _criticality(arrivals: list[float], rng: random.Random, opts: WorkloadOptions) -> list[BenchRequest]:
    """ShareGPT-shaped requests, 20 % critical / 50 % standard / 30 % sheddable.

    The class travels in the `x-gateway-inference-objective` header naming an InferenceObjective
    (priority 1 / 0 / -1), so the model name stays the base model and routers that ignore the
    header still serve every request; drive it past capacity with `--rate`.
    """
    names = [n for n, _ in CRITICALITY_MIX]
    weights = [w for _, w in CRITICALITY_MIX]
    out = []
    for i, at in enumerate(arrivals):
        cls = rng.choices(names, weights)[0]
        n_in, n_out = _sharegpt_lengths(rng)
        body = _body(opts, opts.model, words(n_in, rng), n_out, opts.chat)
        out.append(BenchRequest(i, at, _path(opts.chat), body, cls, {OBJECTIVE_HEADER: cls}))
    return out


def _multi_turn(arrivals: list[float], rng: random.Random, opts: WorkloadOptions) -> list[BenchRequest]:
    """Chats that grow: each arrival is the next turn of a random conversation, history included.

    The assistant's earlier answers are synthetic text of the requested length (the trace is
    built before any reply exists); the prefix a router can exploit is the same either way.
    """
    history: list[list[dict[str, str]]] = [
        [{"role": "system", "content": f"[conversation {c}] " + words(200, rng)}]
        for c in range(opts.conversations)
    ]
    out = []
    for i, at in enumerate(arrivals):
        c = rng.randrange(opts.conversations)
        history[c].append({"role": "user", "content": words(opts.turn_tokens, rng)})
        body = _body(opts, opts.model, "", opts.output_tokens, True)
        body["messages"] = [dict(m) for m in history[c]]
        turn = sum(1 for m in history[c] if m["role"] == "user")
        out.append(BenchRequest(i, at, CHAT, body, f"turn-{min(turn, 10)}"))
        history[c].append({"role": "assistant", "content": words(opts.output_tokens, rng)})
        if len(history[c]) > 41:  # a conversation ends after 20 turns; a new one starts in its slot
            history[c] = history[c][:1]
    return out


# agent-long-tail: fixed here, before any run, and never used to tune a profile (held out).
AGENT_TOOLSETS = 24  # distinct tool-schema preambles
AGENT_TOOLSET_TOKENS = 1500  # each preamble's length
AGENT_TOOLSET_ZIPF = 1.0  # popularity of the preambles
AGENT_PLAIN_FRACTION = 0.3  # requests without a preamble (plain chat)


def _agent_long_tail(arrivals: list[float], rng: random.Random, opts: WorkloadOptions) -> list[BenchRequest]:
    """Agents calling tools: 70 % of requests start with one of 24 tool-schema preambles of
    1,500 tokens (Zipf(1.0) popularity), the rest are plain; the task text is ShareGPT-shaped
    (lognormal, median 200 tokens) and the answers have a long tail (lognormal median 60,
    sigma 1.6, up to 2,048 tokens: mostly short tool calls, now and then a long report).
    Meant with `--arrival bursty`. Its shape was fixed before any run and no profile was
    tuned on it, so it is the held-out workload of docs/benchmarks.md."""
    preambles = [
        f"[toolset {t}] You can call these tools. " + words(AGENT_TOOLSET_TOKENS, rng)
        for t in range(AGENT_TOOLSETS)
    ]
    weights = zipf_weights(AGENT_TOOLSETS, AGENT_TOOLSET_ZIPF)
    out = []
    for i, at in enumerate(arrivals):
        task = words(lognormal_int(rng, 200, 1.0, 8, 4096), rng)
        n_out = lognormal_int(rng, 60, 1.6, 1, 2048)
        if rng.random() < AGENT_PLAIN_FRACTION:
            prompt, tag = task, "plain"
        else:
            t = rng.choices(range(AGENT_TOOLSETS), weights)[0]
            prompt, tag = preambles[t] + "\n" + task, f"toolset-{t}"
        out.append(BenchRequest(i, at, COMPLETIONS, _body(opts, opts.model, prompt, n_out, False), tag))
    return out


# cache-pressure: fixed by issue 16 and committed before any run; no profile is tuned on it.
# The fleet's KV cache is oversubscribed, as in llm-d's precise-scheduling benchmark (150
# tenants × 6k-token contexts on 8 vLLM pods): the hot set is 6× one replica's KV cache, which
# on the 4-replica fleet it is meant for (`--fleet 4`) is 1.5× the fleet's.
CACHE_PRESSURE_FLEET = 4
CACHE_PRESSURE_CONTEXT_TOKENS = 6000
CACHE_PRESSURE_REPLICA_MULTIPLE = 6  # hot set / one replica's KV cache (= 1.5 × a fleet of 4)
CACHE_PRESSURE_ZIPF = 0.8  # tenant popularity
CACHE_PRESSURE_QUESTION_TOKENS = 100
CACHE_PRESSURE_ANSWER_TOKENS = 200
CACHE_PRESSURE_STEPS = tuple(f"step-{i + 1}" for i in range(len(RAMP_FRACTIONS)))


def cache_pressure_tenants(replica_kv_tokens: int) -> int:
    """T such that T contexts of 6,000 tokens are 6× one replica's KV cache (rounded to the nearest)."""
    if replica_kv_tokens <= 0:
        raise ValueError(f"replica KV cache must be positive, got {replica_kv_tokens} tokens")
    return max(1, round(CACHE_PRESSURE_REPLICA_MULTIPLE * replica_kv_tokens / CACHE_PRESSURE_CONTEXT_TOKENS))


def sim_token_text(tokens: int, rng: random.Random, tokenizer: Tokenizer) -> str:
    """Random words that are `tokens` tokens (±1) for the simulated fleet's tokenizer.

    `words(n)` is only ≈ n tokens (≈1.14 n for the sim's tokenizer); where the hot set is
    sized against the KV cache, the context must be the length the issue fixes.
    """
    out: list[str] = []
    count = 0
    lengths: dict[str, int] = {}  # a word (after a space or first) -> its tokens: the words recur
    while count < tokens:
        for word in words(max(1, tokens - count), rng).split(" "):
            if count >= tokens:
                break
            piece = (" " if out else "") + word
            length = lengths.get(piece)
            if length is None:
                length = lengths[piece] = len(tokenizer.encode(piece, add_bos=False))
            count += length
            out.append(word)
    return " ".join(out)


def _cache_pressure(arrivals: list[float], rng: random.Random, opts: WorkloadOptions) -> list[BenchRequest]:
    """T tenants, each with its own 6,000-token context; Zipf(0.8) popularity; each request is
    that context, then a fresh 100-token question, answered in exactly 200 tokens (completions).

    T comes from the fleet's KV capacity (`replica_kv_tokens`, from the sim profile the fleet
    runs: 448 tenants on the default llama-3.1-8b-h100 profile's 448,000 tokens, 66 with
    `--kv-blocks 4096`). Meant with `--fleet 4 --arrival ramp --rate C`, where C is round-robin's
    capacity on that fleet: the highest rate at which round-robin keeps ≥ 90 % goodput (SLO
    attainment), measured by a Poisson sweep with seed 100 (never a reported seed) before the
    comparison. The ramp then offers 20, 45, 70, 95 and 120 % of C in five equal steps, and
    each request is tagged with its step, so results come per step.
    """
    tenants = cache_pressure_tenants(opts.replica_kv_tokens)
    sim = Tokenizer(remember_pieces=False)
    # "[tenant t]" is 3 tokens of the 6,000
    contexts = [
        f"[tenant {t}] " + sim_token_text(CACHE_PRESSURE_CONTEXT_TOKENS - 3, rng, sim) for t in range(tenants)
    ]
    weights = zipf_weights(tenants, CACHE_PRESSURE_ZIPF)
    cumulative = list(itertools.accumulate(weights))
    span = (
        opts.duration_s if opts.duration_s else (math.nextafter(arrivals[-1], math.inf) if arrivals else 1.0)
    )
    out = []
    for i, at in enumerate(arrivals):
        t = rng.choices(range(tenants), cum_weights=cumulative)[0]
        prompt = contexts[t] + "\n" + sim_token_text(CACHE_PRESSURE_QUESTION_TOKENS, rng, sim)
        body = _body(opts, opts.model, prompt, CACHE_PRESSURE_ANSWER_TOKENS, False)
        out.append(BenchRequest(i, at, COMPLETIONS, body, CACHE_PRESSURE_STEPS[ramp_step(at, span)]))
    return out


# long-prompt and long-answer: the prefill/decode benchmark's pair (issue 15), fixed here before
# any run and never used to tune a profile. Prompt and answer lengths are exact in the simulated
# fleet's tokens, so "8k in / 256 out" is what the engines see.
LONG_PROMPT_DOCUMENT_TOKENS = 4096  # a shared document: the prefix a prefix-aware prefill pick can reuse
LONG_PROMPT_OWN_TOKENS = 4096  # each request's own text after the document: 8,192 tokens in all
LONG_PROMPT_ANSWER_TOKENS = 256
# The documents together are 1.5x one replica's KV cache: they fit in two prefill replicas'
# caches when each replica keeps its own half (a prefix-aware pick), and thrash one replica's
# cache when it sees all of them (a random pick, or a single prefill replica).
LONG_PROMPT_REPLICA_MULTIPLE = 1.5
LONG_ANSWER_SYSTEM_PROMPTS = 4  # shared system prompts, equally popular
LONG_ANSWER_SYSTEM_TOKENS = 192
LONG_ANSWER_QUESTION_TOKENS = 64  # 256 tokens in
# 2,048 in the example; 1,024 here so that a run of the same length holds twice the
# requests (tokens per second, what loads this machine, are set by the batch, not the length).
LONG_ANSWER_ANSWER_TOKENS = 1024


def _labelled_text(label: str, tokens: int, rng: random.Random, tokenizer: Tokenizer) -> str:
    """`label`, then random words: `tokens` tokens (±1) in all for the simulated fleet's tokenizer."""
    rest = tokens - len(tokenizer.encode(label, add_bos=False))
    return label + " " + sim_token_text(rest, rng, tokenizer)


def long_prompt_documents(replica_kv_tokens: int) -> int:
    """How many shared documents long-prompt draws from: 1.5x one replica's KV cache in tokens."""
    if replica_kv_tokens <= 0:
        raise ValueError(f"replica KV cache must be positive, got {replica_kv_tokens} tokens")
    return max(1, round(LONG_PROMPT_REPLICA_MULTIPLE * replica_kv_tokens / LONG_PROMPT_DOCUMENT_TOKENS))


def _long_prompt(arrivals: list[float], rng: random.Random, opts: WorkloadOptions) -> list[BenchRequest]:
    """Long prompts, short answers (8,192 tokens in, 256 out, completions): each request is one of
    D shared documents of 4,096 tokens (equally popular), then 4,096 tokens of its own. D comes
    from the fleet's KV cache (`long_prompt_documents`): 48 with `--kv-blocks 8192`."""
    sim = Tokenizer(remember_pieces=False)
    documents = long_prompt_documents(opts.replica_kv_tokens)
    texts = [
        _labelled_text(f"[document {d}]", LONG_PROMPT_DOCUMENT_TOKENS, rng, sim) for d in range(documents)
    ]
    out = []
    for i, at in enumerate(arrivals):
        d = rng.randrange(documents)
        prompt = texts[d] + "\n" + sim_token_text(LONG_PROMPT_OWN_TOKENS - 1, rng, sim)  # "\n": 1 token
        body = _body(opts, opts.model, prompt, LONG_PROMPT_ANSWER_TOKENS, False)
        out.append(BenchRequest(i, at, COMPLETIONS, body, f"document-{d}"))
    return out


def _long_answer(arrivals: list[float], rng: random.Random, opts: WorkloadOptions) -> list[BenchRequest]:
    """Short prompts, long answers (256 tokens in, 1,024 out, completions): one of 4 shared system
    prompts of 192 tokens, then a 64-token question of its own."""
    sim = Tokenizer(remember_pieces=False)
    systems = [
        _labelled_text(f"[system {k}]", LONG_ANSWER_SYSTEM_TOKENS, rng, sim)
        for k in range(LONG_ANSWER_SYSTEM_PROMPTS)
    ]
    out = []
    for i, at in enumerate(arrivals):
        k = rng.randrange(LONG_ANSWER_SYSTEM_PROMPTS)
        prompt = systems[k] + "\n" + sim_token_text(LONG_ANSWER_QUESTION_TOKENS - 1, rng, sim)
        body = _body(opts, opts.model, prompt, LONG_ANSWER_ANSWER_TOKENS, False)
        out.append(BenchRequest(i, at, COMPLETIONS, body, f"system-{k}"))
    return out
