"""The torch training loop for the VAE and AE: one epoch at a time, checkpointed after every epoch.

Why it is written this way:

* Determinism on CPU: weights are initialised from ``seed``, each epoch's data order comes from
  (seed, epoch) and the reparameterisation, augmentation and input-corruption noise from (seed, epoch,
  rank), so a run resumed from ``last/`` ends with bit-identical weights to one that was never interrupted.
* With ``denoise="coarse"`` only the network's input is corrupted (``vaedx.training.noise``); the loss
  compares the reconstruction with the clean image, and validation runs on clean images, so its loss is the
  same quantity with or without denoising and the two kinds of run can be compared by it.
* With ``context_encoding`` (ceVAE) each training batch also goes through the model with rectangles inside
  the head masked out (``vaedx.training.context``), in the same forward pass; the loss adds the NLL of that
  reconstruction against the clean image. Validation is the plain ELBO on clean images, as above.
* A non-finite loss stops the run *before* the optimiser step and before any checkpoint write, so the
  last good checkpoint on disk is never replaced by a broken one.
* Under ``torchrun`` the model is wrapped in DistributedDataParallel; only rank 0 writes files, and the
  per-step loss and the validation sums are all-reduced so every rank takes the same decisions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaedx.data.augment import Transform, apply_transform, random_affine, seed_transform
from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError, InputError, VaedxError
from vaedx.models.registry import build_model
from vaedx.runs import checkpoint as ck
from vaedx.runs.config import TrainConfig
from vaedx.runs.folder import BEST, LAST, RunFolder
from vaedx.training.batches import BatchReader, derive_seed
from vaedx.training.context import mask_patches, split_output
from vaedx.training.distributed import Runtime
from vaedx.training.losses import kl_weight, ssim_term, vae_loss
from vaedx.training.noise import add_coarse_noise
from vaedx.training.progress import MetricsLog, Reporter, log

BatchHook = Callable[[int, np.ndarray], None]



CHANNELS_LAST_MIN_SIDE = 96


def use_channels_last(asked: bool | None, cuda: bool, image_size: tuple[int, int] | None) -> bool:
    """channels_last memory format: as asked; by default on CUDA, and on CPU for images >= 96 px a side.

    Why the CPU rule: through this engine a 128x128 ConvVAE trained 1.33x faster in channels_last on one
    CPU thread (2.4 vs 1.8 img/s, two interleaved rounds on a loaded machine); small images gain nothing.
    """
    if asked is not None:
        return asked
    return cuda or (image_size is not None and min(image_size) >= CHANNELS_LAST_MIN_SIDE)

class TrainingDivergedError(VaedxError):
    """The loss or the weights became NaN/inf; the last good checkpoint is left untouched."""


@dataclass
class RunState:
    epoch: int = 0  # completed epochs
    global_step: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    seconds: float = 0.0  # wall time of the completed epochs, validation included, over every resume
    stopped_by: str = ""  # why the last fit ended: epochs | patience | budget


class TorchTrainer:
    def __init__(
        self,
        cfg: TrainConfig,
        rt: Runtime,
        store: TensorStore,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        out: Path,
        run_meta: dict[str, Any],
        reporter: Reporter,
        on_batch: BatchHook | None = None,
        transform: Transform | None = None,
    ):
        self.cfg, self.rt, self.out, self.run_meta = cfg, rt, out, run_meta
        self.reporter, self.on_batch = reporter, on_batch
        # your own augmentation (MONAI, torchio, any callable), applied per image on CPU before the affine
        self.transform, self.masks = transform, store.masks
        cuda = rt.device.type == "cuda"
        self.amp = cuda and cfg.amp is not False
        self.channels_last = use_channels_last(cfg.channels_last, cuda, cfg.model.image_size)
        drop = cfg.model.norm == "batch"
        kw = {"seed": cfg.seed, "rank": rt.rank, "world_size": rt.world_size}
        self.train_reader = BatchReader(store.images, train_idx, cfg.batch_size, drop_single=drop, **kw)
        self.val_reader = BatchReader(store.images, val_idx, cfg.batch_size, **kw)
        self.steps_per_epoch = self.train_reader.num_batches()
        if not cuda and cfg.amp:
            reporter.line("amp applies to CUDA only; training in float32")
        if cfg.denoise == "coarse":
            side = min(cfg.model.image_size or (cfg.noise_resolution,))
            if cfg.noise_resolution > side:
                msg = f"noise_resolution {cfg.noise_resolution} is finer than the {side} px images"
                raise ConfigError(msg)
            reporter.line(
                f"denoising: inputs get coarse noise ({cfg.noise_resolution}x{cfg.noise_resolution} grid, "
                f"std {cfg.noise_std:g}) inside the head; the loss compares with the clean image"
            )
        self.context = cfg.context_encoding and cfg.ce_weight > 0  # weight 0: exactly the plain loss
        if self.context:
            reporter.line(
                f"context encoding: inputs also go through with up to {cfg.ce_patches} rectangles masking "
                f"{cfg.ce_min_cover:.0%}-{cfg.ce_max_cover:.0%} of the head ({cfg.ce_fill}); inpainting "
                f"weight {cfg.ce_weight:g}"
            )
        spans = {"--scheduler cosine": cfg.scheduler == "cosine"}
        spans["--kl-anneal cyclical"] = cfg.kl_anneal == "cyclical"
        stretched = [name for name, on in spans.items() if on]
        if stretched and (cfg.patience or cfg.budget):
            reporter.line(
                f"{' and '.join(stretched)} span all {cfg.epochs} epochs, and --patience/--budget may end "
                "training before the schedule does (--patience 0 --budget 0 run every epoch)"
            )
        self.state = RunState()
        self._build()

    # -- set-up -------------------------------------------------------------------------------------------
    def _build(self) -> None:
        cfg, dev = self.cfg, self.rt.device
        torch.manual_seed(cfg.seed)
        raw: nn.Module = build_model(cfg.model).to(dev)  # type: ignore[union-attr]
        if self.channels_last:
            raw = raw.to(memory_format=torch.channels_last)
        self.raw = raw
        self.opt = torch.optim.AdamW(raw.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched: Any = None
        if cfg.scheduler == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=cfg.epochs)
        elif cfg.scheduler == "plateau":
            self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, factor=0.5, patience=2)
        if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
            self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        else:  # pragma: no cover - torch 2.2
            self.scaler = torch.cuda.amp.GradScaler(enabled=self.amp)
        model: nn.Module = raw
        if self.rt.distributed:
            ids = [dev.index] if dev.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(raw, device_ids=ids)
        self.model = torch.compile(model) if cfg.compile else model

    def restore(self, ckpt: Path) -> None:
        """Load weights, optimiser, scheduler, scaler, RNG and counters from a checkpoint folder."""
        state = ck.read_json(ckpt / ck.STATE_FILE)
        sums = state.get("sha256", {})
        ck.load_weights(self.raw, ckpt / ck.MODEL_FILE, sums.get(ck.MODEL_FILE))
        tensors = ck.load_tensors(ckpt / ck.OPTIM_FILE, sums.get(ck.OPTIM_FILE))
        try:
            self.opt.load_state_dict(ck.unflatten_state(state["optimizer"], tensors))
            if self.sched is not None and state.get("scheduler") is not None:
                self.sched.load_state_dict(ck.unflatten_state(state["scheduler"], tensors))
            if self.amp and state.get("scaler") is not None:
                self.scaler.load_state_dict(ck.unflatten_state(state["scaler"], tensors))
            torch.set_rng_state(tensors["rng.cpu"])
            self.state = RunState(**state["run"])
        except (KeyError, ValueError, TypeError) as e:
            raise InputError(f"incomplete training state ({e})", ckpt / ck.STATE_FILE) from None

    # -- the loop ---------------------------------------------------------------------------------------
    def fit(self, metrics: MetricsLog | None) -> RunState:
        cfg, st = self.cfg, self.state
        if st.stopped_early or st.epoch >= cfg.epochs:
            self.reporter.line(f"nothing to do: run already finished at epoch {st.epoch}")
            return st
        if self._budget_spent():
            spent = f"{st.seconds:.0f} s"
            self.reporter.line(f"nothing to do: the {cfg.budget:g}-minute budget is spent ({spent})")
            return st
        st.stopped_by = ""
        for epoch in range(st.epoch + 1, cfg.epochs + 1):
            started = time.perf_counter()
            row = self._train_epoch(epoch)
            row.update(self._validate(epoch))
            improved = self._update_early_stopping(epoch, row)
            if self.sched is not None:
                self.sched.step(row["monitor"]) if cfg.scheduler == "plateau" else self.sched.step()
            self._check_weights(epoch)
            st.epoch = epoch
            st.seconds += time.perf_counter() - started
            if st.stopped_early:
                st.stopped_by = "patience"
            elif epoch == cfg.epochs:
                st.stopped_by = "epochs"
            elif self._budget_spent():
                st.stopped_by = "budget"
            if self.rt.is_main:
                if metrics is not None:
                    metrics.append(row)
                self._save(improved)
            self.rt.barrier()
            self._report(epoch, row, improved)
            if st.stopped_early:
                self.reporter.line(f"early stopping: no improvement for {cfg.patience} epochs")
                break
            if st.stopped_by == "budget":
                self.reporter.line(
                    f"time budget: {epoch} epochs in {st.seconds:.0f} s; "
                    f"another would pass {cfg.budget:g} min"
                )
                break
        return st

    def _budget_spent(self) -> bool:
        """Would one more epoch, as long as the mean one so far, end past ``--budget``?

        Every rank must stop at the same epoch, so under DDP the ranks stop when any of them says so.
        """
        cfg, st = self.cfg, self.state
        if not cfg.budget or st.epoch == 0:
            return False
        spent = st.seconds + st.seconds / st.epoch > cfg.budget * 60
        flag = torch.tensor([1.0 if spent else 0.0], device=self.rt.device)
        return bool(self.rt.all_sum(flag).item() > 0)

    def _beta(self) -> float:
        c = self.cfg
        return kl_weight(
            self.state.global_step, beta=c.beta, schedule=c.kl_anneal, steps_per_epoch=self.steps_per_epoch,
            anneal_epochs=c.anneal_epochs, total_steps=c.epochs * self.steps_per_epoch, cycles=c.cycles,
        )  # fmt: skip

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg, dev, rt = self.cfg, self.rt.device, self.rt
        self.model.train()
        torch.manual_seed(derive_seed(cfg.seed, epoch, rt.rank, 0x5EED))
        aug_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, rt.rank, 0xA06))
        noise_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, rt.rank, 0xD15E))
        ce_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, rt.rank, 0xCE))
        seed_transform(self.transform, derive_seed(cfg.seed, epoch, rt.rank, 0x7F0))
        self.reporter.start_epoch(epoch, cfg.epochs, self.steps_per_epoch)
        sums, seen, lr = np.zeros(3), 0, self.opt.param_groups[0]["lr"]
        t0 = time.perf_counter()
        beta = 0.0
        for step, (rows, xb) in enumerate(self.train_reader.epoch(epoch, pin=dev.type == "cuda"), start=1):
            if self.transform is not None:
                masks = None if self.masks is None else torch.from_numpy(self.masks[rows].astype(np.float32))
                xb = apply_transform(self.transform, xb, masks)
            x = random_affine(xb.to(dev, non_blocking=True), cfg.augment, aug_gen)
            x_in = x
            if cfg.denoise == "coarse":
                x_in = add_coarse_noise(x, cfg.noise_resolution, cfg.noise_std, noise_gen)
            if self.context:
                masked = mask_patches(
                    x, cfg.ce_patches, cfg.ce_min_cover, cfg.ce_max_cover, cfg.ce_fill, ce_gen
                )
                x_in = torch.cat([x_in, masked])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
                x_in = x_in.contiguous(memory_format=torch.channels_last)
            beta = self._beta()
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=self.amp):
                out = self.model(x_in)  # the loss below compares with the clean x
            out_ce = None
            if self.context:
                out, out_ce = split_output(out, len(x))
            loss, logs = vae_loss(
                self.raw, x, out, beta=beta, free_bits=cfg.free_bits, ssim_weight=cfg.model.ssim_weight,
                out_ce=out_ce, ce_weight=cfg.ce_weight,
            )  # fmt: skip
            vals = rt.all_sum(torch.stack([logs["loss"], logs["recon"], logs["kl"]])) / rt.world_size
            v = vals.double().cpu().numpy()
            if not math.isfinite(v[0]):
                self._diverged(f"loss became {v[0]}", epoch, step, x)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.opt)
                nn.utils.clip_grad_norm_(self.raw.parameters(), cfg.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.state.global_step += 1
            n = len(rows) * rt.world_size
            sums += v * n
            seen += n
            speed = seen / max(time.perf_counter() - t0, 1e-9)
            if self.on_batch is not None:
                self.on_batch(epoch, rows)
            self.reporter.step(float(v[0]), speed)
            if step % cfg.log_every == 0 and rt.is_main:
                where = f"epoch {epoch} step {step}/{self.steps_per_epoch}"
                log.info(f"{where} loss {v[0]:.5g} {speed:.0f} img/s")
        secs = time.perf_counter() - t0
        m = sums / max(seen, 1)
        return {
            "epoch": epoch, "step": self.state.global_step, "lr": lr, "beta": beta, "train_loss": m[0],
            "train_recon": m[1], "train_kl": m[2], "images_per_s": seen / max(secs, 1e-9), "seconds": secs,
        }  # fmt: skip

    @torch.no_grad()
    def _validate(self, epoch: int) -> dict[str, Any]:
        """Validation ELBO terms with the target beta (no annealing, no free bits), summed over ranks."""
        cfg, dev = self.cfg, self.rt.device
        if len(self.val_reader.indices) == 0:
            return {"val_loss": None, "val_recon": None, "val_kl": None, "val_mse": None}
        self.raw.eval()
        sums = torch.zeros(5, dtype=torch.float64, device=dev)
        for _, xb in self.val_reader.sequential():
            x = xb.to(dev, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=self.amp):
                out = self.raw(x)
            t = self.raw.elbo_terms(x, out)  # type: ignore[operator]
            loss = t["recon_nll"] + cfg.beta * t["kl"]
            if cfg.model.ssim_weight > 0:
                loss = loss + cfg.model.ssim_weight * ssim_term(x, out.x_hat)
            parts = [loss.sum(), t["recon_nll"].sum(), t["kl"].sum(), t["mse"].sum()]
            sums += torch.stack([*parts, torch.tensor(float(len(x)), device=dev)]).double()
        s = (self.rt.all_sum(sums)).cpu().numpy()
        m = s[:4] / max(s[4], 1)
        if not np.isfinite(m).all():
            self._diverged(f"validation loss became {m[0]}", epoch, None, None)
        return {"val_loss": m[0], "val_recon": m[1], "val_kl": m[2], "val_mse": m[3]}

    def _update_early_stopping(self, epoch: int, row: dict[str, Any]) -> bool:
        """Track the best epoch; epochs of a linear KL warm-up never count against patience."""
        cfg, st = self.cfg, self.state
        monitor = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
        row["monitor"] = monitor
        improved = monitor < st.best_val - cfg.min_delta
        if improved:
            st.best_val, st.best_epoch, st.bad_epochs = float(monitor), epoch, 0
        elif not (cfg.kl_anneal == "linear" and epoch <= cfg.anneal_epochs):
            st.bad_epochs += 1
        st.stopped_early = bool(cfg.patience) and st.bad_epochs >= cfg.patience
        return improved

    def _check_weights(self, epoch: int) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in self.raw.parameters()):
            self._diverged("weights became non-finite", epoch, None, None)

    def _diverged(self, what: str, epoch: int, step: int | None, x: torch.Tensor | None) -> None:
        last = self.out / "last"
        where = f"epoch {epoch}" + (f" step {step}" if step is not None else "")
        kept = (
            f"last good checkpoint kept in {last} (epoch {self.state.epoch})"
            if (last / ck.STATE_FILE).exists()
            else "no checkpoint was written yet"
        )
        bad_data = x is not None and not bool(torch.isfinite(x).all())
        hint = "the batch has non-finite pixel values: check the store" if bad_data else "try a lower --lr"
        msg = f"{what} at {where}; {kept}; {hint}"
        if self.rt.is_main:
            log.error(msg)
        raise TrainingDivergedError(msg)

    # -- output -------------------------------------------------------------------------------------------
    def _save(self, improved: bool) -> None:
        tensors: dict[str, torch.Tensor] = {"rng.cpu": torch.get_rng_state()}
        sched = self.sched.state_dict() if self.sched is not None else None
        state = {
            "run": asdict(self.state),
            "optimizer": ck.flatten_state(self.opt.state_dict(), tensors, "optimizer"),
            "scheduler": ck.flatten_state(sched, tensors, "scheduler"),
            "scaler": ck.flatten_state(self.scaler.state_dict(), tensors, "scaler") if self.amp else None,
        }
        weights = self.raw.state_dict()

        def write_tensors(tmp: Path) -> None:
            meta = {"format": "vaedx-model", "kind": self.cfg.model.kind}
            ck.save_tensors(tmp / ck.MODEL_FILE, weights, metadata=meta)
            ck.save_tensors(tmp / ck.OPTIM_FILE, tensors)

        run = RunFolder(self.out)
        run.write_checkpoint(LAST, write_tensors, self.run_meta, state, (ck.MODEL_FILE, ck.OPTIM_FILE))
        if improved:
            run.copy_checkpoint(LAST, BEST)

    def _report(self, epoch: int, row: dict[str, Any], improved: bool) -> None:
        val = "" if row["val_loss"] is None else (
            f"  val {row['val_loss']:.5g} (recon {row['val_recon']:.5g}, kl {row['val_kl']:.4g}, "
            f"mse {row['val_mse']:.4g})"
        )  # fmt: skip
        train = f"train {row['train_loss']:.5g} (recon {row['train_recon']:.5g}, kl {row['train_kl']:.4g}"
        self.reporter.line(
            f"epoch {epoch}/{self.cfg.epochs}  {train}, beta {row['beta']:.3g}){val}  "
            f"{row['images_per_s']:.0f} img/s" + ("  *best" if improved else "")
        )
