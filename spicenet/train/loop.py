"""A thin, resumable training loop for trainers that fit the (model, optimizer, mini-batch) mould.

Randomness is *indexed*, not streamed: the data order of epoch e is a permutation drawn from a generator seeded by
(seed, e), and each step gets its own generator seeded by (seed, step) for noise/chip draws. A run resumed from the
checkpoint after step k therefore replays steps k+1.. exactly as an uninterrupted run would (on CPU: bit-identical).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from spicenet.train.device import resolve_device
from spicenet.train.mismatch import _seed_int
from spicenet.train.run import RunDir


@dataclass
class StepContext:
    """What a step function gets besides model and batch."""

    step: int  # 0-based index of this optimizer step over the whole run
    epoch: int
    batch: int  # index of the batch within its epoch
    generator: torch.Generator  # seeded by (seed, step): use it for every random draw inside the step
    device: torch.device


def epoch_permutation(n: int, epoch: int, seed: int) -> torch.Tensor:
    """The data order of ``epoch``: a permutation of range(n) drawn from a generator seeded by (seed, epoch)."""
    g = torch.Generator().manual_seed(_seed_int(int(seed), 3, int(epoch)))
    return torch.randperm(n, generator=g)


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[torch.nn.Module, Sequence[torch.Tensor], StepContext], torch.Tensor | dict[str, Any]],
    data: Sequence[torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    run: RunDir | None = None,
    checkpoint_every: int = 0,
    eval_fn: Callable[[torch.nn.Module, int], dict[str, float]] | None = None,
    device: str | torch.device = "cpu",
    drop_last: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` for ``epochs`` over ``data`` (tensors sharing their first dimension) in mini-batches.

    ``step_fn(model, batch, ctx)`` returns the loss tensor (or a dict with key ``loss`` plus scalars to average per
    epoch); the loop does zero_grad / backward / optimizer.step. With a ``run``, it resumes from the newest checkpoint,
    checkpoints every ``checkpoint_every`` steps (0 = only at epoch ends) and after every epoch, logs per-epoch means
    (and ``eval_fn(model, epoch)``) to metrics.csv. Returns {steps, epochs, resumed_from_step, history}.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs/batch_size: expected >= 1, got {epochs}/{batch_size}")
    dev = resolve_device(device)
    model.to(dev)
    n = int(data[0].shape[0])
    if any(int(t.shape[0]) != n for t in data):
        raise ValueError(f"data: tensors differ in their first dimension: {[tuple(t.shape) for t in data]}")
    per_epoch = n // batch_size if drop_last else -(-n // batch_size)
    if per_epoch < 1:
        raise ValueError(f"batch_size: {batch_size} is larger than the data ({n} items) with drop_last")
    total = epochs * per_epoch
    step, sums, counts, resumed = 0, {}, {}, None
    if run is not None:
        ck = run.load_checkpoint(model=model, optimizer=optimizer, map_location=dev)
        if ck is not None:
            step = resumed = int(ck["step"])
            sums, counts = dict(ck["extra"].get("sums", {})), dict(ck["extra"].get("counts", {}))
            run.truncate_metrics(step // per_epoch - 1)
    from spicenet.progress import progress_bar

    bar = progress_bar(total, "train", enabled=progress, initial=step)
    model.train()
    while step < total:
        epoch, b = divmod(step, per_epoch)
        perm = epoch_permutation(n, epoch, seed)
        idx = perm[b * batch_size : (b + 1) * batch_size]
        batch = [t[idx].to(dev) for t in data]
        ctx = StepContext(step, epoch, b, torch.Generator().manual_seed(_seed_int(int(seed), 2, step)), dev)
        out = step_fn(model, batch, ctx)
        logs = out if isinstance(out, dict) else {"loss": out}
        loss = logs["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v)
            counts[k] = counts.get(k, 0) + 1
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.4g}")
        end_of_epoch = step % per_epoch == 0
        if end_of_epoch:
            row = {k: sums[k] / counts[k] for k in sums}
            if eval_fn is not None:
                model.eval()
                row.update(eval_fn(model, epoch))
                model.train()
            if run is not None:
                run.log_metrics(epoch, step=step, **row)
            sums, counts = {}, {}
        if run is not None and (end_of_epoch or (checkpoint_every and step % checkpoint_every == 0)):
            run.save_checkpoint(step=step, epoch=step // per_epoch, model=model, optimizer=optimizer,
                                extra={"sums": sums, "counts": counts})
    bar.close()
    model.eval()
    return {"steps": step, "epochs": epochs, "resumed_from_step": resumed,
            "history": run.read_metrics() if run is not None else []}
