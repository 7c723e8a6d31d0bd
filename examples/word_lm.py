"""A word-level language model in NumPy whose output layer never materialises its
logits: every step's loss and gradients come from
``xentfast.linear_cross_entropy_and_grad``, a chunk of tokens at a time.

The corpus is already on your disk: the triple-quoted strings (docstrings, mostly)
and the comments of the Python standard library's source files, found with regular
expressions (nothing is downloaded; the exact text depends on the Python version).
Every distinct word and punctuation mark of the training text is a class: some 34000
with CPython 3.11.

The model reads the previous ``--context`` tokens, looks them up in an embedding
table, concatenates the embeddings, applies one tanh layer, and scores every word of
the vocabulary as the next one with ``hidden @ W.T + b``.  It prints the held-out
perplexity (e^nats per token) before and after training, next to the unigram
baseline, and the most memory a training step allocates next to what the N×V
logits of one batch (and their gradient) would have needed.

    python examples/word_lm.py               # about a minute on an idle 2-core machine
    python examples/word_lm.py --steps 20    # shorter
"""
from __future__ import annotations

import argparse
import math
import re
import resource
import sys
import sysconfig
import time
import tracemalloc
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import xentfast

Floats = NDArray[np.float32]
Ints = NDArray[np.int64]

TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|[^\w\s]")
STRING = re.compile(r'"""(.*?)"""|\'\'\'(.*?)\'\'\'', re.S)
COMMENT = re.compile(r"^[ \t]*#[ \t]?(.*)$", re.M)
UNK, BOS = "<unk>", "<s>"


def stdlib_texts(max_files: int | None = None) -> list[str]:
    """The triple-quoted strings of the standard library's .py files, and each file's
    whole-line comments as one more text, in path order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    texts: list[str] = []
    for path in files[:max_files]:
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        texts += [m.group(1) or m.group(2) or "" for m in STRING.finditer(source)]
        texts.append("\n".join(COMMENT.findall(source)))
    return [t for t in texts if t.strip()]


def encode(texts: list[str], vocab: dict[str, int]) -> Ints:
    """Token ids of the texts, each text starting with BOS (words not in vocab: UNK)."""
    unk, bos = vocab[UNK], vocab[BOS]
    ids: list[int] = []
    for text in texts:
        ids.append(bos)
        ids += [vocab.get(tok, unk) for tok in TOKEN.findall(text)]
    return np.array(ids, dtype=np.int64)


def windows(ids: Ints, context: int, bos: int) -> tuple[Ints, Ints]:
    """(contexts, next tokens): every position's previous `context` ids (BOS-padded)."""
    padded = np.concatenate([np.full(context, bos, dtype=np.int64), ids])
    ctx = np.stack([padded[k:k + len(ids)] for k in range(context)], axis=1)
    return ctx, ids.copy()


class WordModel:
    """Embeddings of the last tokens -> tanh layer -> the output layer's features."""

    def __init__(self, vocab: int, context: int, dim: int, width: int,
                 rng: np.random.Generator) -> None:
        f32 = np.float32
        self.params: dict[str, Floats] = {
            "embedding": (rng.standard_normal((vocab, dim)) * 0.1).astype(f32),
            "w1": (rng.standard_normal((context * dim, width)) / math.sqrt(context * dim)).astype(f32),
            "b1": np.zeros(width, f32),
            "head": (rng.standard_normal((vocab, width)) / math.sqrt(width)).astype(f32),
            "head_bias": np.zeros(vocab, f32),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def features(self, ctx: Ints) -> tuple[Floats, Floats]:
        """(concatenated embeddings, tanh features) of a batch of contexts."""
        p = self.params
        x = p["embedding"][ctx].reshape(len(ctx), -1)
        return x, np.tanh(x @ p["w1"] + p["b1"])

    def loss_and_grads(self, ctx: Ints, target: Ints, chunk_size: int | None) -> float:
        p, g = self.params, self.grads
        x, h = self.features(ctx)
        loss, grad_h, _, _ = xentfast.linear_cross_entropy_and_grad(
            h, p["head"], target, linear_bias=p["head_bias"], chunk_size=chunk_size,
            out=(None, g["head"], g["head_bias"]))
        grad_pre = grad_h * (1.0 - h * h)                     # through tanh
        g["w1"][...] = x.T @ grad_pre
        g["b1"][...] = grad_pre.sum(axis=0)
        grad_x = (grad_pre @ p["w1"].T).reshape(ctx.shape + (-1,))
        g["embedding"][...] = 0
        np.add.at(g["embedding"], ctx, grad_x)
        return float(loss)

    def held_out_loss(self, ctx: Ints, target: Ints, batch: int) -> float:
        """Mean loss in nats per token, a batch at a time."""
        total = 0.0
        for start in range(0, len(target), batch):
            _, h = self.features(ctx[start:start + batch])
            total += xentfast.linear_cross_entropy(
                h, self.params["head"], target[start:start + batch],
                linear_bias=self.params["head_bias"], reduction="sum")
        return total / len(target)


class Adam:
    def __init__(self, params: dict[str, Floats], lr: float) -> None:
        self.lr, self.t = lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict[str, Floats], grads: dict[str, Floats]) -> None:
        self.t += 1
        b1, b2 = 0.9, 0.999
        lr = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for k, p in params.items():
            m, v, g = self.m[k], self.v[k], grads[k]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= lr * m / (np.sqrt(v) + 1e-8)


def peak_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument("--batch", type=int, default=1024, help="tokens per step")
    parser.add_argument("--context", type=int, default=3, help="previous tokens read")
    parser.add_argument("--dim", type=int, default=32, help="embedding size")
    parser.add_argument("--width", type=int, default=128, help="features D of the output layer")
    parser.add_argument("--held-out", type=int, default=20000,
                        help="held-out tokens evaluated (default 20000)")
    parser.add_argument("--chunk-size", type=int, default=512,
                        help="rows of logits held at once (default 512: half a batch)")
    parser.add_argument("--max-files", type=int, default=None,
                        help="read only this many source files (for quick runs)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam's step size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    texts = stdlib_texts(args.max_files)
    order = rng.permutation(len(texts))
    n_held = max(1, len(texts) // 10)
    held = [texts[i] for i in order[:n_held]]
    train = [texts[i] for i in order[n_held:]]
    words = sorted({tok for text in train for tok in TOKEN.findall(text)})
    vocab = {w: i for i, w in enumerate([UNK, BOS] + words)}
    train_ids, held_ids = encode(train, vocab), encode(held, vocab)
    bos = vocab[BOS]
    train_ctx, train_y = windows(train_ids, args.context, bos)
    held_ctx, held_y = windows(held_ids, args.context, bos)
    # BOS is never a next token to predict: it only pads the contexts
    keep = np.flatnonzero(held_y != bos)[:args.held_out]
    held_ctx, held_y = held_ctx[keep], held_y[keep]
    keep = train_y != bos
    train_ctx, train_y = train_ctx[keep], train_y[keep]
    n_vocab = len(vocab)
    print(f"corpus: {len(texts)} strings and comment blocks of the standard library, "
          f"{len(train_y)} training "
          f"tokens, {len(held_y)} held-out; vocabulary {n_vocab} words "
          f"({time.perf_counter() - t0:.1f} s)")

    counts = np.bincount(train_y, minlength=n_vocab).astype(np.float64) + 1.0
    unigram = -np.mean(np.log(counts[held_y] / counts.sum()))
    model = WordModel(n_vocab, args.context, args.dim, args.width, rng)
    eval_batch = 4096
    before = model.held_out_loss(held_ctx, held_y, eval_batch)
    print(f"held-out perplexity: untrained {math.exp(before):.0f}, unigram baseline "
          f"{math.exp(unigram):.0f}")

    opt = Adam(model.params, lr=args.lr)
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        pick = rng.integers(0, len(train_y), size=args.batch)
        loss = model.loss_and_grads(train_ctx[pick], train_y[pick], args.chunk_size)
        opt.step(model.params, model.grads)
        if step % max(1, args.steps // 5) == 0 or step == args.steps:
            print(f"step {step:4d}  train loss {loss:.3f}  ({time.perf_counter() - t0:.1f} s)")
    after = model.held_out_loss(held_ctx, held_y, eval_batch)
    print(f"held-out perplexity after {args.steps} steps: {math.exp(after):.1f} "
          f"({after:.3f} nats, {after / math.log(2):.3f} bits per token; unigram "
          f"{math.exp(unigram):.0f})")

    # one more step under tracemalloc (NumPy reports its arrays to it): the most
    # memory a training step holds at once beyond what exists between steps
    pick = rng.integers(0, len(train_y), size=args.batch)
    tracemalloc.start()
    model.loss_and_grads(train_ctx[pick], train_y[pick], args.chunk_size)
    step_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    logits_mib = args.batch * n_vocab * 4 / 2**20
    print(f"memory: a training step allocates at most {step_peak:.1f} MiB at once; the batch's "
          f"logits ({args.batch} x {n_vocab} float32) would be {logits_mib:.0f} MiB, "
          f"{2 * logits_mib:.0f} MiB with their gradient (output layer: "
          f"{n_vocab * args.width * 4 / 2**20:.0f} MiB of weights); peak RSS of this process "
          f"{peak_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
