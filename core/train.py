"""Training: one loop a reader can follow, resumable, tracked in MLflow.

    python -m core.train [--params params.yaml] [--set key=value ...] [--force] [--no-resume]
    torchrun --nproc_per_node=N -m core.train ...        # DDP (rank 0 logs and checkpoints)

A run is identified by a hash of its resolved config + the data fingerprint. Its folder
`outputs/runs/<hash>/` holds `checkpoint.pt` (model, optimizer, scheduler, RNG states, epoch,
history; written atomically each epoch) and, once finished, `model.pt`. Asking for a config
that already has a FINISHED run reuses it; a killed run resumes from its last checkpoint and
ends with the same weights as an uninterrupted one (CPU, train.deterministic=true).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from core import tracking
from core.cli import params_from, parser, run_main
from core.config import Params
from core.data.dataset import ClipDataset, collate_clips, seed_worker, to_device
from core.data.store import open_split
from core.data.vocab import Vocab
from core.errors import UserError
from core.io import atomic_path, file_digest, write_json, write_text
from core.losses import cvls_loss
from core.model import CVLS, note_random_init
from core.runtime import Dist, autocast, init_distributed, pick_device, rng_state, seed_everything, set_rng_state

log = logging.getLogger("cvls")


class Diverged(UserError):
    """The loss became NaN/inf: the run stops and is marked FAILED."""


@dataclass
class TrainResult:
    run_hash: str
    run_dir: Path
    run_id: str | None
    reused: bool
    history: list[dict[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------- pieces
def data_fingerprint(params: Params) -> str:
    summary = params.processed / "summary.json"
    if not summary.is_file():
        raise UserError(f"{summary}: processed store not found; run extraction first (dvc repro extract)")
    return json.loads(summary.read_text())["fingerprint"]


def run_fingerprint(params: Params) -> str:
    """What a run's identity needs besides its params: the data, and the backbone's start weights
    (a retrained pretext or a different ImageNet file must not reuse old runs)."""
    weights = params.backbone_weights
    if weights is None:
        return data_fingerprint(params)
    if not weights.is_file():
        raise UserError(missing_weights(params))
    return f"{data_fingerprint(params)}+init:{file_digest(weights)[:16]}"


def missing_weights(params: Params) -> str:
    if params.model.init == "pretext":
        return (f"{params.backbone_weights}: pretext backbone not found; run the pretext stage first "
                "(dvc repro pretrain, or python -m core.pretext) or set model.init: scratch")
    return f"model.pretrained_weights: {params.backbone_weights}: file not found"


def run_dir_for(params: Params, run_hash: str) -> Path:
    return params.outputs / "runs" / run_hash


def load_vocab(params: Params) -> Vocab:
    return Vocab.load(params.processed / "vocab.json")


def build_model(params: Params, vocab: Vocab, *, init: bool = True) -> CVLS:
    """CVLS for `params`; init=False skips the backbone's start weights (a checkpoint follows)."""
    weights = params.backbone_weights if init else None
    if init and weights is None:
        note_random_init(params.model.backbone)
    if weights is not None and not weights.is_file():
        raise UserError(missing_weights(params))
    return CVLS(params.model, params.loss, len(vocab.words) + 1, weights=weights)


def clip_loader(params: Params, split: str, vocab: Vocab, train: bool, epoch: int, dist_: Dist) -> DataLoader:
    """A loader whose shuffling and augmentation depend only on (seed, epoch): resume-safe."""
    tp = params.train
    ds = ClipDataset(open_split(params.processed, split), vocab, params.data, train=train)
    gen = torch.Generator().manual_seed(tp.seed * 100_003 + epoch)
    sampler = None
    if dist_.world > 1:
        sampler = DistributedSampler(ds, dist_.world, dist_.rank, shuffle=train, seed=tp.seed)
        sampler.set_epoch(epoch)
    workers = tp.num_workers
    return DataLoader(
        ds, batch_size=tp.batch_size, shuffle=train and sampler is None, sampler=sampler, generator=gen,
        num_workers=workers, collate_fn=collate_clips, worker_init_fn=seed_worker,
        pin_memory=torch.cuda.is_available(), persistent_workers=False, drop_last=False,
        prefetch_factor=4 if workers else None,
    )


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn file cannot exist (atomic writes); this is a foreign/corrupt one
        raise UserError(f"{path}: cannot load checkpoint ({type(err).__name__}: {err}); delete it or use --force") from None


@torch.no_grad()
def validation_loss(model: torch.nn.Module, loader: DataLoader, params: Params, device: torch.device) -> float:
    model.eval()
    total, n = torch.zeros((), device=device), 0
    for batch in loader:
        batch = to_device(batch, device, params.train.channels_last and device.type == "cuda")
        with autocast(device, params.train):
            out = model(batch["frames"], batch["tokens"], batch["lengths"])
            loss, _ = cvls_loss(unwrap(model), out, batch, params.loss)
        total += loss.float() * len(batch["referent"])
        n += len(batch["referent"])
    return float(total / max(n, 1))


def unwrap(model: torch.nn.Module) -> CVLS:
    return model.module if isinstance(model, DistributedDataParallel) else model  # type: ignore[return-value]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    # fused: one multi-tensor kernel for all parameters instead of several ops per tensor
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def train_step(net: Any, model: CVLS, opt: torch.optim.Optimizer, batch: dict[str, Any], params: Params,
               device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimisation step on an on-device batch (Eq. 4 loss); `net` may wrap `model` (DDP, compile)."""
    tp = params.train
    with autocast(device, tp):
        out = net(batch["frames"], batch["tokens"], batch["lengths"])
        loss, parts = cvls_loss(model, out, batch, params.loss)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if tp.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), tp.grad_clip)
    opt.step()
    return loss, parts


# ---------------------------------------------------------------- the loop
def fit(params: Params, run_dir: Path, handle: tracking.RunHandle, dist_: Dist, device: torch.device, resume: bool) -> list[dict[str, float]]:
    """Train to params.train.epochs, checkpointing every epoch; returns the per-epoch history."""
    tp = params.train
    seed_everything(tp.seed, tp.deterministic)
    vocab = load_vocab(params)
    model = build_model(params, vocab).to(device)
    if device.type == "cuda" and tp.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, tp.lr, tp.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=tp.plateau_factor, patience=tp.plateau_patience)
    history: list[dict[str, float]] = []
    start = 0
    ckpt_path = run_dir / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        history, start = ckpt["history"], ckpt["epoch"]
        log.info("resuming %s from epoch %d/%d", run_dir.name, start, tp.epochs)
        for row in history:  # the new MLflow run carries the whole curve
            handle.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
    net: torch.nn.Module = model
    if dist_.world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=not params.loss.ccl)
    channels_last = tp.channels_last and device.type == "cuda"
    for epoch in range(start, tp.epochs):
        net.train()
        loader = clip_loader(params, "train", vocab, True, epoch, dist_)
        sums = torch.zeros(3, device=device)  # loss, seg, ccl, accumulated without host syncs
        bad = torch.zeros((), dtype=torch.bool, device=device)
        steps, clips, t0 = 0, 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tp.epochs}", unit="batch", disable=not dist_.is_main, leave=False)
        for batch in bar:
            batch = to_device(batch, device, channels_last)
            loss, parts = train_step(net, model, opt, batch, params, device)
            bad |= ~torch.isfinite(loss.detach())
            sums += torch.stack([loss.detach().float(), parts["seg"].float(), parts["ccl"].float()])
            steps += 1
            clips += len(batch["referent"])
            if steps % 10 == 0 or steps == len(loader):  # one host sync per 10 steps
                check_finite(bad, epoch, steps)
                bar.set_postfix(loss=f"{float(sums[0]) / steps:.4f}", clips_s=f"{clips / (time.perf_counter() - t0):.1f}")
            if tp.max_steps_per_epoch and steps >= tp.max_steps_per_epoch:
                break
        check_finite(bad, epoch, steps)
        val_loader = clip_loader(params, "val", vocab, False, epoch, Dist())
        val = validation_loss(net, val_loader, params, device) if len(val_loader.dataset) else float(sums[0]) / max(steps, 1)
        sched.step(val)
        means = (sums / max(steps, 1)).tolist()
        row = {"epoch": epoch + 1, "train_loss": means[0], "train_seg": means[1], "train_ccl": means[2], "val_loss": val,
               "lr": opt.param_groups[0]["lr"], "clips_per_s": clips / (time.perf_counter() - t0)}
        history.append(row)
        if dist_.is_main:
            handle.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
            log.info("epoch %d/%d train %.4f val %.4f lr %.1e %.1f clips/s", epoch + 1, tp.epochs, row["train_loss"], val, row["lr"], row["clips_per_s"])
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                        "rng": rng_state(), "epoch": epoch + 1, "history": history})
    if dist_.is_main:
        save_checkpoint(run_dir / "model.pt", {"model": model.state_dict(), "pretrained": model.pretrained, "vocab_words": len(vocab.words)})
    return history


def check_finite(bad: torch.Tensor, epoch: int, step: int) -> None:
    if bool(bad):
        raise Diverged(f"loss became NaN/inf in epoch {epoch + 1} by step {step}; lower train.lr or set train.grad_clip")


# ---------------------------------------------------------------- a tracked, reusable run
def train(params: Params, *, name: str = "train", tags: dict[str, str] | None = None, parent_run_id: str | None = None,
          force: bool = False, resume: bool = True, tracking_enabled: bool = True) -> TrainResult:
    """Train `params` unless a FINISHED run with the same config hash exists (then reuse it)."""
    device = pick_device(params.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    dist_ = init_distributed(device)
    fingerprint = data_fingerprint(params)
    run_hash = tracking.config_hash(params, run_fingerprint(params))
    run_dir = run_dir_for(params, run_hash)
    info_path = run_dir / "run.json"
    if not force and info_path.is_file() and (run_dir / "model.pt").is_file():
        info = json.loads(info_path.read_text())
        if not tracking_enabled or tracking.find_finished_run(params, run_hash) == info.get("run_id"):
            log.info("reusing finished run %s (config %s)", info.get("run_id"), run_hash)
            return TrainResult(run_hash, run_dir, info.get("run_id"), True, info.get("history", []))
    if force:
        for stale in ("checkpoint.pt", "model.pt", "run.json"):
            (run_dir / stale).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "params.yaml", yaml.safe_dump(params.to_dict(), sort_keys=False))
    all_tags = {"variant": name, "seed": str(params.train.seed), "dataset_fingerprint": fingerprint, "device": device.type,
                "backbone_init": params.model.init} | (tags or {})
    with tracking.tracked_run(params, name=name, run_hash=run_hash, tags=all_tags, parent_run_id=parent_run_id,
                              enabled=tracking_enabled and dist_.is_main) as handle:
        if (run_dir / "checkpoint.pt").is_file() and resume:
            handle.set_tags({"resumed": "true"})
        history = fit(params, run_dir, handle, dist_, device, resume)
        if dist_.is_main:
            model_pretrained = bool(load_checkpoint(run_dir / "model.pt")["pretrained"])
            handle.set_tags({"pretrained_backbone": str(model_pretrained).lower()})
            handle.log_artifact(run_dir / "params.yaml", "config")
            write_json(info_path, {"run_id": handle.run_id, "run_hash": run_hash, "fingerprint": fingerprint, "name": name,
                                   "pretrained": model_pretrained, "history": history})
    return TrainResult(run_hash, run_dir, handle.run_id, False, history)


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
