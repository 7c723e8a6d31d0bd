"""A character-level language model in NumPy, trained with xentfast, on text that is
already on your disk: the docstrings of a fixed list of Python standard-library modules,
read at run time with ``inspect`` (nothing is downloaded; the exact text depends a
little on the Python version).

The model reads the previous ``--context`` characters, looks each one up in an
embedding table, concatenates the embeddings and feeds them to the MLP of ``_mlp.py``,
whose logits score every character of the vocabulary as the next one.  Each step's
loss and gradient come from one fused call, ``xentfast.cross_entropy_and_grad``.

It reports the validation cross-entropy per character in nats and in bits, and the
perplexity (e^nats = 2^bits: the number of equally likely next characters the model is
in effect choosing between), next to two baselines, and then samples text at two
temperatures: the logits are divided by T before the softmax, so T < 1 sharpens the
distribution (safer, more repetitive text) and T > 1 flattens it (more surprising text,
more misspellings).

    python examples/char_lm.py              # about 5 s
    python examples/char_lm.py --quick      # a few seconds, for smoke tests
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import time

# The matrices here are small (128 x 256): threads inside BLAS buy nothing but
# synchronisation, and on a busy machine their spin-waiting can make every product ten
# times slower.  One BLAS thread, unless the shell says otherwise; set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from numpy.typing import NDArray

import xentfast  # noqa: E402
from _mlp import MLP, Adam, Floats, Ints  # noqa: E402

MODULES = ("abc", "argparse", "collections", "contextlib", "csv", "dataclasses",
           "datetime", "functools", "heapq", "inspect", "itertools", "json", "logging",
           "pathlib", "random", "re", "shutil", "string", "tempfile", "textwrap",
           "threading", "typing", "unittest", "urllib.parse", "zipfile")


def stdlib_docstrings(modules: tuple[str, ...] = MODULES) -> list[str]:
    """The docstrings of the modules and of their public classes, methods and
    functions, each once."""
    seen: set[str] = set()
    docs: list[str] = []

    def add(obj: object) -> None:
        doc = inspect.getdoc(obj)
        if doc and doc not in seen:
            seen.add(doc)
            docs.append(doc)

    for name in modules:
        module = importlib.import_module(name)
        add(module)
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                add(obj)
            elif inspect.isclass(obj):
                add(obj)
                for member_name, member in sorted(vars(obj).items()):
                    if not member_name.startswith("_") and inspect.isfunction(member):
                        add(member)
    return docs


class CharModel:
    """Embeddings of the last `context` characters -> MLP -> next-character logits."""

    def __init__(self, vocab: int, context: int, dim: int, hidden: int,
                 rng: np.random.Generator) -> None:
        self.embedding = (rng.standard_normal((vocab, dim)) * 0.5).astype(np.float32)
        self.mlp = MLP([context * dim, hidden, vocab], rng)
        self._ids: Ints = np.empty((0, context), dtype=np.int64)

    @property
    def params(self) -> list[Floats]:
        return [self.embedding] + self.mlp.params

    def forward(self, ids: Ints) -> Floats:
        self._ids = ids
        x = self.embedding[ids].reshape(len(ids), -1)
        return self.mlp.forward(x)

    def backward(self, dlogits: Floats) -> list[Floats]:
        grads, dx = self.mlp.backward(dlogits)
        dembedding = np.zeros_like(self.embedding)
        np.add.at(dembedding, self._ids, dx.reshape(*self._ids.shape, -1))
        return [dembedding] + grads


def windows(codes: Ints, positions: NDArray[np.intp], context: int) -> tuple[Ints, Ints]:
    """The `context` characters before each position, and the character there."""
    offsets = np.arange(-context, 0)
    return codes[positions[:, None] + offsets], codes[positions]


def validation_loss(model: CharModel, codes: Ints, context: int,
                    batch: int = 8192) -> float:
    """Mean cross-entropy (nats per character) over every position of `codes`."""
    positions = np.arange(context, len(codes))
    total = 0.0
    for start in range(0, len(positions), batch):
        ids, target = windows(codes, positions[start:start + batch], context)
        total += xentfast.cross_entropy(model.forward(ids), target, reduction="sum")
    return total / len(positions)


def sample(model: CharModel, prompt: str, alphabet: str, context: int, length: int,
           temperature: float, rng: np.random.Generator) -> tuple[str, float]:
    """`length` characters after `prompt` at `temperature`, and the mean entropy
    (bits) of the distributions they were drawn from."""
    index = {c: i for i, c in enumerate(alphabet)}
    codes = [index.get(c, 0) for c in prompt.rjust(context)]
    start = len(codes)
    entropy = 0.0
    for _ in range(length):
        logits = model.forward(np.array([codes[-context:]], dtype=np.int64))[0]
        probs = xentfast.softmax(logits / np.float32(temperature)).astype(np.float64)
        entropy -= float(np.sum(probs * np.log2(np.maximum(probs, 1e-30))))
        codes.append(int(rng.choice(len(probs), p=probs / probs.sum())))
    return "".join(alphabet[c] for c in codes[start:]), entropy / length


def main(argv: list[str] | None = None) -> None:
    # The whole first paragraph of the module docstring (its first line alone stops
    # mid-sentence), without the reST markup.
    summary = " ".join(__doc__.split("\n\n")[0].split()).replace("``", "")
    parser = argparse.ArgumentParser(description=summary)
    parser.add_argument("--steps", type=int, default=4000,
                        help="training steps (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="300 steps and short samples (a smoke test, not a model)")
    parser.add_argument("--context", type=int, default=8,
                        help="characters the model reads before each prediction "
                             "(default: %(default)s)")
    parser.add_argument("--dim", type=int, default=16,
                        help="size of each character's embedding (default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=256,
                        help="width of the MLP's hidden layer (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="sequences per training step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3,
                        help="Adam's learning rate (default: %(default)s)")
    parser.add_argument("--temperatures", type=float, nargs=2, default=[0.5, 1.2],
                        metavar=("LOW", "HIGH"),
                        help="the two sampling temperatures (default: 0.5 1.2)")
    parser.add_argument("--prompt", default="Return the ",
                        help="text the samples start from (default: %(default)r)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the weights, batches and samples (default: %(default)s)")
    args = parser.parse_args(argv)
    steps = 300 if args.quick else args.steps
    sample_length = 80 if args.quick else 300

    docs = stdlib_docstrings()
    # Every tenth docstring is held out for validation: the same kind of text, never
    # seen in training.
    train_text = "\n\n".join(d for i, d in enumerate(docs) if i % 10 != 9)
    val_text = "\n\n".join(d for i, d in enumerate(docs) if i % 10 == 9)
    alphabet = "".join(sorted(set(train_text + val_text)))
    lookup = np.zeros(max(map(ord, alphabet)) + 1, dtype=np.int64)
    lookup[[ord(c) for c in alphabet]] = np.arange(len(alphabet))

    def encode(text: str) -> Ints:
        return lookup[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]

    train, val = encode(train_text), encode(val_text)
    vocab = len(alphabet)
    print(f"text: {len(docs)} docstrings of {len(MODULES)} standard-library modules, "
          f"{len(train) + len(val):,} characters, vocabulary {vocab}; "
          f"{len(train):,} for training, {len(val):,} for validation")

    # Two baselines, in nats per character: every character equally likely, and each
    # character as frequent as in the training text (a model that ignores the context).
    counts = np.bincount(train, minlength=vocab).astype(np.float64) + 1.0
    p_unigram = counts / counts.sum()
    unigram = float(-np.mean(np.log(p_unigram[val])))

    rng = np.random.default_rng(args.seed)
    model = CharModel(vocab, args.context, args.dim, args.hidden, rng)
    optimiser = Adam(model.params, lr=args.lr)
    grad_buf = np.empty((args.batch_size, vocab), dtype=np.float32)  # reused every step
    start = time.perf_counter()
    running = 0.0
    report_every = max(steps // 6, 1)
    for step in range(1, steps + 1):
        positions = rng.integers(args.context, len(train), size=args.batch_size)
        ids, target = windows(train, positions, args.context)
        loss, dlogits = xentfast.cross_entropy_and_grad(model.forward(ids), target,
                                                        out=grad_buf)
        optimiser.step(model.backward(dlogits))
        running += loss
        if step % report_every == 0 or step == steps:
            n = report_every if step % report_every == 0 else step % report_every
            print(f"step {step:5d}  train loss {running / n:.3f} nats/char")
            running = 0.0
    elapsed = time.perf_counter() - start

    nats = validation_loss(model, val, args.context)
    print(f"\nvalidation cross-entropy per character ({elapsed:.1f} s of training):")
    print(f"{'':28}{'nats':>8}{'bits':>8}{'perplexity':>12}")
    for name, value in [("uniform over the vocabulary", math.log(vocab)),
                        ("unigram frequencies", unigram),
                        (f"this model ({args.context} chars back)", nats)]:
        print(f"{name:28}{value:8.3f}{value / math.log(2):8.3f}{math.exp(value):12.2f}")

    for temperature in args.temperatures:
        text_out, entropy = sample(model, args.prompt, alphabet, args.context,
                                   sample_length, temperature,
                                   np.random.default_rng(args.seed + 1))
        print(f"\n--- sample at temperature {temperature:g} (mean entropy of the "
              f"next-character distribution: {entropy:.2f} bits)")
        print(args.prompt + text_out)


if __name__ == "__main__":
    main()
