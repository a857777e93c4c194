"""Training on several devices and several processes: which devices, JAX's distributed runtime,
a PyTensor graph compiled with shardings, and what the processes must agree on.

Data parallel. The update's B streams are split evenly over the devices along each input's and
output's batch axis; parameters and optimizer state are replicated. The graph is the one-device
graph, built, differentiated and rewritten by PyTensor; XLA's SPMD partitioner turns its sums over
the batch (the loss and every weight gradient) into all-reduces, so an update on N devices is the
same computation as on one, up to the order of the additions.

PyTensor's JAXLinker jits without shardings, so the step is compiled here: PyTensor rewrites the
graph for JAX (`pytensor.function` in JAX mode), `jax_funcify` of its rewritten FunctionGraph gives
a plain JAX callable, and that is jitted with the shardings. The parameters then live on the
devices; `to_host` brings them back into the shared variables before anything on the host reads
them, and a value set on a shared variable (a resume, the divergence guard going back) goes to the
devices with the next update.

Several processes (hosts) run the same loop in lockstep: each feeds its own devices' streams,
process 0 alone writes files, and whatever decides the loop's course (a stop, a validation loss)
is agreed on, since a collective that one process skips stalls the others.
"""
import socket

import numpy as np
import pytensor
from pytensor.compile.mode import Mode, get_mode

from charrnn.backend import DEFAULT_BACKEND, compile_function, device
from charrnn.configs import ConfigError

COORDINATOR_TIMEOUT = 60  # seconds a process waits for the others at the coordinator


class DeviceError(ConfigError):
    """A device or process choice that cannot be used: the message says why; `option` names it."""

    def __init__(self, message, option="--devices"):
        super().__init__(message)
        self.option = option


class LostProcess(RuntimeError):
    """Another process of the run stopped answering (it died, or its host did)."""


# --- which processes and devices


def start_processes(coordinator, num_processes, process_id, timeout=COORDINATOR_TIMEOUT):
    """Join the run's other processes through JAX's distributed runtime (before JAX computes
    anything). With none of the three given, JAX's own environment (JAX_COORDINATOR_ADDRESS, or a
    cluster's: SLURM, Open MPI, Kubernetes) decides whether there are several; with none, nothing."""
    import jax

    if coordinator is None and num_processes is None and process_id is None and not _jax_cluster():
        return
    if process_id is not None and num_processes is not None and process_id >= num_processes:
        raise DeviceError(f"--process-id {process_id} is out of range for --num-processes {num_processes} "
                          f"(ids are 0 to {num_processes - 1})", "--process-id")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes all-reduce over TCP
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=int(timeout))
    except ValueError as e:  # JAX's environment lacked one of the three
        raise DeviceError(f"cannot start the processes: {e} (give --coordinator, --num-processes and "
                          f"--process-id)", "--coordinator") from None
    except Exception as e:  # JAX raises its runtime's own error type
        where = coordinator or "the coordinator"
        raise LostProcess(f"process {process_id} could not reach {where} within {timeout:g} s "
                          f"({_first_line(e)})") from None


def _jax_cluster():
    import os

    return bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))


def _first_line(e):
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def check_address(address):
    """HOST:PORT with a host that resolves and a port in 1-65535, else DeviceError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DeviceError(f"{address!r} is not HOST:PORT (like 10.0.0.1:7777)", "--coordinator")
    try:
        socket.getaddrinfo(host.strip("[]"), int(port))
    except OSError:
        raise DeviceError(f"{address!r}: the host {host} is not known", "--coordinator") from None
    return address


def device_count(choice, backend=DEFAULT_BACKEND):
    """The devices a run uses, over all processes: every one JAX sees for "all", else `choice`;
    DeviceError when that many are not there (or do not split evenly over the processes)."""
    if choice is None or (choice == 1 and processes() == 1):
        return 1
    if backend != "jax":
        raise DeviceError(f"--devices {choice} needs the jax backend (it shards through JAX)")
    import jax

    available, count = jax.device_count(), jax.device_count() if choice == "all" else choice
    if count > available:
        raise DeviceError(f"--devices {count}: only {available} {'device is' if available == 1 else 'devices are'} "
                          f"there ({describe_devices(jax.devices())}); use --devices all or fewer")
    if count % processes():
        raise DeviceError(f"--devices {count} does not split over {processes()} processes: use a multiple of "
                          f"{processes()}")
    return count


def check_batch(train_cfg):
    """DeviceError unless the batch's streams split evenly over the run's devices."""
    n, B = train_cfg.devices, train_cfg.batch_size
    if B % n:
        lower, upper = B // n * n, -(-B // n) * n
        raise DeviceError(f"--batch-size {B} does not split over {n} devices: use a multiple of {n} "
                          f"(like {lower or upper} or {upper})", "--batch-size")


def processes():
    """How many processes run together (1 unless the distributed runtime was started)."""
    import jax._src.distributed as distributed

    return distributed.global_state.num_processes if distributed.global_state.client is not None else 1


def writes():
    """True in the process that writes the run's files: process 0 (the only one, alone)."""
    import jax._src.distributed as distributed

    return distributed.global_state.client is None or distributed.global_state.process_id == 0


def mesh_devices(count):
    """The run's `count` devices, as many from each process, process by process."""
    import jax

    per_process = count // processes()
    chosen = [d for p in range(processes()) for d in
              sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:per_process]]
    return chosen


def describe_devices(devs):
    """The devices in words: "cpu", "4 x cpu", "4 x gpu NVIDIA H200"."""
    first = devs[0]
    kind = "cpu" if first.platform == "cpu" else f"{first.platform} {first.device_kind}"
    return kind if len(devs) == 1 else f"{len(devs)} x {kind}"


def describe(train_cfg):
    """Where the training step runs, for the log and the progress bar."""
    if train_cfg.devices == 1 and processes() == 1:
        return device(train_cfg.backend)
    hosts = f" in {processes()} processes" if processes() > 1 else ""
    return describe_devices(mesh_devices(train_cfg.devices)) + hosts


# --- compiling


def compile_step(inputs, outputs, updates, train_cfg, batch_axes):
    """compile_function's function for one device; a ShardedFunction over the run's devices for
    several. `batch_axes` maps inputs and outputs (variables) to their batch axis; None keys are
    skipped, and what is not there is replicated."""
    if train_cfg.devices == 1 and processes() == 1:
        return compile_function(inputs, outputs, updates=updates, backend=train_cfg.backend)
    return ShardedFunction(inputs, outputs, updates, mesh_devices(train_cfg.devices), batch_axes)


class ShardedFunction:
    """A PyTensor function's graph jitted over a device mesh: fn(*inputs) -> list of outputs, as
    pytensor.function's, applying the updates to device-resident copies of the shared variables."""

    def __init__(self, inputs, outputs, updates, devs, batch_axes):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        from pytensor.link.jax.dispatch import jax_funcify

        compile_function([], [], backend="jax")  # JAX's cache and warning filters, as for one device
        fn = pytensor.function(inputs, outputs, updates=updates, mode=_mode())
        fgraph = fn.maker.fgraph  # inputs: `inputs`, then the shared variables; outputs: `outputs`, then updates
        self.n_in, self.n_out = len(inputs), len(outputs)
        self.shared = fgraph.inputs[self.n_in:]
        self.updated = {in_idx - self.n_in: out_idx for out_idx, in_idx in fgraph.update_mapping.items()}
        axes = {id(v): a for v, a in batch_axes.items() if v is not None}
        mesh = Mesh(np.array(devs), ("batch",))

        def sharding(var, axis):
            return NamedSharding(mesh, PartitionSpec() if axis is None else PartitionSpec(*[None] * axis, "batch"))

        self.in_shardings = [sharding(v, axes.get(id(v))) for v in inputs] + \
                            [sharding(v, None) for v in self.shared]
        out_shardings = [sharding(v, axes.get(id(v))) for v in outputs] + \
                        [sharding(v, None) for v in fgraph.outputs[self.n_out:]]
        donated = tuple(self.n_in + i for i in self.updated)
        self.jitted = jax.jit(jax_funcify(fgraph), in_shardings=tuple(self.in_shardings), out_shardings=tuple(out_shardings),
                              donate_argnums=donated)
        self.values = [None] * len(self.shared)  # device copies of the shared variables
        self.seen = [None] * len(self.shared)  # the host value each copy was made from (or went to)
        self.on_host = True  # the shared variables hold what the devices hold

    def __call__(self, *args):
        for i, var in enumerate(self.shared):  # values set on the host since go to the devices
            host = var.get_value(borrow=True)
            if host is not self.seen[i]:
                self.values[i], self.seen[i] = place(host, self.in_shardings[self.n_in + i]), host
        placed = [place(a, s) for a, s in zip(args, self.in_shardings, strict=False)]
        results = self.jitted(*placed, *self.values)
        for i, out_idx in self.updated.items():
            self.values[i] = results[out_idx]
        self.on_host = False
        return list(results[: self.n_out])

    def to_host(self):
        """Bring the devices' values of the shared variables back into them (replicated: no collective)."""
        if self.on_host:
            return
        for i, var in enumerate(self.shared):
            if self.values[i] is not None:
                var.set_value(np.array(self.values[i].addressable_data(0)), borrow=True)
                self.seen[i] = var.get_value(borrow=True)
        self.on_host = True


# PyTensor rewrites that flatten (T, B, ...) into (T*B, ...) where XLA can work on (T, B, ...) as it
# is: the flat (T*B) axis cannot be split by streams, so XLA would gather the whole batch onto every
# device there. Without them a (T, B, k) x (k, n) matmul stays one batched product, and a lookup of
# (T, B) ids one gather, each on its own device's streams.
FLATTENING = ("local_batched_matmul_to_core_matmul_with_reshape", "local_replace_AdvancedSubtensor")


def _mode():
    """PyTensor's JAX mode without the FLATTENING rewrites."""
    jax_mode = get_mode("JAX")
    return Mode(jax_mode.linker, jax_mode.provided_optimizer.excluding(*FLATTENING))


def place(value, sharding):
    """`value` as a global array with `sharding`: a jax.Array from an earlier call as it is; a host
    array sliced, each process sending only its own devices' parts."""
    import jax

    if isinstance(value, jax.Array):
        return value
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def to_host(fn):
    """Before the host reads the shared variables `fn` updates (a ShardedFunction's live on the devices)."""
    if isinstance(fn, ShardedFunction):
        fn.to_host()


def gather(array):
    """A (possibly sharded, possibly multi-process) array as one host array; a collective when the
    array spans processes, so every process calls it at the same point. None stays None."""
    if array is None or isinstance(array, np.ndarray):
        return array
    if array.is_fully_addressable:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))
