"""Where units of work run: in the driver (`LocalBackend`) or on Ray workers (`RayBackend`).

Either way the driver plans the units, keeps the cheapest-first order (the units of attack k+1
are planned only once every unit of attack k is committed), and is the store's only writer:
results stream back as units finish and are committed one transaction per unit. A unit's result
depends on its data alone (`robustness_eval.units`), so both backends give the same store.

Ray is an optional extra (`pip install -e ".[ray]"`). The model, the shell and the points go to
the object store once per battery; each worker process deserializes them once and keeps them
for every unit it runs. A worker that dies in the middle of a unit is replaced and the unit
retried (`max_retries`); its rows are written only when it finishes, so nothing is lost or
written twice.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import socket
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from robustness_eval.code_identity import CodeMismatchError, check_worker_identity, is_user_module, suite_identity
from robustness_eval.units import Context, Unit, UnitResult, execute_unit

BACKENDS = ("local", "ray")
_WORKER_CONTEXTS: dict[str, Context] = {}


class LocalBackend:
    """Run every unit in this process, in plan order."""

    name = "local"

    @contextmanager
    def session(self, context: Context) -> Iterator[LocalSession]:
        yield LocalSession(context)


class LocalSession:
    """Units of one battery, run one after another in the driver."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def run(self, units: list[Unit]) -> Iterator[tuple[Unit, UnitResult]]:
        for unit in units:
            yield unit, execute_unit(self.context, unit)


CONNECT_TIMEOUT_SECONDS = 10.0
_ADDRESS = re.compile(r"^(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def parse_address(address: str) -> tuple[str, int] | str | None:
    """'auto' → 'auto'; 'host:port' or 'ray://host:port' → (host, port); anything else → None."""
    if address.strip() == "auto":
        return "auto"
    match = _ADDRESS.match(address.strip())
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        return None
    return match.group(1).strip("[]"), int(match.group(2))


class RayBackend:
    """Run units as Ray tasks on a local runtime or a cluster.

    Args:
        address: None starts a local Ray runtime (with `workers` CPUs); 'auto' or 'ray://host:port' /
            'host:port' joins an existing cluster.
        workers: units in flight at once (default: the cluster's CPUs, or its GPUs on a CUDA device).
        device: the run's device; on 'cuda' every unit asks Ray for one GPU and runs on it.
        threads: torch threads per unit (and CPUs Ray reserves for it); pinned on the worker.
        max_retries: times a unit is retried when its worker process dies.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, device: torch.device | str = "cpu",
                 threads: int = 1, max_retries: int = 3) -> None:
        if address is not None and (not isinstance(address, str) or parse_address(address) is None):
            raise ValueError(f"`ray_address` (--ray-address) must be 'auto', host:port or ray://host:port with a "
                             f"port from 1 to 65535, or None to start a local runtime (got {address!r})")
        for value, label in ((workers, "workers"), (threads, "threads")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{label}` must be an integer ≥ 1 (got {value!r})")
        if importlib.util.find_spec("ray") is None:
            raise ImportError("backend='ray' needs Ray: pip install -e \".[ray]\" (or use backend='local')")
        self.address, self.workers, self.threads, self.max_retries = address, workers, threads, max_retries
        self.device = torch.device(device)

    def check_reachable(self, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
        """Before any work: something must answer at a host:port address within `timeout` seconds, or a
        ValueError says so (Ray itself would retry for minutes without a word)."""
        host_port = parse_address(self.address) if self.address is not None else None
        if host_port == "auto":
            try:
                self.connect()
            except ConnectionError as error:
                raise ValueError(f"--ray-address auto: no Ray cluster runs on this machine ({error}); start one "
                                 "(ray start --head), pass its head's host:port, or no address for a local "
                                 "runtime") from None
        if not isinstance(host_port, tuple):
            return
        try:
            socket.create_connection(host_port, timeout=timeout).close()
        except OSError as error:
            raise ValueError(f"--ray-address {self.address}: nothing answered at {host_port[0]}:{host_port[1]} within "
                             f"{timeout:g} s ({error.strerror or error}); start the cluster (ray start --head) or "
                             "pass its head's address, 'auto' for the cluster on this machine, or no address for a "
                             "local runtime") from None

    def connect(self):
        """Start or join the Ray runtime (once per process) and return the `ray` module."""
        import ray

        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.address is None:
                ray.init(num_cpus=self.workers * self.threads if self.workers else None, **options)
            else:
                ray.init(address=self.address, **options)
        return ray

    def in_flight(self) -> int:
        """Units kept running at once."""
        if self.workers is not None:
            return self.workers
        ray = self.connect()
        resources = ray.cluster_resources()
        if self.device.type == "cuda":
            return max(1, int(resources.get("GPU", 1)))
        return max(1, int(resources.get("CPU", 1)) // self.threads)

    @contextmanager
    def session(self, context: Context) -> Iterator[RaySession]:
        ray = self.connect()
        for module in (context.model, context.shell):
            ship_code_of(module)
        payload = context if self.device.type == "cpu" else copy.deepcopy(context).to("cpu")
        gpu = self.device.type == "cuda"
        task = ray.remote(_execute_on_worker).options(
            num_cpus=self.threads, num_gpus=1 if gpu else 0, max_retries=self.max_retries, retry_exceptions=False)
        session = RaySession(ray, task, ray.put(payload), "cuda" if gpu else "cpu", self.threads, self.in_flight())
        session.check_workers()
        yield session


class RaySession:
    """Units of one battery as Ray tasks: at most `in_flight` at once, yielded as they finish."""

    def __init__(self, ray, task, context_ref, device: str, threads: int, in_flight: int) -> None:
        self.ray, self.task, self.context_ref = ray, task, context_ref
        self.device, self.threads, self.in_flight = device, threads, in_flight
        self.id, self.identity = uuid.uuid4().hex, suite_identity()

    def check_workers(self) -> None:
        """Before any unit: workers report the suite's version and code digest; another install is refused in one
        line (every unit checks again on the worker that runs it)."""
        probe = self.ray.remote(_worker_identity).options(num_cpus=self.threads, num_gpus=0)
        found = set(self.ray.get([probe.remote() for _ in range(self.in_flight)]))
        if found != {self.identity}:
            other = sorted(found - {self.identity})
            raise CodeMismatchError(f"Ray workers run robustness_eval {', '.join(other)}, the driver {self.identity}: "
                                    "install the same version of the suite on every node (or start the cluster "
                                    "from this install)")

    def run(self, units: list[Unit]) -> Iterator[tuple[Unit, UnitResult]]:
        queue, pending = iter(units), {}

        def submit() -> None:
            unit = next(queue, None)
            if unit is not None:
                ship_code_of(unit.attack)
                # the context travels boxed, so Ray hands the worker a reference it resolves once
                pending[self.task.remote(self.id, self.identity, [self.context_ref], unit, self.device,
                                         self.threads)] = unit

        try:
            for _ in range(self.in_flight):
                submit()
            while pending:
                (done,), _ = self.ray.wait(list(pending), num_returns=1)
                unit = pending.pop(done)
                try:
                    result = self.ray.get(done)
                except CodeMismatchError as error:  # Ray's task error is also an instance of the cause's type
                    raise CodeMismatchError(str(error.cause if hasattr(error, "cause") else error)) from None
                submit()
                yield unit, result
        finally:
            for ref in pending:
                self.ray.cancel(ref, force=True)


def _worker_identity() -> str:
    """On a worker: the suite's version and code digest there."""
    return suite_identity()


def _execute_on_worker(session: str, identity: str, boxed_context: list, unit: Unit, device: str,
                       threads: int) -> UnitResult:
    """A unit on a Ray worker whose suite code is the driver's: the session's context is fetched and moved to
    the device once per process."""
    check_worker_identity(identity)
    torch.set_num_threads(threads)
    context = _WORKER_CONTEXTS.get(session)
    if context is None:
        import ray

        _WORKER_CONTEXTS.clear()  # one battery at a time per worker: free the previous one
        context = _WORKER_CONTEXTS[session] = ray.get(boxed_context[0]).to(device)
    return execute_unit(context, unit)


def ship_code_of(obj: object) -> None:
    """Let Ray pickle the user code behind `obj` (an nn.Module tree or an attack) by value.

    A model class defined in a user's file (`file.py:factory`) or a module that only the driver
    can import does not exist on a worker; pickled by value, it travels with the object. Installed
    packages and the suite's own are left to be imported by name.
    """
    from ray import cloudpickle

    objects = [obj, *vars(obj).values()] if not isinstance(obj, nn.Module) else [obj]
    for item in objects:
        for part in item.modules() if isinstance(item, nn.Module) else [item]:
            module = sys.modules.get(type(part).__module__)
            if module is not None and is_user_module(module):
                cloudpickle.register_pickle_by_value(module)


def make_backend(backend: str | LocalBackend | RayBackend, ray_address: str | None = None,
                 workers: int | None = None, device: torch.device | str = "cpu"):
    """A backend from its name ('local', 'ray') and the Ray options, or the instance passed."""
    if isinstance(backend, LocalBackend | RayBackend):
        return backend
    if backend == "local":
        if ray_address is not None or workers is not None:
            raise ValueError("`ray_address` and `workers` apply to backend='ray' only; pass backend='ray' or drop them")
        return LocalBackend()
    if backend == "ray":
        return RayBackend(ray_address, workers, device)
    raise ValueError(f"unknown backend {backend!r}; pass one of {', '.join(BACKENDS)}")
