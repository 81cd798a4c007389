"""``NormLayerNoiseTracker``: B_simple of the normalization layers, from per-example gradients.

Plumbing only: module hooks collect per-example squared gradient norms of the
LayerNorm/RMSNorm weights and biases during backward, and
:class:`~batchlab.noise.NoiseScaleStatistics` (via :class:`._running.RunningNoiseScale`)
does the statistics, with B_small = 1 example and B_big = the examples of the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Variable

from .._checks import check_positive_int
from ._plumbing import check_not_sharded
from ._running import HookedNoiseScale, Step

#: Normalization modules measured: LayerNorm always, RMSNorm where torch has it.
NORM_TYPES: tuple[type[nn.Module], ...] = tuple(
    t for t in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) if t is not None
)

LossReduction = Literal["mean", "sum"]

#: Tensors inside torch.func transforms (vmap, grad) are not the training loop's.
_is_transformed = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda tensor: False)


@dataclass(frozen=True)
class NormLayer:
    """One normalization module and its trainable affine parameters (weight, bias)."""

    name: str
    module: nn.Module
    weight: nn.Parameter | None
    bias: nn.Parameter | None

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for p in (self.weight, self.bias) if p is not None]


def find_norm_layers(model: nn.Module, *, where: str) -> list[NormLayer]:
    """The model's LayerNorm/RMSNorm modules with a trainable weight or bias.

    Modules without affine parameters (``elementwise_affine=False``) or with all of
    them frozen are skipped.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: no such module, naming the model and what was expected.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    check_not_sharded(model, where=where)
    layers, skipped = [], 0
    for name, module in model.named_modules():
        if not isinstance(module, NORM_TYPES):
            continue
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        weight = weight if isinstance(weight, nn.Parameter) and weight.requires_grad else None
        bias = bias if isinstance(bias, nn.Parameter) and bias.requires_grad else None
        if weight is None and bias is None:
            skipped += 1
            continue
        layers.append(NormLayer(name or type(module).__name__, module, weight, bias))
    if not layers:
        kinds = " or ".join(f"torch.nn.{t.__name__}" for t in NORM_TYPES)
        found = (
            f"; its {skipped} normalization module(s) have no trainable weight or bias "
            "(elementwise_affine=False or frozen)"
            if skipped
            else ""
        )
        raise ValueError(
            f"{where}: model {type(model).__name__} has no normalization layer to measure "
            f"(expected at least one {kinds} with a trainable weight or bias){found}; "
            "use NoiseScaleTracker, which measures every parameter"
        )
    return layers


def normalized_input(module: nn.Module, x: Tensor) -> Tensor:
    """x̂ of a LayerNorm/RMSNorm for input ``x``, in float32 or better (no affine part).

    Recomputed from the input with the module's own ``eps``: exact, at the cost of
    one more normalization of the input.
    """
    x = x.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    shape = tuple(module.normalized_shape)  # type: ignore[arg-type]
    if isinstance(module, nn.LayerNorm):
        return F.layer_norm(x, shape, None, None, module.eps)
    return F.rms_norm(x, shape, None, module.eps)  # type: ignore[attr-defined]


def per_example_sums(
    grad_out: Tensor, features: Tensor | None, ndim: int
) -> tuple[Tensor | None, Tensor]:
    """Per-example Σ_t g_it ⊙ u_it and Σ_t g_it of a norm layer's output gradient.

    For y = x̂ ⊙ w + b applied to x of shape (B, ..., *normalized_shape), example i's
    gradients are ∂L_i/∂w = Σ_t g_it ⊙ x̂_it and ∂L_i/∂b = Σ_t g_it, summed over every
    middle position t (Gray et al. 2024). With u = x̂ the first sum is ∂L_i/∂w; with
    u = y it is ∂L_i/∂w ⊙ w + b ⊙ ∂L_i/∂b, which :class:`NormLayerNoiseTracker` solves
    for ∂L_i/∂w per example (so no normalization per position is needed). Computed
    in float32 or better.

    Args:
        grad_out: g = ∂L/∂y, shape (B, ..., *normalized_shape).
        features: u, the same shape as ``grad_out``, or ``None`` (then the first
            result is ``None``).
        ndim: number of normalized (trailing) dimensions.

    Returns:
        (Σ_t g ⊙ u or ``None``, Σ_t g), each (B, D) with D the normalized size.
    """
    g = grad_out.detach() if grad_out.requires_grad else grad_out
    if g.dtype not in (torch.float32, torch.float64):
        g = g.float()
    batch = g.shape[0]
    g = g.reshape(batch, -1, math.prod(g.shape[g.dim() - ndim :]))
    if features is None:
        return None, g.sum(1)
    u = features.reshape(g.shape)
    if u.dtype != g.dtype:
        u = u.to(g.dtype)
    return (g * u).sum(1), g.sum(1)


@dataclass
class _Sums:
    """One backward's per-example sums: its examples, their (examples, columns) matrix, its
    columns per layer (Σ g ⊙ u, or ``None`` without a measured weight; Σ g) and the layers
    written so far."""

    examples: int
    matrix: Tensor
    weighted: list[Tensor | None]
    plain: list[Tensor]
    filled: list[bool]


class NormLayerNoiseTracker(HookedNoiseScale):
    """B_simple of the normalization layers' parameters, from per-example gradients.

    Gray et al. 2024 show that in Transformers the gradient noise scale of the
    LayerNorm parameters alone tracks the whole model's, and that their per-example
    gradients cost almost nothing: for y = x̂ ⊙ w + b, the gradient of example i is
    Σ_t g_it ⊙ x̂_it for w and Σ_t g_it for b, from the output gradient g that backward
    computes anyway. With per-example squared norms (B_small = 1) and the squared norm
    of their sum, the step's gradient of those parameters (B_big = the step's
    examples), McCandlish et al.'s unbiased estimators give |G|², tr(Σ) and B_simple
    of those parameters. One
    backward per step is enough (no gradient accumulation needed), and no per-example
    gradient of any other parameter is ever formed. Same loop and results as
    :class:`~batchlab.noise.NoiseScaleTracker`::

        tracker = NormLayerNoiseTracker(model)
        for batch in loader:
            loss_fn(model, batch).backward()   # or several micro-batches, loss / k
            optimizer.step()
            tracker.step()
            optimizer.zero_grad()
        tracker.b_simple, tracker.b_simple_ci, tracker.per_module

    It measures a different quantity from ``NoiseScaleTracker``: B_simple of a
    parameter subset, a proxy for the whole model's, not an estimate of it. How close
    the proxy is, is an empirical claim (Gray et al. report close agreement in
    Transformers): on shakespeare-char, ``benchmarks/norm_gns.py`` measures about 0.5
    to 0.6 times the whole model's B_simple, steady over training.

    How it measures: a forward hook on each ``nn.LayerNorm`` (and ``nn.RMSNorm``,
    weight only) with a trainable weight or bias puts a pre-hook on the autograd node
    of its output, which gets the output's gradient g in backward; that hook writes
    the module's per-example sums in float32 or better straight into the backward's
    (examples, columns) matrix (kept and reused by the same backward of every step),
    summed over calls if the module runs more than once per forward. x̂ comes from
    the output, x̂ = (y − b) / w, applied as one division per example after the sum
    over positions (``xhat="output"``, the default: Σ_t g ⊙ y and Σ_t g, one product
    and two sums per layer and backward; w and b are read at the step's first
    backward), or is recomputed from the input with the module's
    ``eps`` (``xhat="input"``: exact, one more normalization per layer and backward;
    used anyway for half-precision outputs). A weight entry exactly 0 loses x̂ from
    the output: such steps come out NaN and are skipped with a warning that says to
    use ``xhat="input"``. At ``step()`` the per-example gradients of the step's
    backward passes give Σ_i |g_i|² and |Σ_i g_i|² per module; Σ_i g_i is exactly what
    those backward passes add to the parameters' ``.grad`` (a test checks it), taken
    from the per-example gradients so that clipping, ``zero_grad`` placement or a loss
    term on the parameters themselves (an explicit weight penalty) do not enter it.
    Examples are the first dimension of a
    norm layer's input, (B, ..., *normalized_shape), every middle dimension summed
    over. Forward passes under ``torch.no_grad``, :meth:`paused` or a ``torch.func``
    transform are ignored.

    Loss reduction: the per-example gradients are measured in the units of ``.grad``,
    so their weight in the loss must be the same for every example of the step. With
    ``loss_reduction="mean"`` (the usual case) the step's gradient is taken to be its
    mean gradient (a mean-reduced loss, and over micro-batches the usual
    ``loss / k`` with equal micro-batches), so per-example norms are multiplied by
    B²; with ``"sum"``, ``.grad`` is the sum of per-example gradients (a sum-reduced
    loss, micro-batch losses added) and its norm is divided by B². B_simple does not
    depend on this choice (a common factor cancels); the reported |G|² and tr(Σ) are
    per-example-gradient units only when it is right.

    References:
        Gray, Samar et al. 2024, "Normalization Layer Per-Example Gradients are
        Sufficient to Predict Gradient Noise Scale in Transformers",
        https://arxiv.org/abs/2411.00999; McCandlish, Kaplan, Amodei et al. 2018,
        "An Empirical Model of Large-Batch Training", Appendix A (the estimators),
        https://arxiv.org/abs/1812.06162.

    Args:
        model: the model; it is not changed (only hooks are added).
        loss_reduction: ``"mean"`` or ``"sum"``: how the loss (and ``.grad``) combines
            the step's examples (see above).
        xhat: ``"output"`` (fast) or ``"input"`` (exact, also for zero weights): where
            the normalized input x̂ comes from (see above).
        ema_decay: ``None`` for a plain average over all steps so far, or β in [0, 1)
            for an exponential moving average.
        confidence: coverage of the intervals.
        measure_every: measure one optimizer step in every ``measure_every`` (the
            first of each group: steps 0, k, 2k, ...); on the others the hooks are
            detached, so the forward and backward call none, and ``step()`` only counts
            the step. The overhead falls about k-fold and the estimates average k times
            fewer steps (their variance over a given span of training grows about
            k-fold); the noise scale drifts over hundreds of steps, so a sample of them
            tracks it (``benchmarks/norm_gns.py --measure-every``).

    Raises:
        ValueError: no normalization layer with trainable affine parameters, or a bad
            ``loss_reduction``, ``xhat`` or ``measure_every``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        loss_reduction: LossReduction = "mean",
        xhat: Literal["output", "input"] = "output",
        ema_decay: float | None = None,
        confidence: float = 0.95,
        measure_every: int = 1,
    ) -> None:
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        if xhat not in ("output", "input"):
            raise ValueError(f"xhat must be 'output' or 'input', got {xhat!r}")
        self.xhat = xhat
        self.measure_every = check_positive_int(measure_every, "measure_every")
        self._layers = find_norm_layers(model, where="NormLayerNoiseTracker")
        super().__init__(
            [layer.name for layer in self._layers], ema_decay=ema_decay, confidence=confidence
        )
        self.loss_reduction = loss_reduction
        params = [p for layer in self._layers for p in layer.params]
        self._device = params[0].device
        self._dtype = torch.float64 if params[0].dtype == torch.float64 else torch.float32
        self._plan_columns()
        self._paused = False
        self._pool: list[_Sums | None] = []  # one matrix per backward of a step, reused
        self._reset_step()
        self._forward_hooks = [self._make_forward_hook(i) for i in range(len(self._layers))]
        self._start_hooks()

    # ----- plumbing: hooks -------------------------------------------------------------

    def _register_hooks(self) -> list[Any]:
        return [
            layer.module.register_forward_hook(hook)
            for layer, hook in zip(self._layers, self._forward_hooks, strict=True)
        ]

    def _plan_columns(self) -> None:
        """Where each layer's per-example sums go, and 0/1 matrices to layers.

        Each backward writes one (examples, columns) matrix: the layers' Σ g ⊙ u (layers
        with a measured weight) side by side, then every layer's Σ g; the per-example
        gradients are then every measured weight, then every measured bias.
        """
        shapes = [layer.module.normalized_shape for layer in self._layers]
        sizes = [int(np.prod(shape)) for shape in shapes]  # type: ignore[arg-type]
        starts = np.cumsum([0, *sizes])
        weighted = [i for i, layer in enumerate(self._layers) if layer.weight is not None]
        biased = [i for i, layer in enumerate(self._layers) if layer.bias is not None]
        every = list(range(len(self._layers)))
        self._sizes, self._weighted = sizes, weighted
        # Columns of the per-backward matrix: Σ g ⊙ u of the weighted layers, then Σ g.
        self._weight_width = int(sum(sizes[i] for i in weighted))
        self._width = self._weight_width + int(starts[-1])
        weight_starts = np.cumsum([0, *(sizes[i] for i in weighted)])
        self._weight_slices: list[slice | None] = [None] * len(self._layers)
        for k, i in enumerate(weighted):
            self._weight_slices[i] = slice(int(weight_starts[k]), int(weight_starts[k + 1]))
        self._plain_slices = [
            slice(self._weight_width + int(starts[i]), self._weight_width + int(starts[i + 1]))
            for i in every
        ]

        def columns(layers: list[int]) -> Tensor | None:
            if layers == every:
                return None  # all of Σ g, no indexing
            index = [c for i in layers for c in range(starts[i], starts[i + 1])]
            return torch.tensor(index, dtype=torch.long, device=self._device)

        self._partner_cols, self._bias_cols = columns(weighted), columns(biased)
        self._column_groups = self._assignment(
            [i for i in weighted for _ in range(sizes[i])]
            + [i for i in biased for _ in range(sizes[i])]
        )
        # x̂ from the output: Σ g ⊙ y = ∂L_i/∂w ⊙ w + b ⊙ Σ g. Layers measured from the
        # input have (w, b) = (1, 0) here, which leaves their sums as they are.
        self._from_output = [
            self.xhat == "output" and layer.weight is not None for layer in self._layers
        ]
        self._affine_views: tuple[list[Tensor], list[Tensor]] | None = None

    def _affine(self) -> tuple[Tensor, Tensor]:
        """Current (w, b) of the weight columns, for solving Σ g ⊙ y for ∂L_i/∂w."""
        if self._affine_views is None:
            # Flat views of the parameters (an optimizer updates them in place) and
            # constants for layers measured from the input or without a bias.
            weights: list[Tensor] = []
            biases: list[Tensor] = []
            for layer, from_output in zip(self._layers, self._from_output, strict=True):
                if layer.weight is None:
                    continue
                weight = layer.module.weight.detach().reshape(-1)
                bias = getattr(layer.module, "bias", None)
                weights.append(weight if from_output else torch.ones_like(weight))
                biases.append(
                    bias.detach().reshape(-1)
                    if from_output and bias is not None
                    else torch.zeros_like(weight)
                )
            self._affine_views = (weights, biases)
        weights, biases = self._affine_views
        return torch.cat(weights).to(self._dtype), torch.cat(biases).to(self._dtype)

    def _assignment(self, layer_of: list[int]) -> Tensor:
        index = torch.as_tensor(layer_of, dtype=torch.long)
        matrix = torch.zeros(len(index), len(self._layers), dtype=self._dtype)
        matrix[torch.arange(len(index)), index] = 1.0
        return matrix.to(self._device)

    def _reset_step(self) -> None:
        self._examples = 0
        # Per backward: the (examples, columns) matrix of the layers' sums (see
        # _plan_columns) and its columns per layer; None between backward passes.
        self._sums: _Sums | None = None
        self._other_sizes: set[int] = set()  # example counts unlike self._sums's
        self._raw: list[Tensor] = []  # the step's matrices, one per backward
        self._wb: tuple[Tensor, Tensor] | None = None  # (w, b) at the step's first backward

    def _start_backward(self, examples: int) -> _Sums:
        """At a backward's first hook: its zeroed matrix and the end-of-backward call.

        The k-th backward of every step reuses one matrix (and its column views): a
        hook then writes its sums straight into it, with no allocation or indexing.
        """
        k = len(self._raw)
        if k == len(self._pool):
            self._pool.append(None)
        sums = self._pool[k]
        if sums is None or sums.examples != examples:
            matrix = torch.empty(examples, self._width, dtype=self._dtype, device=self._device)
            sums = _Sums(
                examples,
                matrix,
                [None if c is None else matrix[:, c] for c in self._weight_slices],
                [matrix[:, c] for c in self._plain_slices],
                [False] * len(self._layers),
            )
            self._pool[k] = sums
        sums.matrix.zero_()  # layers the backward does not reach count zero
        sums.filled[:] = [False] * len(self._layers)
        self._sums = sums
        Variable._execution_engine.queue_callback(self._end_backward)
        return sums

    def _make_forward_hook(self, index: int):  # noqa: ANN202 - a closure over the module
        layer = self._layers[index]
        ndim = len(layer.module.normalized_shape)  # type: ignore[arg-type]
        size = self._sizes[index]
        with_weight, from_output = layer.weight is not None, self._from_output[index]
        full_precision, dtype = (torch.float32, torch.float64), self._dtype

        def forward_hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            if self._paused or not torch.is_grad_enabled():
                return  # paused, or no backward to come
            if not isinstance(output, Tensor) or not output.requires_grad:
                return
            if _is_transformed(output):  # a torch.func transform's forward: not ours
                return
            y = output.detach() if from_output and output.dtype in full_precision else None
            x = args[0] if y is None and with_weight else None  # x̂ from the input
            # Sums written straight into the matrix (no conversion, x̂ from y or no weight).
            direct = (y.dtype == dtype) if y is not None else not with_weight
            nr = output.output_nr

            def grad_hook(grads: tuple[Tensor | None, ...]) -> None:
                grad = grads[nr]  # the gradient of this output, among its node's
                if self._paused or grad is None:
                    return
                sums, examples = self._sums, grad.size(0)
                if sums is None:
                    sums = self._start_backward(examples)
                elif examples != sums.examples:  # reported after the backward
                    self._other_sizes.add(examples)
                    return
                if grad.requires_grad:
                    grad = grad.detach()
                if direct and grad.dtype == dtype and not sums.filled[index]:
                    # The usual case: one product and two sums over the positions, written
                    # straight into this backward's matrix.
                    if grad.dim() == 3 and ndim == 1:  # (examples, positions, features)
                        g, u = grad, y
                    else:
                        g = grad.reshape(examples, -1, size)
                        u = None if y is None else y.reshape(g.shape)
                    if u is not None:
                        torch.sum(g * u, 1, out=sums.weighted[index])
                    torch.sum(g, 1, out=sums.plain[index])
                    sums.filled[index] = True
                    return
                if y is not None or not with_weight:
                    weighted, plain = per_example_sums(grad, y, ndim)
                else:
                    weighted, plain = per_example_sums(grad, normalized_input(module, x), ndim)
                    if from_output:  # a half-precision output: store what y would give
                        w, b = module.weight, getattr(module, "bias", None)
                        scale = w.detach().reshape(-1).to(plain.dtype)
                        weighted = weighted * scale  # type: ignore[operator]
                        if b is not None:
                            weighted = weighted + b.detach().reshape(-1).to(plain.dtype) * plain
                # Added if the module already ran in this forward (sums over its calls).
                write = Tensor.add_ if sums.filled[index] else Tensor.copy_
                write(sums.plain[index], plain)
                if weighted is not None:
                    write(sums.weighted[index], weighted)  # type: ignore[arg-type]
                sums.filled[index] = True

            node = output.grad_fn  # a pre-hook on it is cheaper than a tensor hook
            if node is not None:
                node.register_prehook(grad_hook)
            else:
                nr = 0
                output.register_hook(lambda grad: grad_hook((grad,)))

        return forward_hook

    def _per_example(self, sums: Tensor, wb: tuple[Tensor, Tensor] | None) -> Tensor:
        """(B, P) per-example gradients, every measured weight then every measured bias.

        Args:
            sums: the step's (examples, columns) matrix of per-example sums: the layers'
                Σ g ⊙ u (layers with a measured weight) side by side, then every layer's
                Σ g (overwritten: the weight columns become ∂L_i/∂w).
            wb: (w, b) of the weight columns when the backward passes ran.
        """
        width = self._weight_width
        weighted, plain = sums.narrow(1, 0, width), sums.narrow(1, width, self._width - width)
        if width and wb is not None:
            w, b = wb
            partner = plain if self._partner_cols is None else plain[:, self._partner_cols]
            # ∂L_i/∂w = (Σ g ⊙ y − b ⊙ Σ g) / w per example (identity from the input).
            weighted.sub_(partner * b).div_(w)
        if self._bias_cols is None:
            return sums  # every measured weight, then every layer's bias
        if not len(self._bias_cols):
            return weighted
        return torch.cat([weighted, plain[:, self._bias_cols]], dim=1)

    def _end_backward(self) -> None:
        """Engine callback after each backward: keep this micro-batch's sums."""
        current, self._sums = self._sums, None
        if current is None:
            return
        sums = current.matrix
        if self._other_sizes:
            sizes = sorted({int(sums.shape[0]), *self._other_sizes})
            self._other_sizes.clear()
            raise ValueError(
                f"NormLayerNoiseTracker: the normalization layers saw different numbers of "
                f"examples in one backward ({sizes}); inputs must be "
                "(examples, ..., features) with the examples first"
            )
        self._raw.append(sums)
        if self._wb is None and self._weighted:
            # Read once per step, before the optimizer changes them.
            self._wb = self._affine()
        self._examples += int(sums.shape[0])

    _skip_reason = (
        "a NaN/inf gradient (or, with xhat='output', a normalization weight exactly 0: "
        "use xhat='input')"
    )

    # ----- the training loop's one call ------------------------------------------------

    def step(self) -> None:
        """Close one optimizer step: every example's norm (small) and their sum's (big).

        Call once per optimizer step, after the step's backward passes (before or
        after ``optimizer.step()`` and ``zero_grad``). On a step that ``measure_every``
        leaves out it only counts the step.

        Raises:
            ValueError: no backward pass since the last step, or fewer than two examples.
        """
        index = self._start_step()
        self._attach_hooks(self.measures_next_step)
        if index % self.measure_every:  # left out: no hook ran
            self._reset_step()
            return
        raw, wb, examples = self._raw, self._wb, self._examples
        self._reset_step()
        if not raw or examples < 2:
            raise ValueError(
                f"NormLayerNoiseTracker.step(): {len(raw)} backward pass(es) over {examples} "
                "example(s) reached the normalization layers since the last step; the noise "
                "scale needs at least two examples per step (B_small = 1 < B_big)"
            )
        with torch.no_grad():
            sums = raw[0] if len(raw) == 1 else torch.cat(raw)
            per_example = self._per_example(sums, wb)
            sq_sum, grad_sum = per_example.square().sum(0), per_example.sum(0)
        # Rows: Σ_i |g_i|², then |Σ_i g_i|² (the step's gradient, = what the backward
        # passes added to .grad); columns: all norm layers, then each layer.
        rows = torch.stack([sq_sum, grad_sum.square()]) @ self._column_groups
        rows = torch.cat([rows.sum(1, keepdim=True), rows], dim=1)
        self._queue((index, rows, float(examples)))

    def _to_host(self, pending: list[Any]) -> list[Step]:
        """The pending steps' norms in one copy, scaled to per-example-gradient units."""
        flat = torch.stack([rows for _, rows, _ in pending]).to(torch.float64).cpu().numpy()
        steps: list[Step] = []
        for (index, _, examples), (per_example, big) in zip(pending, flat, strict=True):
            if self.loss_reduction == "mean":  # .grad = mean, per-example terms carry 1/B
                small, big = per_example * examples, big
            else:  # .grad = sum, per-example terms carry weight 1
                small, big = per_example / examples, big / examples**2
            steps.append((index, small, big, 1.0, examples))
        return steps
