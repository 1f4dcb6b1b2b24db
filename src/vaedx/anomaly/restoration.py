"""MAP restoration scorer: iteratively restore the image towards the healthy prior (needs a VAE)."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Any

import torch

from vaedx.anomaly.base import BaseScorer, _Batch, _neg_elbo, _require_vae, is_torch_model
from vaedx.errors import ConfigError

_BETAS, _EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which the scorer has always used

_FREEZE_LOCK = threading.Lock()
_FROZEN: dict[int, tuple[int, list[torch.nn.Parameter]]] = {}


@contextlib.contextmanager
def frozen_weights(model: Any) -> Iterator[None]:
    """``requires_grad`` off on the model's weights while any restoration runs on it, back on after the last.

    Why: autograd then records the graph to the input only. Counted under a lock because service threads
    share one model: a thread that switched the flags back while another still scores would hand that one
    weights that want gradients again. (Training the same model object at the same time is not supported.)
    """
    if not is_torch_model(model):
        yield
        return
    key = id(model)
    with _FREEZE_LOCK:
        count, params = _FROZEN.get(key, (0, []))
        if count == 0:
            params = [p for p in model.parameters() if p.requires_grad]
            for p in params:
                p.requires_grad_(False)
        _FROZEN[key] = (count + 1, params)
    try:
        yield
    finally:
        with _FREEZE_LOCK:
            count, params = _FROZEN[key]
            if count == 1:
                del _FROZEN[key]
                for p in params:
                    p.requires_grad_(True)
            else:
                _FROZEN[key] = (count - 1, params)


class RestorationScorer(BaseScorer):
    """MAP restoration (Chen, You, Tezcan, Konukoglu 2020): starting at x_r = x, minimise
    -ELBO(x_r) + lam * D(x_r - x) over x_r by Adam steps with the model frozen; map = |x - x_r|.

    The healthy prior pulls lesions towards normal tissue while the data term D ("tv": total variation of the
    change, as in the paper; "l1": its L1 norm) keeps healthy pixels where they are. Adam makes ``lr`` a step
    in intensity units whatever the likelihood's scale; its first steps can overshoot on already-healthy
    images, so each image keeps its lowest-objective iterate (never worse than x itself). ``lam`` trades
    against the NLL's pixel weight (1/sigma^2 for a Gaussian), so tune it per model on validation images
    (:func:`vaedx.anomaly.restoration_tuning.tune_restoration`); TV leaves a global intensity shift free, L1
    does not. ``signed=True`` keeps only x - x_r > 0 (what the restoration had to darken), as
    ``residual_signed`` does for hyper-intense lesions.

    Speed. One optimisation runs the whole batch: per-image objectives are summed, and since images are
    independent in eval mode each image still gets its own gradient. The weights are frozen during scoring
    (:func:`frozen_weights`), so autograd builds the graph to the input only; gradients are taken with
    ``torch.autograd.grad`` on the scorer's own copy of the input, so no ``.grad`` is ever written on the
    shared model. Adam runs per image by hand, which lets an image stop early: once the mean absolute
    update of its pixels falls below ``tol`` (intensity units; 0 turns the early stop off and runs every
    step) it is frozen at its best iterate and dropped from the batch, so later steps only pay for images
    still moving. ``channels_last`` feeds the model NHWC inputs, which is faster for some CPU convolutions.

    ``extra``: restored images (N,C,H,W), the objective per step (N, steps + 1; a frozen image's last value
    repeats), the best objective reached (N,) and the number of Adam steps each image took (N,).
    """

    name = "restoration"
    needs_grad = True
    default_tol = 0.0  # off: the early stop trades map fidelity for speed (benchmarks/restoration_speed.py)

    def __init__(
        self,
        model: Any,
        steps: int = 100,
        lr: float = 5e-3,
        lam: float = 1.0,
        data_term: str = "tv",
        signed: bool = False,
        tol: float | None = None,
        channels_last: bool = False,
        **opts: Any,
    ) -> None:
        _require_vae(model, "restoration")
        super().__init__(model, **opts)
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        if data_term not in ("tv", "l1"):
            raise ConfigError(f"data_term must be 'tv' or 'l1', got '{data_term}'")
        tol = self.default_tol if tol is None else tol
        if not tol >= 0:
            raise ConfigError(f"tol must be >= 0, got {tol}")
        self.steps, self.lr, self.lam, self.data_term = steps, lr, lam, data_term
        self.signed, self.tol, self.channels_last = signed, float(tol), channels_last

    def _data_term(self, d: torch.Tensor) -> torch.Tensor:
        if self.data_term == "l1":
            return d.abs().flatten(1).sum(1)
        dh = (d[..., 1:, :] - d[..., :-1, :]).abs().flatten(1).sum(1)
        return dh + (d[..., :, 1:] - d[..., :, :-1]).abs().flatten(1).sum(1)

    def _objective(self, x_r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _neg_elbo(self.model, x_r)[0] + self.lam * self._data_term(x_r - x)

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        with frozen_weights(self.model):
            return self._restore(x.detach())

    def _restore(self, x: torch.Tensor) -> _Batch:
        n, steps = x.shape[0], self.steps
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        with torch.no_grad():  # optimiser state: plain tensors, updated in place outside the graph
            x_ref = x.contiguous(memory_format=fmt)
            x_r = x_ref.clone(memory_format=fmt)
            m, v = torch.zeros_like(x_r), torch.zeros_like(x_r)
        with torch.inference_mode():  # bookkeeping never enters a graph
            active = torch.arange(n, device=x.device)
            best, best_obj = x.clone(), torch.full((n,), math.inf, device=x.device)
            history = torch.zeros((n, steps + 1), device=x.device)
            last = torch.full((n,), steps, device=x.device)
        (b1, b2), tol = _BETAS, self.tol
        for step in range(steps + 1):
            if step < steps:
                x_r.requires_grad_(True)
                obj = self._objective(x_r, x_ref)
                (grad,) = torch.autograd.grad(obj.sum(), x_r)  # w.r.t. the input only
            else:
                with torch.inference_mode():
                    obj = self._objective(x_r, x_ref)
            with torch.inference_mode():
                o = obj.detach().float()
                history[active, step] = o
                better = o < best_obj[active]
                idx = active[better]
                best[idx], best_obj[idx] = x_r.detach()[better].to(best.dtype), o[better]
            if step == steps:
                break
            with torch.no_grad():  # Adam, as torch.optim.Adam's single-tensor step, one image per row
                t = step + 1
                m.lerp_(grad, 1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                step_size = self.lr / (1 - b1**t)
                denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(_EPS)
                if tol > 0:
                    moved = (m / denom).abs().flatten(1).mean(1) * step_size
                x_r = x_r.detach().addcdiv_(m, denom, value=-step_size)
                if tol > 0:
                    done = moved < tol
                    if done.any():
                        with torch.inference_mode():
                            last[active[done]] = step
                        keep = ~done
                        active, x_r, x_ref, m, v = active[keep], x_r[keep], x_ref[keep], m[keep], v[keep]
                        if active.numel() == 0:
                            break
        with torch.inference_mode():
            cols = torch.arange(steps + 1, device=x.device).expand(n, -1)
            history = history.gather(1, torch.minimum(cols, last[:, None]))  # frozen: last value repeats
            change = x - best
            maps = self._reduce(change.clamp(min=0) if self.signed else change.abs())
            taken = torch.clamp(last + 1, max=steps)
            extra = {"restored": best, "objective": history, "best_objective": best_obj, "steps": taken}
        return _Batch(maps, extra=extra)
