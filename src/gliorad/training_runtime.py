"""Where :func:`gliorad.training.fit` runs and how its batches are made: the device (CPU, CUDA,
this process's GPU under ``torchrun``), the ``torchrun`` process group and its collectives, and
the batch loaders (MONAI's DataLoader in worker processes, or in a background thread, or items
drawn by threads), with per-item seeds so that the batches do not depend on which worker, thread
or process draws an item. See :mod:`gliorad.training` for the whole contract.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gliorad.errors import GlioradInputError, check_option
from gliorad.training_config import DATA_DEVICES, DEVICES, LOADERS, TrainConfig


def resolve_device(name: str) -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` -> a torch device; asking for CUDA without one is an error."""
    check_option("device", name, DEVICES)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GlioradInputError("device 'cuda' was asked for but no CUDA GPU is available; use cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a ``torchrun`` launch (world 1, rank 0: a plain process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_env() -> DistEnv:
    """``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` as ``torchrun`` sets them (absent: one process)."""
    import os

    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise GlioradInputError(f"WORLD_SIZE / RANK / LOCAL_RANK must be integers (set by torchrun): "
                                f"{err}") from err
    if world < 1 or not 0 <= rank < world:
        raise GlioradInputError(f"RANK {rank} and WORLD_SIZE {world} do not fit (set by torchrun)")
    return DistEnv(rank, world, local)


def train_device(cfg: TrainConfig, env: DistEnv | None = None) -> torch.device:
    """The device :func:`fit` trains on: ``cfg.device``, under torchrun on CUDA the process's
    own GPU (``cuda:LOCAL_RANK``)."""
    env = env or distributed_env()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and env.active:
        return torch.device("cuda", env.local_rank % max(1, torch.cuda.device_count()))
    return device


def resolved_loader(cfg: TrainConfig, device: torch.device) -> str:
    """``process`` or ``thread``: the configured loader, ``auto`` resolved for ``device``."""
    check_option("loader", cfg.loader, LOADERS)
    if cfg.loader != "auto":
        return cfg.loader
    return "thread" if device.type == "cuda" else "process"


def data_device(cfg: TrainConfig, device: torch.device) -> torch.device:
    """Where a dataset that supports it keeps its volumes and augments (``data_device``): the
    training GPU with the thread loader under ``auto``, else the CPU (worker processes cannot
    hold CUDA tensors)."""
    check_option("data_device", cfg.data_device, DATA_DEVICES)
    if cfg.data_device == "auto" and device.type == "cuda" and resolved_loader(cfg, device) == "thread":
        return device
    return torch.device("cpu")


def start_process_group(device: torch.device) -> None:
    """Join the ``torchrun`` process group (NCCL on CUDA, gloo on the CPU) unless this process
    already has; left at exit. Collective waits time out after two hours (rank 0 validating
    whole volumes while the others wait)."""
    import atexit
    import datetime

    import torch.distributed as dist

    if dist.is_initialized():
        return
    if not dist.is_available():
        raise GlioradInputError("this torch has no torch.distributed; run one process (not torchrun)")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # NCCL's collectives (barriers too) on this rank's GPU
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            timeout=datetime.timedelta(hours=2))
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())


def barrier(env: DistEnv) -> None:
    """Wait for every rank (nothing in one process)."""
    if env.active:
        import torch.distributed as dist

        dist.barrier()


def all_sum(env: DistEnv, *values: float) -> tuple[float, ...]:
    """Sums over the ranks (the values themselves in one process)."""
    if not env.active:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return tuple(float(v) for v in t.cpu())


def all_max(env: DistEnv, value: float) -> float:
    if not env.active:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.cpu()[0])


def from_rank0(env: DistEnv, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def item_seed(epoch_seed_value: int, index: int) -> int:
    """The seed of item ``index``'s random augmentations in an epoch (``item_seeds``)."""
    return int(np.random.SeedSequence([int(epoch_seed_value) % 2**32, int(index)]).generate_state(1)[0])


#: Serialises reseeding + drawing of a dataset without :meth:`seeded_item` across thread workers.
_ITEM_LOCK = threading.Lock()


class ItemSeeded(torch.utils.data.Dataset):
    """``data`` whose item ``i`` is drawn with its random transforms seeded by
    :func:`item_seed` (epoch seed, i): the same item whichever worker, thread or process draws it.
    A dataset with a ``seeded_item(i, seed)`` method draws it itself (thread-safe); another has
    its MONAI random transforms reseeded (``monai.data.utils.set_rnd``), one item at a time."""

    def __init__(self, data: torch.utils.data.Dataset, epoch_seed_value: int):
        self.data, self.epoch_seed = data, int(epoch_seed_value)

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        seed = item_seed(self.epoch_seed, i)
        own = getattr(self.data, "seeded_item", None)
        if own is not None:
            return own(i, seed)
        from monai.data.utils import set_rnd

        with _ITEM_LOCK:
            set_rnd(self.data, seed)
            return self.data[i]


class ShardedBatches(torch.utils.data.Sampler):
    """Rank ``rank``'s share of an epoch: a seeded permutation of ``n`` items cut into global
    batches of ``batch_size`` x ``world``, rank r taking items ``[r b, (r + 1) b)`` of each. A last
    global batch that is short is filled from the start of the permutation when ``world`` > 1
    (every rank trains the same number of steps of ``batch_size``); one process keeps it short."""

    def __init__(self, n: int, batch_size: int, seed: int, world: int = 1, rank: int = 0):
        self.n, self.b, self.seed, self.world, self.rank = n, batch_size, seed, world, rank

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(int(self.seed))
        order = torch.randperm(self.n, generator=g).tolist()
        step = self.b * self.world
        if self.world > 1 and len(order) % step:
            fill = step - len(order) % step
            order += (order * (fill // len(order) + 1))[:fill]
        return order

    def __iter__(self):
        order, step = self._order(), self.b * self.world
        for k in range(0, len(order), step):
            chunk = order[k:k + step]
            share = chunk[self.rank * self.b:(self.rank + 1) * self.b]
            if share:
                yield share

    def __len__(self) -> int:
        step = self.b * self.world
        return math.ceil(self.n / step)


def make_loader(data: torch.utils.data.Dataset, cfg: TrainConfig, device: torch.device, es: int,
                 env: DistEnv, pin: bool) -> Iterable[Any]:
    """The epoch's batches (see the module docstring): MONAI's DataLoader in this process or in
    worker processes; with the thread loader that DataLoader iterated in a background thread
    (``num_workers`` 0: the same batches as the process loader), or ``num_workers`` threads
    drawing item-seeded items."""
    from monai.data import DataLoader

    kind = resolved_loader(cfg, device)
    threads = cfg.num_workers if kind == "thread" else 0
    seeded = cfg.item_seeds or env.active or threads > 0
    gen = torch.Generator().manual_seed(es)
    if seeded:
        data = ItemSeeded(data, es)
        sampler = ShardedBatches(len(data), cfg.batch_size, es, env.world, env.rank)
        if threads:
            return ThreadBatches(data, sampler, threads, pin)
        loader = DataLoader(data, batch_sampler=sampler, num_workers=0 if kind == "thread" else cfg.num_workers,
                            generator=gen, pin_memory=pin and kind == "process")
    else:
        loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                            pin_memory=pin and kind == "process",
                            num_workers=0 if kind == "thread" else cfg.num_workers)
    # the thread loader pins in its thread, skipping tensors already on the GPU (data_device),
    # which torch's pin_memory refuses
    return BackgroundBatches(loader, pin=pin) if kind == "thread" else loader


def pinned(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.pin_memory() if obj.device.type == "cpu" else obj
    if isinstance(obj, Mapping):
        return {k: pinned(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(pinned(v) for v in obj)
    return obj


class BackgroundBatches:
    """Iterates ``source`` in a background thread, up to ``ahead`` batches in advance (the next
    batch is made while the network trains on this one); an exception there is raised here."""

    def __init__(self, source: Iterable[Any], ahead: int = 2, pin: bool = False):
        self.source, self.ahead, self.pin = source, ahead, pin

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __iter__(self):
        import queue
        import threading

        q: queue.Queue = queue.Queue(self.ahead)
        stop = threading.Event()

        def put(entry: tuple[str, Any]) -> bool:
            while not stop.is_set():
                try:
                    q.put(entry, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def run() -> None:
            try:
                for batch in self.source:
                    if not put(("batch", pinned(batch) if self.pin else batch)):
                        return
                put(("end", None))
            except BaseException as err:  # noqa: BLE001 (handed to the training loop, which raises it)
                put(("error", err))

        worker = threading.Thread(target=run, name="gliorad-batches", daemon=True)
        worker.start()
        try:
            while True:
                kind, value = q.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()
            worker.join()


class ThreadBatches:
    """Batches of ``sampler``'s indices drawn by ``workers`` threads (a dataset's items are
    item-seeded, so the result does not depend on which thread draws which), in order, a few in
    advance; pinned for a non-blocking copy to the GPU when ``pin``."""

    def __init__(self, data: torch.utils.data.Dataset, sampler: Iterable[list[int]], workers: int,
                 pin: bool):
        self.data, self.sampler, self.workers, self.pin = data, sampler, workers, pin

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def _batch(self, idx: list[int]) -> Any:
        from monai.data.utils import list_data_collate

        batch = list_data_collate([self.data[i] for i in idx])
        return pinned(batch) if self.pin else batch

    def __iter__(self):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="gliorad-batches")
        pending: deque = deque()
        try:
            for idx in self.sampler:
                pending.append(pool.submit(self._batch, list(idx)))
                if len(pending) > 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
