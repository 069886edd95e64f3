"""Epoch time of hyperflow's Trainer against a bare PyTorch loop, a DataLoader loop and Lightning.

All contenders train the same MLP (hyperflow.core.models.mlp, 64-256-256-10) on the digits training split
with Adam at a constant learning rate, batch 64, the same number of optimizer steps per epoch and the
same thread count, and each one runs a validation pass (loss + accuracy on the whole validation split)
after every epoch, because hyperflow's Trainer always does. "ms/epoch" is the wall time of one fit
call (N epochs, training + per-epoch validation) divided by N; model and optimizer are built outside the
timed region. Contenders are interleaved in every round (rotating order) after a warm-up round, and
ratios are taken against the bare loop measured in the same process.

The 1.05x target is decided by a finer A/B: one-epoch fits of hyperflow and the bare loop run back to
back 100 times (order alternating), median of the per-pair ratios, because the speed of a shared
2-core machine drifts by tens of percent within seconds. Threads tables: the same MLP, and the shapes
U-Net (a conv net), each at torch.set_num_threads(1) and (2).

    python bench/trainer.py                   # 11 rounds x 10 epochs, threads=1
    python bench/trainer.py --rounds 7 --epochs 20
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hyperflow.core.loading import load_dataset
from hyperflow.core.losses import build_loss
from hyperflow.core.models import build_model, mlp
from hyperflow.core.trainer import Trainer, steps_per_epoch

LR = 3e-3


def build(seed: int, shape: tuple[int, ...], n_out: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = mlp(shape, n_out, width=256, depth=2)
    return model, torch.optim.Adam(model.parameters(), lr=LR)


def validate(model: nn.Module, loss_fn: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """The per-epoch validation pass given to the hand-written loops: loss and accuracy, eval mode."""
    model.eval()
    with torch.inference_mode():
        out = model(X)
        return float(loss_fn(out, y)), float((out.argmax(1) == y).double().mean())


# ------------------------------------------------------------------------------------------ contenders
# Each returns a zero-argument callable that runs one fit and returns the final validation accuracy.


def make_hyperflow(ds, epochs: int, bs: int, seed: int) -> Callable[[], float]:
    model, opt = build(seed, ds.input_shape, ds.output_size)
    trainer = Trainer(
        model,
        nn.CrossEntropyLoss(),
        opt,
        None,
        task="classification",
        epochs=epochs,
        batch_size=bs,
        seed=seed,
        device="cpu",
    )

    def run() -> float:
        result = trainer.fit(ds.X_train, ds.y_train, ds.X_val, ds.y_val)
        return result.history[-1]["val_accuracy"]

    return run


def make_unet(ds, epochs: int, bs: int, seed: int) -> Callable[[], float]:
    """hyperflow's Trainer on the shapes U-Net (channels=16, bce_dice): a conv net, for the threads table."""
    torch.manual_seed(seed)
    model = build_model("unet", ds.input_shape, ds.output_size, task="segmentation")
    trainer = Trainer(
        model,
        build_loss(None, "segmentation"),
        torch.optim.Adam(model.parameters(), lr=LR),
        None,
        task="segmentation",
        epochs=epochs,
        batch_size=bs,
        seed=seed,
        device="cpu",
    )

    def run() -> float:
        return trainer.fit(ds.X_train, ds.y_train, ds.X_val, ds.y_val).history[-1]["val_dice"]

    return run


def make_bare(ds, epochs: int, bs: int, seed: int) -> Callable[[], float]:
    model, opt = build(seed, ds.input_shape, ds.output_size)
    loss_fn = nn.CrossEntropyLoss()
    X, y, Xv, yv = ds.X_train, ds.y_train, ds.X_val, ds.y_val
    n = len(X)
    n_steps = steps_per_epoch(n, bs)  # same steps as the Trainer (a trailing batch of 1 is dropped)

    def run() -> float:
        gen = torch.Generator().manual_seed(seed)
        acc = 0.0
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for step in range(n_steps):
                idx = perm[step * bs : (step + 1) * bs]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(X[idx]), y[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            _, acc = validate(model, loss_fn, Xv, yv)
        return acc

    return run


def make_dataloader(ds, epochs: int, bs: int, seed: int) -> Callable[[], float]:
    model, opt = build(seed, ds.input_shape, ds.output_size)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(ds.X_train, ds.y_train),
        batch_size=bs,
        shuffle=True,
        generator=gen,
        drop_last=len(ds.X_train) % bs == 1,
    )

    def run() -> float:
        acc = 0.0
        for _ in range(epochs):
            model.train()
            total = 0.0
            for xb, yb in loader:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                total += loss.item() * len(xb)
            _, acc = validate(model, loss_fn, ds.X_val, ds.y_val)
        return acc

    return run


def lightning_factory(log_metrics: bool) -> Callable | None:
    try:
        import lightning.pytorch as pl
    except ImportError:
        try:
            import pytorch_lightning as pl  # type: ignore[no-redef]
        except ImportError:
            return None
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning).*")

    class Module(pl.LightningModule):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model, self.loss_fn, self.val_acc = model, nn.CrossEntropyLoss(), 0.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            loss = self.loss_fn(self.model(xb), yb)
            if log_metrics:
                self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(xb))
            return loss

        def validation_step(self, batch, batch_idx):
            xb, yb = batch
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
            acc = (out.argmax(1) == yb).double().mean()
            self.val_acc = float(acc)
            if log_metrics:
                self.log_dict({"val_loss": loss, "val_accuracy": acc}, batch_size=len(xb))

        def configure_optimizers(self):
            return torch.optim.Adam(self.model.parameters(), lr=LR)

    def make(ds, epochs: int, bs: int, seed: int) -> Callable[[], float]:
        model, _ = build(seed, ds.input_shape, ds.output_size)
        module = Module(model)
        gen = torch.Generator().manual_seed(seed)
        train = DataLoader(
            TensorDataset(ds.X_train, ds.y_train),
            batch_size=bs,
            shuffle=True,
            generator=gen,
            drop_last=len(ds.X_train) % bs == 1,
        )
        val = DataLoader(TensorDataset(ds.X_val, ds.y_val), batch_size=len(ds.X_val))  # one batch, like the rest
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            deterministic=False,
        )

        def run() -> float:
            trainer.fit(module, train, val)
            return module.val_acc

        return run

    return make


# ------------------------------------------------------------------------------------------ harness


def time_rounds(
    contenders: dict[str, Callable],
    ds,
    args,
    threads_of: dict[str, int],
    epochs: int | None = None,
    rounds: int | None = None,
) -> dict[str, dict]:
    """Warm-up round, then ``rounds`` interleaved rounds in rotating order. Returns per-contender
    lists of ms/epoch and the last validation accuracy (or dice)."""
    epochs, rounds = epochs or args.epochs, rounds or args.rounds
    names = list(contenders)
    out = {name: {"ms": [], "cpu": [], "acc": float("nan")} for name in names}
    for r in range(rounds + 1):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            torch.set_num_threads(threads_of[name])
            run = contenders[name](ds, epochs, args.batch_size, args.seed + r)
            gc.collect()  # no collection of an earlier contender's garbage inside this one's timing
            started, cpu_started = time.perf_counter(), time.process_time()
            acc = run()
            ms = (time.perf_counter() - started) * 1000 / epochs
            cpu = (time.process_time() - cpu_started) * 1000 / epochs
            if r > 0:  # round 0 is the warm-up
                out[name]["ms"].append(ms)
                out[name]["cpu"].append(cpu)
                out[name]["acc"] = acc
    return out


def ab_pairs(make_a: Callable, make_b: Callable, ds, args) -> tuple[list[float], list[float]]:
    """Fine-grained A/B: one model per contender, then ``args.ab_pairs`` pairs of one-epoch fits run back
    to back (order alternating A-B / B-A), so that both halves of a pair see the same machine speed."""
    torch.set_num_threads(args.threads)
    run_a, run_b = make_a(ds, 1, args.batch_size, args.seed), make_b(ds, 1, args.batch_size, args.seed)
    for _ in range(5):  # warm-up
        run_a(), run_b()
    a_ms, b_ms = [], []
    gc.collect()
    for i in range(args.ab_pairs):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            started = time.perf_counter()
            (run_a if which == 0 else run_b)()
            (a_ms if which == 0 else b_ms).append((time.perf_counter() - started) * 1000)
    return a_ms, b_ms


def print_table(title: str, results: dict[str, dict], baseline: str, quality: str = "val acc") -> None:
    base = results[baseline]["ms"]
    print(f"\n{title}")
    print(
        f"{'contender':<30} {'median ms/epoch':>16} {'min':>8} {'max':>8} {'ratio':>7} {'paired':>7} "
        f"{'cpu ms':>7} {'cpu ratio':>9} {quality:>8}"
    )
    for name, res in results.items():
        ms = res["ms"]
        med = statistics.median(ms)
        ratio = med / statistics.median(base)
        paired = statistics.median(a / b for a, b in zip(ms, base))
        cpu = statistics.median(res["cpu"])
        cpu_ratio = cpu / statistics.median(results[baseline]["cpu"])
        print(
            f"{name:<30} {med:>16.2f} {min(ms):>8.2f} {max(ms):>8.2f} {ratio:>6.2f}x {paired:>6.2f}x "
            f"{cpu:>7.2f} {cpu_ratio:>8.2f}x {res['acc']:>8.3f}"
        )
    print(
        f"ratio = median / median of '{baseline}' (wall time); paired = median over rounds of the per-round "
        f"ratio; cpu ms = process CPU time per epoch (all threads), less sensitive to other processes"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=11, help="timed rounds after one warm-up round (default 11)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per fit (default 10)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads for the main comparison (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--ab-pairs",
        type=int,
        default=100,
        help="pairs of one-epoch fits in the hyperflow-vs-bare A/B that decides the 1.05x target (0 = skip)",
    )
    p.add_argument("--no-lightning", action="store_true", help="skip PyTorch Lightning")
    p.add_argument("--no-threads", action="store_true", help="skip the threads=1 vs threads=2 comparison")
    p.add_argument(
        "--unet-epochs",
        type=int,
        default=1,
        help="epochs per fit of the shapes U-Net in the threads table (0 = skip the U-Net rows)",
    )
    p.add_argument("--unet-rounds", type=int, default=3, help="rounds of the U-Net threads rows (default 3)")
    args = p.parse_args()

    ds = load_dataset("digits")
    n = len(ds.X_train)
    print(
        f"torch {torch.__version__} · python {platform.python_version()} · {torch.get_num_threads()} "
        f"default threads · digits train {n} rows, val {len(ds.X_val)} · MLP 64-256-256-10 · Adam lr={LR} "
        f"constant · batch {args.batch_size} · {steps_per_epoch(n, args.batch_size)} steps/epoch · "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"timed: one fit of {args.epochs} epochs = training + a validation pass after each epoch (same for "
        f"all contenders), divided by {args.epochs}; {args.rounds} interleaved rounds after a warm-up round"
    )

    contenders: dict[str, Callable] = {
        "bare loop (tensor slices)": make_bare,
        "hyperflow Trainer": make_hyperflow,
        "DataLoader(TensorDataset)": make_dataloader,
    }
    note = ""
    if not args.no_lightning:
        logged, unlogged = lightning_factory(True), lightning_factory(False)
        if logged is None:
            note = "PyTorch Lightning is not importable: skipped"
        else:
            import lightning

            contenders["Lightning (self.log)"] = logged
            contenders["Lightning (no self.log)"] = unlogged
            note = (
                f"Lightning {lightning.__version__}: CPU, logger/checkpointing/progress bar/model summary off, "
                f"no sanity val steps; DataLoader for train, one-batch DataLoader for val"
            )
    threads = {name: args.threads for name in contenders}
    results = time_rounds(contenders, ds, args, threads)
    print_table(f"epoch time, threads={args.threads}", results, "bare loop (tensor slices)")
    if note:
        print(note)
    hf = statistics.median(results["hyperflow Trainer"]["ms"])
    if args.ab_pairs:
        a_ms, b_ms = ab_pairs(make_hyperflow, make_bare, ds, args)
        ratios = sorted(a / b for a, b in zip(a_ms, b_ms))
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        paired = statistics.median(ratios)
        print(
            f"\nA/B, hyperflow Trainer vs bare loop: {args.ab_pairs} pairs of one-epoch fits back to back "
            f"(order alternating), threads={args.threads}"
        )
        print(
            f"  median ms/epoch: hyperflow {statistics.median(a_ms):.2f}, bare loop {statistics.median(b_ms):.2f}; "
            f"per-pair ratio median {paired:.3f}x (interquartile {q1:.3f}-{q3:.3f})"
        )
        print(
            f"target hyperflow <= 1.05x bare loop (A/B per-pair median): {paired:.3f}x -> "
            f"{'met' if paired <= 1.05 else 'NOT met'}"
        )
    else:
        bare = statistics.median(results["bare loop (tensor slices)"]["ms"])
        print(f"target hyperflow <= 1.05x bare loop: {hf / bare:.2f}x -> {'met' if hf / bare <= 1.05 else 'NOT met'}")
    if "Lightning (self.log)" in results:
        for name in ("Lightning (self.log)", "Lightning (no self.log)"):
            speedup = statistics.median(results[name]["ms"]) / hf
            print(
                f"target hyperflow >= 1.5x faster than {name}: {speedup:.2f}x -> "
                f"{'met' if speedup >= 1.5 else 'NOT met'}"
            )

    if not args.no_threads:
        contenders = {
            "hyperflow threads=1": make_hyperflow,
            "hyperflow threads=2": make_hyperflow,
            "bare loop threads=1": make_bare,
            "bare loop threads=2": make_bare,
        }
        threads = {name: int(name[-1]) for name in contenders}
        results = time_rounds(contenders, ds, args, threads)
        print_table("threads, MLP on digits (torch.set_num_threads before each fit)", results, "hyperflow threads=1")
        if args.unet_epochs:
            shapes = load_dataset("shapes")
            contenders = {"U-Net threads=1": make_unet, "U-Net threads=2": make_unet}
            results = time_rounds(
                contenders,
                shapes,
                args,
                {n: int(n[-1]) for n in contenders},
                epochs=args.unet_epochs,
                rounds=args.unet_rounds,
            )
            print_table(
                f"threads, hyperflow Trainer on the shapes U-Net (channels 16, {len(shapes.X_train)} train "
                f"images 32x32, batch {args.batch_size}; {args.unet_epochs} epoch(s) per fit)",
                results,
                "U-Net threads=1",
                quality="val dice",
            )
    torch.set_num_threads(args.threads)
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
