"""Peer measurement: kronfluence's EK-FAC factor time on Fashion-MNIST 784-256-10.

Runs in its own virtual environment (kronfluence needs its own torch), so it must not import
mlu. The setup mirrors issue 11's benchmark: all 10 classes, all 60000 training samples scaled
to [0, 1], 20% of the labels flipped (exactly 20%, seeded, each to a uniformly drawn other
class), a 784-256-10 ReLU network in float32 trained with mlu's ``MLP`` defaults (SGD, lr 0.01,
momentum 0.9, batch 32, mean cross-entropy, no L2) for 10 epochs. Then kronfluence's EK-FAC
factors are fitted on all 60000 samples, timing its three phases separately:
covariance (one pass), eigendecomposition, lambda (the eigenvalue corrections, a second pass
with per-sample gradients). ``Analyzer.fit_all_factors`` is exactly these three calls in
order (kronfluence 1.0.1), so the total is their sum.

Writes ``kronfluence_ekfac.json`` and ``kronfluence_ekfac.md`` beside this file.

Run (see README.md in this folder)::

    /work/venv-peers/bin/python benchmarks/peers/kronfluence_ekfac.py
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
N_FULL = 60000  # Fashion-MNIST training samples


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--n", type=int, default=None, help="first n training samples (default all)")
    p.add_argument("--flip", type=float, default=0.2, help="fraction of labels flipped")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    # mlu.MLP's defaults (python/mlu/engine/model.py).
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--factor-batch-size",
        type=int,
        default=512,
        help="kronfluence per_device_batch_size for both passes (bounds per-sample gradients)",
    )
    p.add_argument(
        "--empirical-fisher",
        action="store_true",
        help="use the given labels (empirical Fisher) instead of kronfluence's default sampled "
        "labels (true Fisher, the GGN in expectation)",
    )
    p.add_argument("--out", type=Path, default=HERE, help="folder for the .json and .md")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------- data
def read_idx(path: Path):
    """Read a gzipped IDX file (images: uint8 (n, rows, cols); labels: uint8 (n,))."""
    import numpy as np

    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, found {data.size} bytes")
    return data.reshape(dims)


def load_fashion_mnist(data_dir: Path, n: int | None):
    """Return X_train (n, 784) float32 in [0, 1], y_train (n,), X_test, y_test (int64)."""
    import numpy as np

    def images(name):
        return read_idx(data_dir / name).reshape(-1, 784).astype(np.float32) / np.float32(255)

    def labels(name):
        return read_idx(data_dir / name).astype(np.int64)

    X, y = images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz")
    if n is not None:
        X, y = X[:n], y[:n]
    return X, y, images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")


def flip_labels(y, rate: float, k: int, seed: int):
    """Flip exactly round(rate·n) labels, chosen at random, each to a uniform other class."""
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = rng.choice(y.size, size=int(round(rate * y.size)), replace=False)
    noisy = y.copy()
    # A shift of 1..k-1 modulo k is a uniform draw over the other classes.
    noisy[idx] = (y[idx] + rng.integers(1, k, size=idx.size)) % k
    return noisy, np.sort(idx)


# ------------------------------------------------------------------------------- training
def build_model(seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def train(model, X, y, args) -> list[float]:
    """Minibatch SGD with momentum on the mean cross-entropy; returns seconds per epoch."""
    import torch
    from torch.nn import functional as F

    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    gen = torch.Generator().manual_seed(args.seed)
    n = X.shape[0]
    epoch_times = []
    model.train()
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, args.batch_size):
            batch = order[start : start + args.batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(X[batch]), y[batch]).backward()
            opt.step()
        epoch_times.append(time.perf_counter() - t0)
        print(f"epoch {len(epoch_times)}: {epoch_times[-1]:.2f} s", file=sys.stderr, flush=True)
    model.eval()
    return epoch_times


def accuracy(model, X, y) -> float:
    import torch

    with torch.no_grad():
        return float((model(X).argmax(1) == y).float().mean())


# ----------------------------------------------------------------------------- kronfluence
def make_task(empirical_fisher: bool):
    import torch
    from kronfluence.task import Task
    from torch.nn import functional as F

    class ClassificationTask(Task):
        """Summed cross-entropy, as in kronfluence's classification examples."""

        def compute_train_loss(self, batch, model, sample=False):
            inputs, labels = batch
            logits = model(inputs)
            if sample and not empirical_fisher:
                with torch.no_grad():
                    labels = torch.multinomial(torch.softmax(logits.detach(), -1), 1).flatten()
            return F.cross_entropy(logits, labels, reduction="sum")

        def compute_measurement(self, batch, model):
            return self.compute_train_loss(batch, model, sample=False)

    return ClassificationTask()


def fit_ekfac(model, X, y, args, workdir: str) -> dict:
    """Fit kronfluence's EK-FAC factors; return per-phase seconds and a check of the result."""
    import torch
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments
    from kronfluence.utils.dataset import DataLoaderKwargs

    task = make_task(args.empirical_fisher)
    model = prepare_model(model, task)
    analyzer = Analyzer(
        analysis_name="fmnist_784_256_10",
        model=model,
        task=task,
        cpu=True,
        disable_tqdm=not sys.stderr.isatty(),
        output_dir=workdir,
    )
    torch.set_num_threads(args.threads)  # in case accelerate's set-up changed it
    factor_args = FactorArguments(
        strategy="ekfac",
        use_empirical_fisher=args.empirical_fisher,
        covariance_max_examples=None,  # all samples
        lambda_max_examples=None,
    )
    dataset = torch.utils.data.TensorDataset(X, y)
    common = dict(
        factors_name="ekfac",
        factor_args=factor_args,
        overwrite_output_dir=True,
    )
    data_kw = dict(
        dataset=dataset,
        per_device_batch_size=args.factor_batch_size,
        dataloader_kwargs=DataLoaderKwargs(num_workers=0),
    )
    times = {}
    t0 = time.perf_counter()
    analyzer.fit_covariance_matrices(**common, **data_kw)
    t1 = time.perf_counter()
    print(f"covariance: {t1 - t0:.2f} s", file=sys.stderr, flush=True)
    analyzer.perform_eigendecomposition(**common)
    t2 = time.perf_counter()
    print(f"eigendecomposition: {t2 - t1:.2f} s", file=sys.stderr, flush=True)
    analyzer.fit_lambda_matrices(**common, **data_kw)
    t3 = time.perf_counter()
    times = {
        "covariance": t1 - t0,
        "eigendecomposition": t2 - t1,
        "lambda": t3 - t2,
        "total": t3 - t0,
    }

    # Check that real factors came out: shapes, finiteness, sample counts.
    factors = analyzer.load_all_factors(factors_name="ekfac")
    check = {}
    for name, per_module in factors.items():
        for module, tensor in per_module.items():
            t = tensor.double()
            check[f"{name}/{module}"] = {
                "shape": list(tensor.shape),
                "finite": bool(torch.isfinite(t).all()),
                "max_abs": float(t.abs().max()) if t.numel() else 0.0,
            }
    return {
        "seconds": times,
        "torch_threads_during_factors": torch.get_num_threads(),
        "factor_arguments": {
            "strategy": factor_args.strategy,
            "use_empirical_fisher": factor_args.use_empirical_fisher,
            "activation_covariance_dtype": str(factor_args.activation_covariance_dtype),
            "gradient_covariance_dtype": str(factor_args.gradient_covariance_dtype),
            "eigendecomposition_dtype": str(factor_args.eigendecomposition_dtype),
            "lambda_dtype": str(factor_args.lambda_dtype),
            "per_sample_gradient_dtype": str(factor_args.per_sample_gradient_dtype),
            "per_device_batch_size": args.factor_batch_size,
        },
        "factors": check,
    }


# ---------------------------------------------------------------------------------- report
def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "memory_gib": mem,
        "python": platform.python_version(),
    }


def versions() -> dict:
    from importlib.metadata import version

    return {pkg: version(pkg) for pkg in ("torch", "kronfluence", "numpy", "accelerate")}


def extrapolate(seconds: dict, train_seconds: float, n: int, n_full: int) -> dict | None:
    """Linear extrapolation from a subset to the full training set (None when n is full).

    Training, covariance and lambda are passes over the data, linear in n; the
    eigendecomposition depends only on the layer sizes.
    """
    if n >= n_full:
        return None
    s = n_full / n
    out = {
        "n": n_full,
        "covariance": seconds["covariance"] * s,
        "eigendecomposition": seconds["eigendecomposition"],
        "lambda": seconds["lambda"] * s,
        "training": train_seconds * s,
    }
    out["total"] = out["covariance"] + out["eigendecomposition"] + out["lambda"]
    out["factors_total_over_training"] = out["total"] / out["training"]
    return out


def markdown(result: dict) -> str:
    s = result["seconds"]
    ep = result["training"]["epoch_seconds"]
    train_total = result["training"]["seconds"]
    v = result["versions"]
    lines = [
        "# kronfluence EK-FAC factors on Fashion-MNIST 784-256-10 (peer measurement)",
        "",
        f"kronfluence {v['kronfluence']}, torch {v['torch']} (CPU, {result['torch_threads']} "
        f"threads), n = {result['data']['n_train']}, {result['data']['n_flipped']} labels "
        f"flipped, p = {result['model']['parameters']:,}; load average at start "
        f"{result['load_average']['start'][0]:.2f}, at end {result['load_average']['end'][0]:.2f}.",
        "",
        "| phase | seconds | / one torch training |",
        "| --- | ---: | ---: |",
    ]
    for phase in ("covariance", "eigendecomposition", "lambda", "total"):
        label = "**factors total**" if phase == "total" else phase
        lines.append(f"| {label} | {s[phase]:.2f} | {s[phase] / train_total:.3f} |")
    lines += [
        f"| torch training, {len(ep)} epochs | {train_total:.2f} | 1 |",
        f"| torch training, one epoch (mean) | {train_total / len(ep):.2f} | {1 / len(ep):.3f} |",
        "",
        f"Test accuracy after training: {result['training']['test_accuracy']:.4f} "
        f"(train accuracy on the noisy labels {result['training']['train_accuracy_noisy']:.4f}).",
        "Command: `" + result["command"] + "`",
    ]
    ext = result["extrapolated_to_full_train_set"]
    if ext is not None:
        lines += [
            "",
            f"Linear extrapolation to n = {ext['n']} (not measured): training "
            f"{ext['training']:.0f} s, factors {ext['total']:.0f} s (covariance "
            f"{ext['covariance']:.0f}, eigendecomposition {ext['eigendecomposition']:.0f}, "
            f"lambda {ext['lambda']:.0f}), ratio {ext['factors_total_over_training']:.3f}.",
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()

    X, y_true, X_test, y_test = load_fashion_mnist(args.data_dir, args.n)
    n_train, n_full = int(X.shape[0]), N_FULL
    k = int(y_true.max()) + 1
    y_noisy, flipped = flip_labels(y_true, args.flip, k, args.seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y_noisy)

    model = build_model(args.seed)
    n_params = int(sum(p.numel() for p in model.parameters()))  # before kronfluence wraps it
    epoch_times = train(model, Xt, yt, args)
    train_seconds = float(sum(epoch_times))
    test_acc = accuracy(model, torch.from_numpy(X_test), torch.from_numpy(y_test))
    train_acc = accuracy(model, Xt, yt)
    print(f"training: {train_seconds:.2f} s, test accuracy {test_acc:.4f}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="kronfluence-") as workdir:
        ekfac = fit_ekfac(model, Xt, yt, args, workdir)
    if not all(c["finite"] for c in ekfac["factors"].values()):
        raise RuntimeError("kronfluence returned non-finite factors")
    seconds = ekfac.pop("seconds")
    print(f"EK-FAC factors: {seconds}", file=sys.stderr)

    result = {
        "what": "kronfluence EK-FAC factor time (fit_all_factors phases) beside torch training, "
        "Fashion-MNIST 784-256-10",
        "command": " ".join([Path(sys.executable).as_posix(), *sys.argv]),
        "versions": versions(),
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "data": {
            "source": str(args.data_dir),
            "n_train": int(X.shape[0]),
            "n_test": int(X_test.shape[0]),
            "classes": k,
            "flip_rate": args.flip,
            "n_flipped": int(flipped.size),
            "seed": args.seed,
        },
        "model": {
            "layers": [784, 256, 10],
            "activation": "relu",
            "dtype": "float32",
            "parameters": n_params,
        },
        "training": {
            "optimizer": "SGD",
            "lr": args.lr,
            "momentum": args.momentum,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "loss": "mean cross-entropy",
            "seconds": train_seconds,
            "epoch_seconds": epoch_times,
            "test_accuracy": test_acc,
            "train_accuracy_noisy": train_acc,
        },
        "ekfac": ekfac,
        "seconds": seconds,
        "extrapolated_to_full_train_set": extrapolate(seconds, train_seconds, n_train, n_full),
        "ratios": {
            "factors_total_over_training": seconds["total"] / train_seconds,
            "factors_total_over_mean_epoch": seconds["total"] / (train_seconds / args.epochs),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kronfluence_ekfac.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "kronfluence_ekfac.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
