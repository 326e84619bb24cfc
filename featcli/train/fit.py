"""The training loop: a planned :class:`featcli.engine.network.Network` fitted to a :class:`Dataset`.

Mini-batch gradient descent on the cross-entropy of the network's scores (``softmax`` as the last stage: its
log is taken instead), with Adam or SGD (momentum 0.9), weight decay, a stratified deterministic validation
split, and per-epoch metrics. On the CPU a seed gives the same weights every time: the layers are initialised
from the plan's seeds, the batches are drawn from a generator of their own, dropout from the seed, and torch
runs its deterministic algorithms while fitting. Callbacks see every batch and every epoch (progress bars);
``KeyboardInterrupt`` (Ctrl-C) passes through with nothing written (the caller writes files afterwards).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from featcli.engine.devices import check_threads
from featcli.engine.network import Network
from featcli.enums import Optimizer
from featcli.errors import FeatcliError, UsageError
from featcli.io.modelfile import MAX_SEED
from featcli.stages.registry import Op
from featcli.train.data import Dataset

if TYPE_CHECKING:
    from featcli.shape.report import ShapeReport

__all__ = ["Epoch", "FitOptions", "FitResult", "confusion_matrix", "fit", "memory_need", "predict", "split"]


@dataclass(frozen=True)
class FitOptions:
    """How to train (the options of ``featcli train``)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: Optimizer = Optimizer.ADAM
    weight_decay: float = 0.0
    seed: int = 0
    val_split: float = 0.2  #: share of each class held out for validation (0: none)
    device: Any = "cpu"  #: a ``torch.device``
    threads: int | None = None  #: torch CPU threads (None: one for small networks, else torch's default)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise UsageError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.val_split < 1.0:
            raise UsageError(f"--val-split must be in [0, 1), got {self.val_split}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"--seed must be 0 to {MAX_SEED} (2**63 - 1), got {self.seed}")
        check_threads(self.threads)

    def record(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "optimizer": str(self.optimizer), "weight_decay": self.weight_decay, "seed": self.seed,
                "val_split": self.val_split}


@dataclass(frozen=True)
class Epoch:
    """One epoch's metrics: mean training loss and accuracy over its batches, then validation's (NaN: none)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float

    def record(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return round(v, 6) if math.isfinite(v) else None

        return {"epoch": self.epoch, "train_loss": num(self.train_loss), "train_acc": num(self.train_acc),
                "val_loss": num(self.val_loss), "val_acc": num(self.val_acc), "seconds": round(self.seconds, 4)}


@dataclass
class FitResult:
    """The history, the held-out indices and their confusion matrix (rows: true class, columns: predicted)."""

    history: list[Epoch]
    train_index: torch.Tensor = field(repr=False)
    val_index: torch.Tensor = field(repr=False)
    confusion: Any = field(repr=False)  #: (K, K) int64 NumPy array, on the validation set (or training set)
    seconds: float = 0.0

    @property
    def final(self) -> Epoch:
        return self.history[-1]


def split(y: torch.Tensor, val_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified split: ``round(n_c * val_split)`` of each class's images held out, chosen by ``seed``.

    >>> tr, va = split(torch.tensor([0] * 10 + [1] * 5), 0.2, 0)
    >>> len(tr), len(va), sorted(int(v) // 10 for v in va)
    (12, 3, [0, 0, 1])
    """
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(len(idx) * val_split) if len(idx) > 1 else 0
        val.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


#: Bytes of a training step per byte of the batch's activations (the input and every stage's output): the
#: outputs autograd keeps for the backward pass (1x), their gradients while it runs (up to 1x), and what ops
#: keep beside them (ReLU masks, batch-norm's normalised input, dropout masks, conv workspaces: up to 1x).
ACTIVATION_FACTOR = 3
#: Bytes per byte of weights: the weights, their gradients and the optimizer's state (Adam: two moments;
#: SGD with momentum: one).
WEIGHT_FACTOR = {Optimizer.ADAM: 4, Optimizer.SGD: 3}
#: Images per batch when the network is evaluated (:func:`predict`), without gradients.
EVAL_BATCH = 256


def memory_need(report: ShapeReport, opts: FitOptions, images: int) -> tuple[int, str]:
    """Bytes :func:`fit` needs on ``images`` training images beyond the data set already loaded, and how they
    add up (for a refusal).

    Counted from the shapes (:func:`featcli.shape.memory.memory` of ``report``, planned for one image):
    :data:`ACTIVATION_FACTOR` x a batch's activations (the batch is ``min(batch_size, images)``),
    :data:`WEIGHT_FACTOR` x the weights, the training images copied once for the split, and the larger of
    that step and an evaluation batch (:data:`EVAL_BATCH` images at the inference peak).

    >>> from featcli.shape.infer import infer
    >>> from featcli.stages.spec import parse_stages
    >>> r = infer((1, 1, 8, 8), parse_stages(["conv:out=4,k=3,p=1", "flatten", "linear:out=2"]))
    >>> memory_need(r, FitOptions(batch_size=10), 100)[0]
    239264
    """
    from featcli.shape.memory import human_bytes, memory

    m = memory(report)
    batch = max(1, min(opts.batch_size, images))
    step = batch * m.activations * ACTIVATION_FACTOR
    weights = m.params * WEIGHT_FACTOR[opts.optimizer]
    data = images * m.input
    evaluation = min(EVAL_BATCH, images) * m.peak
    need = max(step, evaluation) + weights + data
    how = (f"a batch of {batch:,} x {human_bytes(m.activations)} of activations x {ACTIVATION_FACTOR}, "
           f"{human_bytes(m.params)} of weights x {WEIGHT_FACTOR[opts.optimizer]} ({opts.optimizer}), "
           f"{human_bytes(data)} of training images")
    return need, how


def _loss_fn(net: Network) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if net.plan.stages[-1].op is Op.SOFTMAX:  # probabilities already: the loss of their log
        return lambda out, y: F.nll_loss(torch.log(out.flatten(1).clamp_min(1e-12)), y)
    return lambda out, y: F.cross_entropy(out.flatten(1), y)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms while fitting on the CPU (warn only where torch has none), restored after."""
    if device.type != "cpu":
        yield
        return
    was, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn)


def _optimizer(net: Network, opts: FitOptions) -> torch.optim.Optimizer:
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise UsageError("the stack has nothing to learn: add conv:out=N,k=K or linear:out=N stages")
    if opts.optimizer is Optimizer.SGD:
        return torch.optim.SGD(params, lr=opts.lr, momentum=0.9, weight_decay=opts.weight_decay)
    return torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)


def predict(net: Network, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """The network's scores ``(N, K)`` for ``x`` in eval mode, batch by batch."""
    net.eval()
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    outs = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            outs.append(net(x[i : i + batch_size].to(device)).flatten(1).float().cpu())
    return torch.cat(outs) if outs else torch.empty((0, 0))


def confusion_matrix(y: torch.Tensor, pred: torch.Tensor, k: int) -> Any:
    """``(k, k)`` counts: row = true class, column = predicted class (a NumPy int64 array)."""
    counts = torch.bincount(y.long() * k + pred.long(), minlength=k * k)
    return counts.reshape(k, k).numpy()


def _evaluate(net: Network, x: torch.Tensor, y: torch.Tensor, loss: Any) -> tuple[float, float]:
    if not len(y):
        return math.nan, math.nan
    scores = predict(net, x)
    return float(loss(scores, y)), float((scores.argmax(1) == y).float().mean())


def fit(net: Network, data: Dataset, opts: FitOptions, *,
        on_batch: Callable[[int, int, int], None] | None = None,
        on_epoch: Callable[[Epoch], None] | None = None) -> FitResult:
    """Train ``net`` on ``data`` in place and return the history (see the module docstring).

    Args:
        on_batch: called as ``(epoch, batch, batches)`` after each batch (1-based).
        on_epoch: called with each finished :class:`Epoch`.

    Raises:
        UsageError: nothing to learn; KeyboardInterrupt: passed through.
    """
    device = torch.device(opts.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads or _threads(net, opts, device))
    try:
        return _fit(net, data, opts, device, on_batch, on_epoch)
    finally:
        torch.set_num_threads(threads)


#: Below this many multiply-adds per batch, one CPU thread trains faster than several: the work of one step is
#: too small to share, and threads that wait for a busy core cost more than they save (measured on 2 shared
#: cores: 8 orientation epochs took 1.3-3 s on one thread, 23-31 s on two).
SMALL_STEP_MACS = 200_000_000


def _threads(net: Network, opts: FitOptions, device: torch.device) -> int:
    """torch CPU threads while fitting: one for small networks, else torch's default (all cores)."""
    if device.type == "cpu" and net.plan.report.macs * opts.batch_size < SMALL_STEP_MACS:
        return 1
    return torch.get_num_threads()


def _check_finite(e: Epoch, opts: FitOptions) -> None:
    """Stop a training run whose loss is no longer a number: its weights overflowed, and a model written from
    them would predict ``nan%`` for every image (without a validation split both validation figures are NaN)."""
    held_out = not math.isnan(e.val_acc)
    for what, loss in (("training", e.train_loss), ("validation", e.val_loss if held_out else 0.0)):
        if not math.isfinite(loss):
            raise FeatcliError(f"training diverged: the {what} loss of epoch {e.epoch} is {loss} (the weights "
                               f"overflowed); nothing written; lower --lr (now {opts.lr:g})")


def _fit(net: Network, data: Dataset, opts: FitOptions, device: torch.device,
         on_batch: Callable[[int, int, int], None] | None, on_epoch: Callable[[Epoch], None] | None) -> FitResult:
    train_idx, val_idx = split(data.y, opts.val_split, opts.seed)
    x_tr, y_tr = data.x[train_idx].to(device), data.y[train_idx].to(device)
    x_va, y_va = data.x[val_idx], data.y[val_idx]
    net.to(device)
    optimizer = _optimizer(net, opts)
    loss_fn = _loss_fn(net)
    g = torch.Generator().manual_seed(opts.seed)
    n = len(y_tr)
    batches = math.ceil(n / opts.batch_size)
    history: list[Epoch] = []
    t_start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), _deterministic(device):
        torch.manual_seed(opts.seed)  # dropout's masks
        for epoch in range(1, opts.epochs + 1):
            t0 = time.perf_counter()
            net.train()
            order = torch.randperm(n, generator=g).to(device)
            total_loss = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for b in range(batches):
                idx = order[b * opts.batch_size : (b + 1) * opts.batch_size]
                xb, yb = x_tr[idx], y_tr[idx]
                out = net(xb)
                loss = loss_fn(out, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                with torch.no_grad():
                    total_loss += loss.detach() * len(yb)
                    correct += (out.detach().flatten(1).argmax(1) == yb).sum()
                if on_batch is not None:
                    on_batch(epoch, b + 1, batches)
            val_loss, val_acc = _evaluate(net, x_va, y_va, loss_fn)
            row = Epoch(epoch, float(total_loss) / max(1, n), int(correct) / max(1, n), val_loss, val_acc,
                        time.perf_counter() - t0)
            _check_finite(row, opts)
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
    net.eval()
    x_cm, y_cm = (x_va, y_va) if len(val_idx) else (data.x[train_idx], data.y[train_idx])
    matrix = confusion_matrix(y_cm, predict(net, x_cm).argmax(1), len(data.classes))
    return FitResult(history, train_idx, val_idx, matrix, time.perf_counter() - t_start)
