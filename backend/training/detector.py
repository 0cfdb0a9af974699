"""The detector training recipe: flips (optionally all 8 dihedral transforms), colour jitter, multi-scale inputs (with
a cached backbone prefix: cached colour-jittered copies at scales of their own),
SGD with warm-up and a cosine schedule that follows a time budget (and with a long budget, a second schedule that
fine-tunes the backbone's last blocks too: `TrainConfig.fine_tune_s`), bf16 autocast on GPU and on CPUs with native bf16
(`autocast_device`). The network itself is `backend.models.detector`.

Images are uint8 (H, W, 3); boxes float32 (N, 4) xyxy pixels; labels int64 (N,) in 1..C (0 = background).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from backend.core.cancel import NEVER, StopFlag
from backend.models.precision import autocast_device
from backend.models.tta import view, view_boxes
from backend.training.cached_features import TapCache, cached_losses
from backend.training.colour import jitter_colour

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """epochs and time_budget_s bound the run (whichever ends first; epochs bound each phase when there are two,
    `fine_tune_s`); lr is the peak learning rate;
    dihedral adds 90-degree turns and vertical flips (top-down imagery) to the horizontal flips;
    colour_jitter is the largest relative change of brightness, contrast and saturation (0 = off; when the
    backbone's frozen prefix is cached, `backend.training.cached_features`, it makes the `cached_variants` - 1 cached
    copies of each image); feature_cache_mb bounds that cache; cpu_bf16: train in bf16 autocast on a CPU with native
    bf16 (`autocast_device`)."""

    epochs: int = 40
    batch_size: int = 4
    lr: float = 0.02
    time_budget_s: float = 600.0
    dihedral: bool = False
    colour_jitter: float = 0.2
    seed: int = 0
    feature_cache_mb: int = 1024
    cpu_bf16: bool = True
    weight_decay: float = 1e-4  # SGD's L2 penalty on the trained weights
    cached_variants: int = 1  # the image and its jittered copies whose cached taps training draws from
    fine_tune_s: float = 0.0  # seconds of `time_budget_s` for a second phase that also trains the frozen backbone
    # blocks from `fine_tune_from` on (0: one phase; `backend.training.recipe.training_phases`)
    fine_tune_from: int = 16
    fine_tune_lr: float = 0.005  # that phase's peak learning rate


def _to_target(boxes: np.ndarray, labels: np.ndarray, device: str) -> dict:
    return {"boxes": torch.as_tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4),
            "labels": torch.as_tensor(labels, dtype=torch.int64, device=device)}


def augment(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
            dihedral: bool, colour_jitter: float = 0.0) -> tuple[torch.Tensor, np.ndarray]:
    """A random view (`backend.models.tta.view`): horizontal flip; with `dihedral` also vertical flip and
    transpose (all 8 square symmetries); then colour jitter of the given strength.
    image: uint8 (H, W, 3); boxes float32 (N, 4) xyxy pixels → (float (3, H', W') in [0, 1], boxes in the view)."""
    k = int(rng.random() < 0.5)
    if dihedral:
        k |= int(rng.random() < 0.5) << 1 | int(rng.random() < 0.5) << 2
    height, width = image.shape[:2]
    tensor = torch.from_numpy(view(image, k)).permute(2, 0, 1).float().div(255)
    return jitter_colour(tensor, rng, colour_jitter), view_boxes(boxes, k, width, height)


def learning_rate(progress: float, peak: float, warmup: float = 0.1) -> float:
    """Linear warm-up to `peak` over the first `warmup` of training, then cosine decay to 1 % of it."""
    if progress < warmup:
        return peak * (0.1 + 0.9 * progress / warmup)
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return peak * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * t)))


def train_detector(model: FasterRCNN, items: list[tuple[np.ndarray, np.ndarray, np.ndarray]], device: str,
                   config: TrainConfig = TrainConfig(), progress=None, stop: StopFlag = NEVER,
                   pause: Callable[[], float] | None = None) -> dict:
    """SGD with warm-up and cosine decay, bf16 autocast where `autocast_device` says (weights stay float32).

    The schedule runs on progress = max(steps done / steps planned, time used / the phase's seconds), so a run cut
    short by its time budget still ends with a fully decayed learning rate. With `config.fine_tune_s` (and backbone
    blocks frozen from `config.fine_tune_from` on), the run has two phases, each with its own schedule and up to
    `config.epochs`: the first (`time_budget_s` - `fine_tune_s`) trains what is not frozen (from cached taps when the
    whole backbone is), the second (`fine_tune_s`, peak lr `fine_tune_lr`) also those blocks, from the first's
    weights; they are frozen again after it, as the model's spec says.
    items: (uint8 (H, W, 3) image, float32 (N, 4) xyxy boxes, int64 (N,) labels in 1..C).
    progress: optional callable(epoch, epochs, loss) called after every epoch. `stop` is checked before every
    step (`Cancelled` ends the run). `pause`: optional callable run before every step that may wait (e.g.
    `backend.jobs.yielding.TrainingYield`: the project's predict job takes the cores first) and returns the
    seconds it waited; those do not count against `config.time_budget_s`. Returns training stats (`train_s`:
    seconds training, pauses excluded; `paused_s`; `fine_tune`: the second phase's from block, epochs and seconds).
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    backbone = model.backbone
    frozen = getattr(backbone, "frozen_blocks", 0)
    fine_tune = config.fine_tune_s > 0 and config.fine_tune_from < frozen
    head_s = config.time_budget_s - (config.fine_tune_s if fine_tune else 0.0)
    started = time.perf_counter()
    total = config.epochs * (2 if fine_tune else 1)  # at most, for progress
    first = _phase(model, items, device, config, head_s, config.lr, rng, progress, stop, pause, 0, total)
    cache = first.pop("cache")
    cached = {"cached_taps": len(cache.items), "cache_mb": round(cache.bytes / 2**20, 1)} if cache else {}
    del cache  # the second phase caches taps of its own prefix: one cache's memory at a time
    phases, extra = [first], {}
    if fine_tune:
        blocks = backbone.blocks[config.fine_tune_from:frozen]
        backbone.frozen_blocks = config.fine_tune_from
        blocks.requires_grad_(True)
        try:
            second = _phase(model, items, device, config, config.fine_tune_s, config.fine_tune_lr, rng, progress,
                            stop, pause, first["epochs"], total)
        finally:
            blocks.requires_grad_(False)
            backbone.frozen_blocks = frozen
        phases.append(second)
        extra = {"fine_tune": {"from_block": config.fine_tune_from, "epochs": second["epochs"],
                               "train_s": round(second["train_s"], 2)}}
    model.eval()
    losses = [loss for phase in phases for loss in phase["losses"]]
    paused = sum(phase["paused_s"] for phase in phases)
    return {"epochs": sum(p["epochs"] for p in phases), "steps": sum(p["steps"] for p in phases), **cached,
            "final_loss": round(float(np.mean(losses[-20:])), 4) if losses else None,
            "train_s": round(time.perf_counter() - started - paused, 2), "paused_s": round(paused, 2), **extra}


def _phase(model: FasterRCNN, items: list, device: str, config: TrainConfig, budget_s: float, peak_lr: float,
           rng: np.random.Generator, progress, stop: StopFlag, pause, epoch_offset: int = 0,
           total_epochs: int | None = None) -> dict:
    """One schedule (warm-up, cosine decay over `budget_s` seconds or `config.epochs` epochs) of SGD on the
    parameters that require gradients now → {"epochs", "steps", "losses", "train_s", "paused_s", "cache"}.
    Epochs are reported to `progress` and the log after `epoch_offset`, out of `total_epochs` (`config.epochs`)."""
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(params, lr=peak_lr, momentum=0.9, weight_decay=config.weight_decay)
    batch_size = config.batch_size
    steps = max(1, config.epochs * ((len(items) + batch_size - 1) // batch_size))
    amp = autocast_device(device, config.cpu_bf16)
    cache = TapCache(config.feature_cache_mb * 2**20) if getattr(model.backbone, "cacheable", False) else None
    started, step, losses, epoch, done, paused = time.perf_counter(), 0, [], 0, 0.0, 0.0
    while done < 1.0 and epoch < config.epochs:
        epoch += 1
        order = rng.permutation(len(items))
        for start in range(0, len(items), batch_size):
            stop.check()
            if pause is not None:
                paused += pause()
            done = max(step / steps, (time.perf_counter() - started - paused) / max(budget_s, 1e-9))
            if done >= 1.0:
                break
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(done, peak_lr)
            with torch.autocast(amp or "cpu", dtype=torch.bfloat16, enabled=amp is not None):
                if cache is not None:
                    losses_of = cached_losses(model, items, order[start:start + batch_size], rng, cache,
                                              config.dihedral, device, config.cached_variants,
                                              config.colour_jitter)
                else:
                    images, targets = [], []
                    for i in order[start:start + batch_size]:
                        image, boxes = augment(items[i][0], items[i][1], rng, config.dihedral, config.colour_jitter)
                        images.append(image.to(device))
                        targets.append(_to_target(boxes, items[i][2], device))
                    losses_of = model(images, targets)
                loss = sum(losses_of.values())
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimiser.step()
            step += 1
            losses.append(float(loss.detach()))
        mean_loss = float(np.mean(losses[-20:])) if losses else float("nan")
        total = total_epochs or config.epochs
        log.info("epoch %d/%d: loss %.3f (%.0f s, %.0f s of it paused)", epoch_offset + epoch, total, mean_loss,
                 time.perf_counter() - started, paused)
        if progress is not None:
            progress(epoch_offset + epoch, total, mean_loss)
    if step < steps:
        log.info("time budget reached after %d of %d steps", step, steps)
    return {"epochs": epoch, "steps": step, "losses": losses, "train_s": time.perf_counter() - started - paused,
            "paused_s": paused, "cache": cache}
