"""Training on several devices and several processes: which devices, JAX's distributed runtime,
a PyTensor graph compiled with shardings, and what the processes must agree on.

Data parallel. The update's B streams are split evenly over the devices along each input's and
output's batch axis; parameters and optimizer state are replicated. The graph is the one-device
graph, built, differentiated and rewritten by PyTensor; XLA's SPMD partitioner turns its sums over
the batch (the loss and every weight gradient) into all-reduces, so an update on N devices is the
same computation as on one, up to the order of the additions.

PyTensor's JAXLinker jits without shardings, and passes every shared variable in and out of each
call, so the step is compiled here, on one device too: PyTensor rewrites the graph for JAX
(`pytensor.function` in JAX mode), `jax_funcify` of its rewritten FunctionGraph gives a plain JAX
callable, and that is jitted (with the shardings, on several devices). The parameters then live on
the devices; `to_host` brings them back into the shared variables before anything on the host reads
them, and a value set on a shared variable (a resume, the divergence guard going back) goes to the
devices with the next update.

Several processes (hosts) run the same loop in lockstep: each feeds its own devices' streams,
process 0 alone writes files, and whatever decides the loop's course (a stop, a validation loss)
is agreed on, since a collective that one process skips stalls the others.
"""
import os
import re
import socket
import sys
import threading
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytensor
from pytensor.compile.mode import Mode, get_mode
from pytensor.link.jax.linker import JAXLinker
from pytensor.tensor.random.type import RandomType

from charrnn import precision
from charrnn.backend import _setup_jax, compile_function, device
from charrnn.configs import OptionError

COORDINATOR_TIMEOUT = 120  # seconds a process waits for all the others to reach the coordinator


class DeviceError(OptionError):
    """A device or process choice that cannot be used (a usage error): the message says why; `option` names it."""

    def __init__(self, message, option="--devices"):
        super().__init__(message)
        self.option = option


class Processes:
    """The run's processes, as start_processes left them: one, unless JAX's distributed runtime started."""

    count = 1
    index = 0


# --- which processes and devices

PLACEMENT = ("coordinator", "num_processes", "process_id", "coordinator_timeout")  # train's options beside --devices


def join(options):
    """Join the run's other processes, if there are any, with train's PLACEMENT options, which it
    takes out of `options`; --devices defaults to 1, or to all with several processes. True in the
    process that talks and writes: process 0, or the only one."""
    start_processes(*(options.pop(name) for name in PLACEMENT), give_up=give_up)
    if options.get("devices") is None:
        options["devices"] = "all" if Processes.count > 1 else 1
    return writes()


def give_up(message):
    """End the process now with `message` on stderr and exit code 1, skipping the exit handlers
    (JAX's waits for every other process to exit too, and they may be training on, or gone); from
    any thread, the watchdog's too, whose main thread is inside JAX."""
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()
    os._exit(1)


@contextmanager
def failing_alone(out_dir, state):
    """Around training with several processes: an error (one with click's format_message, or a
    collective failing as another process is lost) ends this process at once, in one line (give_up).
    `state` is the run's TrainState, for the message."""
    try:
        yield
    except Exception as e:
        if Processes.count == 1 or not (hasattr(e, "format_message") or lost_process(e)):
            raise
        give_up(e.format_message() if hasattr(e, "format_message") else
                f"another process of the run stopped answering ({str(e).splitlines()[0][:160]}); stopped after "
                f"{state.step} updates, the last checkpoint in {out_dir} is kept")


def start_processes(coordinator, num_processes, process_id, timeout=COORDINATOR_TIMEOUT, give_up=None):
    """Join the run's other processes through JAX's distributed runtime, before JAX computes
    anything. Several processes are asked for by any of the three, or by JAX_COORDINATOR_ADDRESS;
    what is not given JAX finds in a cluster's environment (SLURM, Open MPI, Kubernetes, Cloud TPU).

    JAX waits `timeout` seconds for every process at the coordinator, then ends the process itself
    with its own report. With `give_up`, that is called instead, with one line saying why, from
    another thread: it must end the process (os._exit; the main thread is inside JAX's runtime)."""
    if coordinator is None and num_processes is None and process_id is None and \
            not os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return
    if num_processes == 1:
        return
    if process_id is not None and num_processes is not None and process_id >= num_processes:
        raise DeviceError(f"{process_id} is out of range for {num_processes} processes (the ids are 0 to "
                          f"{num_processes - 1})", "--process-id")
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes all-reduce over TCP
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # gloo prints on stdout as it connects; train writes none there
    watchdog = threading.Timer(timeout, lambda: give_up(_absent(coordinator, process_id, timeout)))
    watchdog.daemon = True
    if give_up:
        watchdog.start()
    try:  # JAX's own wait ends later, so that the watchdog speaks first
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=int(timeout) + (30 if give_up else 0))
    except ValueError as e:  # neither the options nor JAX's environment gave one of the three
        option = next((o for word, o in MISSING.items() if word in str(e).lower()), "--coordinator")
        raise DeviceError(f"several processes need {MISSING_TEXT[option]}, which neither the command line nor "
                          f"JAX's environment gave", option) from None
    finally:
        watchdog.cancel()
    Processes.count, Processes.index = jax.process_count(), jax.process_index()


# JAX's ValueError when one of the three is missing, by a word of its message -> the option.
MISSING = {"coordinator": "--coordinator", "number of processes": "--num-processes", "process id": "--process-id"}
MISSING_TEXT = {"--coordinator": "the coordinator's HOST:PORT", "--num-processes": "their number",
                "--process-id": "this process's id"}


def _absent(coordinator, process_id, timeout):
    """Why the processes did not meet within `timeout` seconds, in one line."""
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS", "the coordinator")
    if process_id != 0 and not _reachable(coordinator):
        return (f"process {process_id} could not reach the coordinator {coordinator} within {timeout:g} s; "
                f"start process 0 there first (or check the address and the firewall)")
    return (f"the other processes did not all reach the coordinator {coordinator} within {timeout:g} s; "
            f"start every process with the same --coordinator and --num-processes and its own --process-id")


def _reachable(address):
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
        return True
    except (OSError, ValueError):
        return False


def check_address(address):
    """HOST:PORT with a host that resolves and a port in 1-65535; DeviceError says what is wrong."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DeviceError(f"{address!r} is not HOST:PORT (like 10.0.0.1:7777)", "--coordinator")
    try:
        socket.getaddrinfo(host.strip("[]"), int(port))
    except OSError:
        raise DeviceError(f"{address!r}: there is no host {host}", "--coordinator") from None
    return address


def lost_process(error):
    """True when `error`, raised while several processes train, is JAX's runtime failing a
    collective: another process died, or its host or the network did."""
    import jax

    return Processes.count > 1 and isinstance(error, (jax.errors.JaxRuntimeError, ValueError)) and \
        bool(re.match(r"(UNKNOWN|UNAVAILABLE|INTERNAL|ABORTED|DEADLINE_EXCEEDED|CANCELLED):", str(error)))


def settle(train_cfg):
    """train_cfg with its devices counted ("all": every device JAX sees, over all processes), once
    they are known to be there and the batch's streams split evenly over them; DeviceError if not."""
    choice, n = train_cfg.devices, Processes.count
    if choice == 1 and n == 1:
        return train_cfg
    if train_cfg.backend != "jax":
        raise DeviceError(f"{choice} devices need the jax backend (the {train_cfg.backend} backend runs on one)")
    if choice != "all":
        _check_split(train_cfg.batch_size, choice, n)
    import jax

    available = jax.device_count()
    count = available if choice == "all" else choice
    if count > available:
        raise DeviceError(f"{count} devices asked for, but JAX sees {available} ({describe_devices(jax.devices())}); "
                          f"give all or fewer")
    _check_split(train_cfg.batch_size, count, n)
    return replace(train_cfg, devices=count)


def _check_split(B, count, processes):
    """DeviceError unless `count` devices split over the processes and B streams over the devices."""
    if count % processes:
        raise DeviceError(f"{count} devices do not split evenly over {processes} processes: give a multiple of "
                          f"{processes}, or all")
    if B % count:
        raise DeviceError(f"{B} streams do not split evenly over {count} devices: give a multiple of {count} "
                          f"(like {max(B // count, 1) * count})", "--batch-size")


def writes():
    """True in the process that writes the run's files (and talks): process 0, or the only one."""
    return Processes.index == 0


def mesh_devices(count):
    """The run's `count` devices: as many from each process, process by process."""
    import jax

    per_process = count // Processes.count
    return [d for p in range(Processes.count)
            for d in sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:per_process]]


def describe_devices(devs):
    """Devices in words: "cpu", "4 x cpu", "4 x gpu NVIDIA H200"."""
    first = devs[0]
    kind = "cpu" if first.platform == "cpu" else f"{first.platform} {first.device_kind}"
    return kind if len(devs) == 1 else f"{len(devs)} x {kind}"


def describe(train_cfg):
    """Where the training step runs, for the log and the progress bar."""
    if train_cfg.devices == 1 and Processes.count == 1:
        return device(train_cfg.backend)
    where = describe_devices(mesh_devices(train_cfg.devices))
    return where if Processes.count == 1 else f"{where} in {Processes.count} processes"


# --- what the processes agree on


def agree(*values):
    """The largest of each of the float `values` over the run's processes (a stop wanted by one
    stops all). A collective when there are several: every process calls it at the same points."""
    if Processes.count == 1:
        return values
    return tuple(_gathered(values).max(axis=0))


def from_process_0(value):
    """Process 0's float `value`, exactly, in every process (a validation loss, which decides the
    best checkpoint and the patience stop). A collective when there are several."""
    return value if Processes.count == 1 else float(_gathered([value])[0, 0])


def _gathered(values):
    """(processes, len(values)) float64: every process's `values`, exactly (a collective)."""
    from jax.experimental import multihost_utils

    words = np.asarray(values, dtype=np.float64).view(np.int32)  # 64 bits through JAX's 32-bit ints
    gathered = np.asarray(multihost_utils.process_allgather(words))  # (processes, 2 len(values))
    return np.ascontiguousarray(gathered).view(np.float64)


# --- compiling


def compile_step(inputs, outputs, updates, train_cfg, batch_axes):
    """The training step: a DeviceFunction over the run's devices with the jax backend (one, or a
    mesh), compile_function's function with the others. `batch_axes` maps inputs and outputs
    (variables) to their batch axis; None keys are skipped, and what is not there is replicated."""
    if train_cfg.backend != "jax":
        return compile_function(inputs, outputs, updates=updates, backend=train_cfg.backend)
    return DeviceFunction(inputs, outputs, updates, mesh_devices(train_cfg.devices), batch_axes)


class DeviceFunction:
    """A PyTensor function's graph jitted by charrnn: fn(*inputs) -> list of outputs, as
    pytensor.function's, applying the updates to copies of the shared variables that stay on the
    devices, their buffers donated to the update that replaces them. On one device it is jitted as
    PyTensor's JAX linker would (its rewrites, no shardings), and the call is JAX's alone: PyTensor's
    own function would pass every weight in and take it back out through its containers on each
    call. On several, its inputs and outputs are sharded along `batch_axes` over a mesh."""

    def __init__(self, inputs, outputs, updates, devs, batch_axes):
        import jax
        from pytensor.link.jax.dispatch import jax_funcify

        _setup_jax()  # JAX's compilation cache and warning filters, as compile_function's
        precision.register("jax")  # BF16Dot's JAX implementation, which jax_funcify looks up
        self.sharded = len(devs) > 1 or Processes.count > 1
        fn = pytensor.function(inputs, outputs, updates=updates, mode=_mode(self.sharded))  # rewrites, no more
        # the rewritten graph; inputs: `inputs`, then the shared variables; outputs: `outputs`, then the updates
        self.fgraph = fgraph = fn.maker.fgraph
        self.n_in, self.n_out = len(inputs), len(outputs)
        self.shared = fgraph.inputs[self.n_in:]
        self.updated = {in_idx - self.n_in: out_idx for out_idx, in_idx in fgraph.update_mapping.items()}
        donated = tuple(self.n_in + i for i in self.updated)
        if self.sharded:
            self.in_shardings, out_shardings = _shardings(inputs, outputs, fgraph, devs, batch_axes)
            self.jitted = jax.jit(jax_funcify(fgraph), in_shardings=self.in_shardings, out_shardings=out_shardings,
                                  donate_argnums=donated)
        else:
            self.in_shardings = (None,) * len(fgraph.inputs)  # JAX's default device
            self.jitted = jax.jit(jax_funcify(fgraph), donate_argnums=donated)
        self.values = [None] * len(self.shared)  # device copies of the shared variables
        self.seen = [None] * len(self.shared)  # the host value each copy was made from (or went to)
        self.on_host = True  # the shared variables hold what the devices hold

    def __call__(self, *args):
        for i, var in enumerate(self.shared):  # values set on the host since go to the devices
            host = var.get_value(borrow=True)
            if host is not self.seen[i]:
                self.values[i], self.seen[i] = place(host, self.in_shardings[self.n_in + i]), host
        if self.sharded:
            args = [place(a, s) for a, s in zip(args, self.in_shardings, strict=False)]
        results = self.jitted(*args, *self.values)  # one device: JAX moves host arrays itself
        for i, out_idx in self.updated.items():
            self.values[i] = results[out_idx]
        self.on_host = False
        return list(results[: self.n_out])

    def to_host(self):
        """Bring the devices' values of the shared variables back into them (replicated: no collective)."""
        if self.on_host:
            return
        for i, var in enumerate(self.shared):
            if self.values[i] is not None and not isinstance(var.type, RandomType):  # see place
                var.set_value(np.array(self.values[i].addressable_data(0)), borrow=True)
                self.seen[i] = var.get_value(borrow=True)
        self.on_host = True


def _shardings(inputs, outputs, fgraph, devs, batch_axes):
    """(in_shardings, out_shardings) of a DeviceFunction's jitted graph over a mesh of `devs`: each
    variable in `batch_axes` split along its batch axis, everything else replicated."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    axes = {id(v): a for v, a in batch_axes.items() if v is not None}
    mesh = Mesh(np.array(devs), ("batch",))

    def sharding(var):
        axis = axes.get(id(var))
        return NamedSharding(mesh, PartitionSpec() if axis is None else PartitionSpec(*[None] * axis, "batch"))

    n_in, n_out = len(inputs), len(outputs)
    return (tuple(sharding(v) for v in [*inputs, *fgraph.inputs[n_in:]]),
            tuple(sharding(v) for v in [*outputs, *fgraph.outputs[n_out:]]))


# PyTensor rewrites that flatten (T, B, ...) into (T*B, ...) where XLA can work on (T, B, ...) as it
# is: the flat (T*B) axis cannot be split by streams, so XLA would gather the whole batch onto every
# device there. Without them a (T, B, k) x (k, n) matmul stays one batched product, and a lookup of
# (T, B) ids one gather, each on its own device's streams.
FLATTENING = ("local_batched_matmul_to_core_matmul_with_reshape", "local_replace_AdvancedSubtensor")


class _Rewrites(JAXLinker):
    """JAXLinker as far as the rewrites it asks PyTensor for: it converts and jits nothing (a
    DeviceFunction does), so it leaves the graph's random generators as they are, where JAXLinker
    would swap in copies and turn them into JAX keys."""

    def fgraph_convert(self, fgraph, **kwargs):
        return None

    def jit_compile(self, fn):
        return fn

    def create_thunk_inputs(self, storage_map):
        return [storage_map[var] for var in self.fgraph.inputs]


def _mode(sharded):
    """PyTensor's JAX mode linked by _Rewrites; `sharded`: without the FLATTENING rewrites."""
    rewrites = get_mode("JAX").provided_optimizer
    return Mode(_Rewrites(), rewrites.excluding(*FLATTENING) if sharded else rewrites)


def place(value, sharding):
    """`value` as a global array with `sharding`: a jax.Array from an earlier call as it is; a host
    array sliced, each process sending only its own devices' parts (sharding None: a copy on JAX's
    default device, never an alias of the host's array, which a donated buffer would overwrite). A
    NumPy random generator becomes PyTensor's JAX form of it (arrays), replicated; its state then
    advances on the devices, and the host's generator stays as it was, as with PyTensor's own
    JAXLinker, which compiles a copy."""
    import jax
    from pytensor.link.jax.dispatch import jax_typify  # imports JAX: not before charrnn.backend set floatX

    if isinstance(value, jax.Array):
        return value
    if isinstance(value, np.random.Generator):
        return jax.tree.map(lambda leaf: place(leaf, sharding), jax_typify(value))
    value = np.asarray(value)
    if sharding is None:
        return jax.device_put(value, may_alias=False)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def to_host(fn, *arrays):
    """Before the host reads the shared variables `fn` updates: a DeviceFunction keeps them on the
    devices, and brings them back. Returns `arrays` (outputs of `fn`) as host arrays, by `gather`."""
    if isinstance(fn, DeviceFunction):
        fn.to_host()
    return gather(*arrays) if len(arrays) == 1 else [gather(a) for a in arrays]


def gather(array):
    """A (possibly sharded, possibly multi-process) array as one host array; a collective when the
    array spans processes, so every process calls it at the same point. None stays None."""
    if array is None or isinstance(array, np.ndarray):
        return array
    if array.is_fully_addressable:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))
