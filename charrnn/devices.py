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
    devices. The updated ones travel packed, one flat buffer per dtype (Packing), donated to the
    update that replaces it: JAX's work per call grows with the number of arrays in and out, and a
    step's 31 weights and moments would be 62 of them. On one device it is jitted as PyTensor's
    JAX linker would (its rewrites, no shardings); on several, its inputs and outputs are sharded
    along `batch_axes` over a mesh, the shared variables replicated."""

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
        updated = {in_idx - self.n_in: out_idx for out_idx, in_idx in fgraph.update_mapping.items()}
        self.packing = Packing(self.shared, updated)
        slots = len(self.packing.slots)
        self.returned = [k for k, slot in enumerate(self.packing.slots) if slot[0] in updated]  # slots updated
        donated = tuple(self.n_in + k for k in self.returned)
        step = self.packing.wrap(jax_funcify(fgraph), self.n_in, self.n_out, updated, self.returned)
        if self.sharded:
            ins, outs, replicated = _shardings(inputs, outputs, devs, batch_axes)
            self.in_shardings = (*ins, *[replicated] * slots)
            self.jitted = jax.jit(step, in_shardings=self.in_shardings,
                                  out_shardings=(*outs, *[replicated] * len(self.returned)), donate_argnums=donated)
        else:
            self.in_shardings = (None,) * (self.n_in + slots)  # JAX's default device
            self.jitted = jax.jit(step, donate_argnums=donated)
        self.values = [None] * slots  # the slots' device copies
        self.seen = [None] * len(self.shared)  # the host value each shared variable's copy was made from (or went to)
        self.on_host = True  # the shared variables hold what the devices hold

    def __call__(self, *args):
        self._send_host_values()
        if self.sharded:
            args = [place(a, s) for a, s in zip(args, self.in_shardings, strict=False)]
        results = self.jitted(*args, *self.values)  # one device: JAX moves host arrays itself
        for k, value in zip(self.returned, results[self.n_out:], strict=True):
            self.values[k] = value
        self.on_host = False
        return list(results[: self.n_out])

    def _send_host_values(self):
        """Values set on the host since the last call (a resume, the divergence guard going back) go to
        the devices; a packed slot keeps the devices' values of its other variables."""
        for k, slot in enumerate(self.packing.slots):
            hosts = [self.shared[i].get_value(borrow=True) for i in slot]
            if all(h is self.seen[i] for h, i in zip(hosts, slot)):
                continue
            current = hosts
            if self.packing.flat[k] and not self.on_host and self.values[k] is not None:
                current = [h if h is not self.seen[i] else d
                           for h, i, d in zip(hosts, slot, self.packing.pieces(k, self.values[k]), strict=True)]
            self.values[k] = place(self.packing.pack(k, current), self.in_shardings[self.n_in + k])
            for h, i in zip(hosts, slot):
                self.seen[i] = h

    def to_host(self):
        """Bring the devices' values of the shared variables back into them (replicated: no collective)."""
        if self.on_host:
            return
        for k, slot in enumerate(self.packing.slots):
            if self.values[k] is None or isinstance(self.shared[slot[0]].type, RandomType):  # see place
                continue
            for i, piece in zip(slot, self.packing.pieces(k, self.values[k]), strict=True):
                self.shared[i].set_value(piece, borrow=True)
                self.seen[i] = self.shared[i].get_value(borrow=True)
        self.on_host = True

    def compiled_text(self, *args):
        """The optimized HLO XLA compiles for a call with `args` (inputs, as to __call__), as text."""
        self._send_host_values()
        placed = [place(a, s) for a, s in zip(args, self.in_shardings, strict=False)] if self.sharded else args
        return self.jitted.lower(*placed, *self.values).compile().as_text()


class Packing:
    """How a DeviceFunction's jitted step takes the shared variables: `slots`, each a list of their
    indices, one argument each. The updated variables of each dtype share a slot, packed flat in
    order (their shapes fixed by the values they have now); every other variable (a random
    generator, one the step does not update) has a slot of its own, as it is."""

    def __init__(self, shared, updated):
        groups, alone = {}, []
        for i, var in enumerate(shared):
            if i in updated and not isinstance(var.type, RandomType):
                groups.setdefault(var.type.dtype, []).append(i)
            else:
                alone.append([i])
        self.slots = [*groups.values(), *alone]
        self.flat = [True] * len(groups) + [False] * len(alone)  # packed flat, or as it is
        self.shapes = {i: np.shape(shared[i].get_value(borrow=True)) for k, slot in enumerate(self.slots)
                       if self.flat[k] for i in slot}
        self.dtypes = [getattr(shared[slot[0]].type, "dtype", None) for slot in self.slots]  # of the flat ones

    def _bounds(self, k):
        """(start, end, shape) of each of slot k's variables in its flat buffer."""
        start = 0
        for i in self.slots[k]:
            size = int(np.prod(self.shapes[i], dtype=np.int64))
            yield start, start + size, self.shapes[i]
            start += size

    def pack(self, k, values):
        """Slot k's argument from its variables' values (host arrays, or the devices' pieces)."""
        if not self.flat[k]:
            return values[0]
        for i, value in zip(self.slots[k], values, strict=True):
            if np.shape(value) != self.shapes[i]:
                raise ValueError(f"shared variable {i} changed shape from {self.shapes[i]} to {np.shape(value)}")
        return np.concatenate([np.asarray(v, dtype=self.dtypes[k]).ravel() for v in values])

    def pieces(self, k, value):
        """Slot k's variables' values, as host arrays, from its device value."""
        host = np.array(value.addressable_data(0))
        return [host[a:b].reshape(shape) for a, b, shape in self._bounds(k)] if self.flat[k] else [host]

    def wrap(self, step, n_in, n_out, updated, returned):
        """The jitted function: `step` (the graph's JAX function: inputs and shared variables in,
        outputs and updates out) taking its shared variables by slot, and returning its outputs, then
        the new value of each slot in `returned`."""
        import jax.numpy as jnp

        def packed(*args):
            values = [None] * sum(len(slot) for slot in self.slots)
            for k, arg in enumerate(args[n_in:]):
                parts = [arg[a:b].reshape(shape) for a, b, shape in self._bounds(k)] if self.flat[k] else [arg]
                for i, part in zip(self.slots[k], parts, strict=True):
                    values[i] = part
            results = step(*args[:n_in], *values)
            new = [[results[updated[i]] for i in self.slots[k]] for k in returned]
            return (*results[:n_out], *[jnp.concatenate([jnp.ravel(v) for v in vs]) if self.flat[k] else vs[0]
                                        for k, vs in zip(returned, new, strict=True)])

        return packed


def _shardings(inputs, outputs, devs, batch_axes):
    """(inputs' shardings, outputs' shardings, the replicated sharding) over a mesh of `devs`: each
    variable in `batch_axes` split along its batch axis, everything else replicated."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    axes = {id(v): a for v, a in batch_axes.items() if v is not None}
    mesh = Mesh(np.array(devs), ("batch",))

    def sharding(var):
        axis = axes.get(id(var))
        return NamedSharding(mesh, PartitionSpec() if axis is None else PartitionSpec(*[None] * axis, "batch"))

    return [sharding(v) for v in inputs], [sharding(v) for v in outputs], NamedSharding(mesh, PartitionSpec())


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
