"""An example screening service for GuardPolicy's webhook: a small classifier in numpy.

    pip install 'inferpool[screener]'
    python examples/screener/screener.py train --data prompts.jsonl --model model.npz
    python examples/screener/screener.py serve --model model.npz --port 9500

The webhook contract (docs/security.md): POST {"stage", "text", "model", "policy"} ->
{"action": "allow" | "block", "reason", "score"}. The model is logistic regression over
hashed character 3-5-grams (the hashing trick: no vocabulary file, fixed size). Weights
are read from a local .npz file; nothing is downloaded. A bigger model (an ONNX export of a
fine-tuned classifier, say) fits behind the same `Classifier.score` interface.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiohttp import web

DIMENSIONS = 1 << 14
NGRAMS = (3, 4, 5)


def features(text: str, dimensions: int = DIMENSIONS) -> np.ndarray:
    """L2-normalised counts of hashed character n-grams (crc32: stable across processes)."""
    vector = np.zeros(dimensions, dtype=np.float32)
    padded = f" {text.lower()} "
    for n in NGRAMS:
        for i in range(len(padded) - n + 1):
            vector[zlib.crc32(padded[i : i + n].encode()) % dimensions] += 1.0
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


@dataclass(frozen=True)
class Classifier:
    weights: np.ndarray
    bias: float
    threshold: float = 0.5

    def score(self, text: str) -> float:
        z = float(features(text, self.weights.shape[0]) @ self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path: Path) -> None:
        np.savez(path, weights=self.weights, bias=np.float32(self.bias), threshold=np.float32(self.threshold))

    @classmethod
    def load(cls, path: Path) -> Classifier:
        if not path.is_file():
            raise FileNotFoundError(f"no model at {path}: train one with `screener.py train` first")
        with np.load(path) as data:
            return cls(data["weights"], float(data["bias"]), float(data["threshold"]))


def train(
    texts: list[str], labels: list[int], epochs: int = 300, rate: float = 2.0, l2: float = 1e-4
) -> Classifier:
    """Plain batch gradient descent on the logistic loss (small data: seconds)."""
    if not texts or len(texts) != len(labels) or set(labels) - {0, 1}:
        raise ValueError("train needs texts with labels 0 (benign) or 1 (harmful), one per text")
    x = np.stack([features(t) for t in texts])
    y = np.asarray(labels, dtype=np.float32)
    w = np.zeros(x.shape[1], dtype=np.float32)
    b = 0.0
    for _ in range(epochs):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        grad = p - y
        w -= rate * (x.T @ grad / len(y) + l2 * w)
        b -= rate * float(grad.mean())
    return Classifier(w, b)


def app(classifier: Classifier) -> web.Application:
    async def screen(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            text = body["text"]
            if not isinstance(text, str):
                raise TypeError("text must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        started = time.perf_counter()
        score = classifier.score(text)
        action = "block" if score >= classifier.threshold else "allow"
        return web.json_response(
            {
                "action": action,
                "reason": f"classifier score {score:.2f}",
                "score": score,
                "micros": round((time.perf_counter() - started) * 1e6),
            }
        )

    application = web.Application()
    application.router.add_post("/screen", screen)
    return application


def _load_jsonl(path: Path) -> tuple[list[str], list[int]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["text"] for r in rows], [1 if r["label"] == "harmful" else 0 for r in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="example GuardPolicy webhook with a numpy classifier")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fit the classifier on labelled JSON lines ({text, label})")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--model", type=Path, required=True)
    s = sub.add_parser("serve", help="answer the webhook")
    s.add_argument("--model", type=Path, required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=9500)
    args = parser.parse_args(argv)
    if args.command == "train":
        texts, labels = _load_jsonl(args.data)
        train(texts, labels).save(args.model)
        print(f"trained on {len(texts)} texts -> {args.model}")
        return
    try:
        classifier = Classifier.load(args.model)
    except FileNotFoundError as exc:
        sys.exit(str(exc))
    url = f"http://{args.host}:{args.port}/screen"
    web.run_app(
        app(classifier), host=args.host, port=args.port, print=lambda _: print(f"screener {url}", flush=True)
    )


if __name__ == "__main__":
    main()
