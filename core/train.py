"""A CVLS training run: the Eq. 4 objective and its hooks for the loop (core/loop.py), tracked.

    python -m core.train [--params params.yaml] [--set key=value ...] [--force] [--no-resume]
    torchrun --nproc_per_node=N -m core.train ...        # DDP (rank 0 logs and checkpoints)

The loop itself (epochs, steps, NaN check) is `core.loop.fit`, shared with the pretext; a CVLS
run adds the hooks of `core.hooks` (`cvls_hooks`). A run is identified by a hash of its resolved
config + the run fingerprint (`core.identity.config_hash`). Its folder `outputs/runs/<hash>/`
holds `checkpoint.pt` (model, optimizer, scheduler, RNG states, epoch, history; written
atomically each epoch) and, once finished, `model.pt` and `run.json`. `train` first looks for a
FINISHED run of the config, here or on another machine (`core.reuse`), and reuses it; else it
fits a new one (`fit_run`): a killed run resumes from its last checkpoint and ends with the same
weights as an uninterrupted one (CPU, train.deterministic=true).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from core import results, tracking
from core.checkpoint import build_model, load_checkpoint, load_vocab, missing_weights, save_checkpoint
from core.cli import params_from, parser, run_main
from core.config import Params
from core.data.dataset import FrameDataset, to_device
from core.data.store import open_split
from core.data.vocab import Vocab
from core.diagnostics import gradient_share_names, gradient_shares, shared_parameters
from core.errors import UserError
from core.hooks import Checkpointer, GradShares, LRSchedule, Validation, ValMetrics
from core.identity import config_hash
from core.io import file_digest, write_json, write_text
from core.loop import Hook, LossFn, Objective, Schedule, clip_loader, fit, optimizer_step
from core.losses import cvls_loss, cvls_terms
from core.metrics import summarize
from core.model import CVLS
from core.reuse import finished_run
from core.runtime import (
    Dist,
    autocast,
    channels_last,
    environment,
    init_distributed,
    on_device,
    pick_device,
    seed_everything,
)
from core.scoring import predict

log = logging.getLogger("cvls")

# the learning curves' points (train.val_metrics_every): history name -> core.metrics.summarize key
VAL_METRICS = {"val_mAP": "mAP", "val_mean_iou": "mean_iou"}


@dataclass
class TrainResult:
    run_hash: str
    run_dir: Path
    run_id: str | None
    reused: bool
    history: list[dict[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------- pieces
def run_fingerprint(params: Params) -> str:
    """What a run's identity needs besides its params: the data, the backbone's start weights (a
    retrained pretext or a different ImageNet file must not reuse old runs) and, under torchrun,
    the number of processes: each trains train.batch_size clips a step, so 4 processes train with 4
    times the batch, another run (one process keeps the identity it always had)."""
    data = results.data_fingerprint(params)  # the store first: it comes first in the pipeline
    world = int(os.environ.get("WORLD_SIZE", "1"))
    processes = f"+processes:{world}" if world > 1 else ""
    weights = params.backbone_weights
    if weights is None:
        return data + processes
    if not weights.is_file():
        raise UserError(missing_weights(params))
    return f"{data}+init:{file_digest(weights)[:16]}{processes}"


@torch.no_grad()
def validation_loss(model: torch.nn.Module, loader: DataLoader, params: Params, device: torch.device) -> float:
    model.eval()
    total, n = torch.zeros((), device=device), 0
    for batch in loader:
        batch = to_device(batch, device, channels_last(device, params.train))
        with autocast(device, params.train):
            out = model(batch["frames"], batch["tokens"], batch["lengths"])
            loss, _ = cvls_loss(unwrap(model), out, batch, params.loss)
        total += loss.float() * len(batch["referent"])
        n += len(batch["referent"])
    return float(total / max(n, 1))


def validation_metrics(model: CVLS, ds: FrameDataset, params: Params, device: torch.device) -> dict[str, float]:
    """Val mAP and mean IoU under the evaluation's own protocol (`core.scoring.predict`, then
    `core.metrics.summarize`): the points of a run's learning curves."""
    model.eval()
    rows = predict(model, ds, params, device, desc="val metrics")
    m = summarize([r["inter"] for r in rows], [r["union"] for r in rows])
    return {name: m[key] for name, key in VAL_METRICS.items()}


def unwrap(model: torch.nn.Module) -> CVLS:
    return model.module if isinstance(model, DistributedDataParallel) else model  # type: ignore[return-value]


def cvls_step_loss(net: torch.nn.Module, model: CVLS, params: Params) -> LossFn:
    """Eq. 4 on an on-device batch; `net` may wrap `model` (DDP, compile)."""

    def loss(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = net(batch["frames"], batch["tokens"], batch["lengths"])
        return cvls_loss(model, out, batch, params.loss)

    return loss


def cvls_probe_loss(net: torch.nn.Module, model: CVLS, params: Params) -> LossFn:
    """`cvls_step_loss` plus the gradient shares of Eq. 4's two terms on the shared encoders
    (`core.diagnostics`), from the same forward: the probe of train.grad_share_every."""
    groups = shared_parameters(model)

    def loss(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = net(batch["frames"], batch["tokens"], batch["lengths"])
        total, parts = cvls_loss(model, out, batch, params.loss)  # the step's loss, as on every step
        terms, _ = cvls_terms(model, out, batch, params.loss)  # its two summands again, for their gradients
        return total, parts | gradient_shares(terms, groups)

    return loss


def train_step(
    net: Any, model: CVLS, opt: torch.optim.Optimizer, batch: dict[str, Any], params: Params, device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimisation step of a CVLS run on an on-device batch (what `fit` runs per batch)."""
    return optimizer_step(cvls_step_loss(net, model, params), opt, batch, params, device, params.train.grad_clip)


def schedule_of(params: Params) -> Schedule:
    tp = params.train
    return Schedule(
        epochs=tp.epochs,
        lr=tp.lr,
        weight_decay=tp.weight_decay,
        grad_clip=tp.grad_clip,
        steps_per_epoch=tp.max_steps_per_epoch,
    )


# ---------------------------------------------------------------- fitting a new run
def cvls_hooks(
    params: Params, net: torch.nn.Module, model: CVLS, vocab: Vocab, run_dir: Path, device: torch.device, resume: bool
) -> list[Hook]:
    """The CVLS run's hooks around `core.loop.fit`, in their order (`core.hooks`)."""
    tp = params.train

    def validate() -> float | None:
        val_loader = clip_loader(params, "val", vocab, False, 0, Dist())
        return validation_loss(net, val_loader, params, device) if len(val_loader.dataset) else None

    hooks: list[Hook] = [Validation(validate)]
    if tp.grad_share_every:
        names = gradient_share_names(shared_parameters(model))
        hooks.append(GradShares(cvls_probe_loss(net, model, params), names, tp.grad_share_every))
    hooks.append(
        LRSchedule(tp.lr_schedule, patience=tp.plateau_patience, factor=tp.plateau_factor, warmup=tp.warmup_steps)
    )
    val_frames = FrameDataset(open_split(params.processed, "val"), vocab, params.data)
    if tp.val_metrics_every and len(val_frames):  # the val split as evaluation scores it

        def val_metrics() -> dict[str, float]:  # the unwrapped model, on rank 0 alone: no DDP collectives
            return validation_metrics(model, val_frames, params, device)

        hooks.append(ValMetrics(val_metrics, tuple(VAL_METRICS), tp.val_metrics_every))
    hooks.append(Checkpointer(run_dir / "checkpoint.pt", resume))
    return hooks


def fit_cvls(
    params: Params, run_dir: Path, handle: tracking.RunHandle, dist_: Dist, device: torch.device, resume: bool
) -> list[dict[str, float]]:
    """Train CVLS to params.train.epochs with `core.loop.fit`; model.pt at the end."""
    tp = params.train
    seed_everything(tp.seed, tp.deterministic)
    vocab = load_vocab(params)
    model = on_device(build_model(params, vocab), device, tp)
    net: torch.nn.Module = model
    if dist_.world > 1:
        net = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not params.loss.ccl,
        )
    objective = Objective(model, cvls_step_loss(net, model, params), ("seg", "ccl"), train_mode=net.train)
    history = fit(
        objective,
        schedule_of(params),
        lambda epoch: clip_loader(params, "train", vocab, True, epoch, dist_),
        cvls_hooks(params, net, model, vocab, run_dir, device, resume),
        params,
        handle,
        device,
        is_main=dist_.is_main,
    )
    if dist_.is_main:
        save_checkpoint(
            run_dir / "model.pt",
            {"model": model.state_dict(), "pretrained": model.pretrained, "vocab_words": len(vocab.words)},
        )
    return history


def fit_run(
    params: Params,
    run_hash: str,
    run_dir: Path,
    *,
    name: str,
    tags: dict[str, str],
    parent_run_id: str | None,
    resume: bool,
    tracking_enabled: bool,
    dist_: Dist,
    device: torch.device,
) -> TrainResult:
    """Train the run of `run_hash` in `run_dir` (from its checkpoint with `resume`) as a tracked MLflow
    run; its run.json (run id, environment, history) at the end."""
    fingerprint = results.data_fingerprint(params)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "params.yaml", yaml.safe_dump(params.to_dict(), sort_keys=False))
    env = environment(device, params.train)
    all_tags = (
        {
            "variant": name,
            "seed": str(params.train.seed),
            "dataset_fingerprint": fingerprint,
            "device": device.type,
            "backbone_init": params.model.init,
        }
        | tracking.env_tags(env)
        | tags
    )
    with tracking.tracked_run(
        params,
        name=name,
        run_hash=run_hash,
        tags=all_tags,
        parent_run_id=parent_run_id,
        enabled=tracking_enabled and dist_.is_main,
    ) as handle:
        if (run_dir / "checkpoint.pt").is_file() and resume:
            handle.set_tags({"resumed": "true"})
        history = fit_cvls(params, run_dir, handle, dist_, device, resume)
        if dist_.is_main:
            model_pretrained = bool(load_checkpoint(run_dir / "model.pt")["pretrained"])
            handle.set_tags({"pretrained_backbone": str(model_pretrained).lower()})
            handle.log_artifact(run_dir / "params.yaml", "config")
            info_path = run_dir / results.RUN_INFO
            write_json(
                info_path,
                {
                    "run_id": handle.run_id,
                    "run_hash": run_hash,
                    "fingerprint": fingerprint,
                    "name": name,
                    "pretrained": model_pretrained,
                    "environment": env,
                    "history": history,
                },
            )
            handle.log_artifact(info_path, "run")  # with eval/ (core.evaluate): what `core.reuse.fetch_run` copies
    return TrainResult(run_hash, run_dir, handle.run_id, False, history)


# ---------------------------------------------------------------- a tracked, reusable run
def train(
    params: Params,
    *,
    name: str = "train",
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    force: bool = False,
    resume: bool = True,
    tracking_enabled: bool = True,
) -> TrainResult:
    """Train `params` unless a FINISHED run with the same config hash exists (then reuse it)."""
    device = pick_device(params.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    dist_ = init_distributed(device)
    run_hash = config_hash(params, run_fingerprint(params))
    run_dir = results.run_dir(params, run_hash)
    if force:
        for stale in ("checkpoint.pt", "model.pt", results.RUN_INFO):
            (run_dir / stale).unlink(missing_ok=True)
    else:
        # fetch in one process only: under torchrun the ranks would race the copy (rank 0 reused, the rest training)
        info = finished_run(params, run_hash, run_dir, tracking_enabled=tracking_enabled, fetch=dist_.world == 1)
        if info is not None:
            return TrainResult(run_hash, run_dir, info.get("run_id"), True, info.get("history", []))
    return fit_run(
        params,
        run_hash,
        run_dir,
        name=name,
        tags=tags or {},
        parent_run_id=parent_run_id,
        resume=resume,
        tracking_enabled=tracking_enabled,
        dist_=dist_,
        device=device,
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("Train CVLS (one run; reused when an identical FINISHED run exists)")
    p.add_argument("--force", action="store_true", help="train again even if an identical finished run exists")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="ignore an interrupted run's checkpoint")
    p.add_argument("--name", default="train", help="run name / variant tag")
    p.add_argument("--out", type=Path, default=None, help="also write run.json + history here (the DVC stage output)")
    args = p.parse_args(argv)
    params = params_from(args)
    result = train(params, name=args.name, force=args.force, resume=args.resume)
    if args.out:
        export_run(result, args.out)
    print(f"run {result.run_id} ({'reused' if result.reused else 'trained'}), folder {result.run_dir}")
    return 0


def export_run(result: TrainResult, out: Path) -> None:
    """The DVC `train` stage's outputs: a pointer to the run and its curves (for `dvc plots`)."""
    write_json(out / "run.json", {"run_id": result.run_id, "run_hash": result.run_hash, "run_dir": str(result.run_dir)})
    write_json(out / "history.json", result.history)


if __name__ == "__main__":
    run_main(main)
