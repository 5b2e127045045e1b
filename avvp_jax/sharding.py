"""The device mesh of a run, its shardings, global batches from per-host slices, and the seed axis map.

Parallelism is `jax.jit` over a 2-D mesh `("seed", "data")` of every device of every host (`make_mesh`):
a train state is split along its leading seed axis (`P("seed")`), a training batch along its seed and clip
axes (`P("seed", "data")`), an evaluation batch along its clip axis (`P("data")`), and XLA inserts the
gradient all-reduce over "data". The seed axis has gcd(num_seeds, devices per host) devices, so a GPU or
a TPU slice runs seeds side by side while every host keeps all seeds of its own clips. Each host reads its
own slice of every global batch (`avvp_jax.tasks.llp.pipeline`), and `global_batch` assembles the global
`jax.Array` with `jax.make_array_from_process_local_data`.

`map_seeds` maps a one-replica function over the seed axis: every function of a run's replicas (the train
step, the evaluation step, an ensemble's prediction) goes through it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

Batch = dict[str, Any]

SEED_AXIS = "seed"
DATA_AXIS = "data"


def seed_axis_size(num_seeds: int, devices: Iterable[jax.Device] | None = None) -> int:
  """Devices along the mesh's seed axis: gcd(num_seeds, devices of one host among `devices`)."""
  devices = jax.devices() if devices is None else list(devices)
  per_host = sum(d.process_index == devices[0].process_index for d in devices)
  return math.gcd(int(num_seeds), per_host)


def make_mesh(devices: Iterable[jax.Device] | None = None, num_seeds: int = 1) -> Mesh:
  """The `("seed", "data")` mesh over `devices` (default: every device of every host).

  The seed axis has `seed_axis_size(num_seeds)` devices, the data axis the rest. Device `[s, d]` is
  `devices[d * seeds + s]`: a host's devices (contiguous in `jax.devices()`) form whole columns, so each
  host holds every seed of its own data slice and feeds only its own clips.
  """
  devices = jax.devices() if devices is None else list(devices)
  seeds = seed_axis_size(num_seeds, devices)
  grid = np.empty(len(devices), dtype=object)
  grid[:] = devices
  return Mesh(grid.reshape(-1, seeds).T, (SEED_AXIS, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """`[B, ...]`: evaluation batches, the same clips for every seed."""
  return NamedSharding(mesh, P(DATA_AXIS))


def seed_sharded(mesh: Mesh) -> NamedSharding:
  """`[S, ...]`: the train state and per-seed values."""
  return NamedSharding(mesh, P(SEED_AXIS))


def seed_data_sharded(mesh: Mesh) -> NamedSharding:
  """`[S, B, ...]`: training batches, one row of clips per seed."""
  return NamedSharding(mesh, P(SEED_AXIS, DATA_AXIS))


def device_batch(batch: Mapping[str, Any]) -> Batch:
  """The numeric entries of a host batch (drops strings and object arrays)."""
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    if value.dtype.kind in "fiub":
      out[key] = value
  return out


def global_batch(mesh: Mesh, host_batch: Mapping[str, Any], *, seeds: bool = False) -> Batch:
  """Assembles the global batch from this host's slice of it.

  Args:
    mesh: from `make_mesh`.
    host_batch: this host's rows, `[B / process_count, ...]` per entry, or with `seeds`
      `[S, B / process_count, ...]` (training batches of S replicas).
    seeds: whether the entries have the leading seed axis.

  Returns:
    The numeric entries as global `jax.Array`s, the clip axis made of the hosts' slices in process order
    and split over the mesh's data axis (and the seed axis over the seed axis).
  """
  sharding = seed_data_sharded(mesh) if seeds else data_sharded(mesh)
  clip_axis = 1 if seeds else 0
  out = {}
  for key, value in device_batch(host_batch).items():
    shape = list(value.shape)
    shape[clip_axis] *= jax.process_count()
    out[key] = jax.make_array_from_process_local_data(sharding, value, tuple(shape))
  return out


def map_seeds(fn: Callable, num_seeds: int, in_axes: tuple[int | None, ...]) -> Callable:
  """`jax.vmap(fn, in_axes)` over the seed axis; for one seed, `fn` on row 0 with the axis put back.

  Both compute the same function. The one-seed form runs the plain program, which XLA's CPU backend runs
  faster than a size-1 vmap (measured in `bench/bench_train.py`).
  """
  if num_seeds > 1:
    return jax.vmap(fn, in_axes=in_axes)

  def one_seed(*args):  # reshapes: free bitcasts in XLA
    rows = [
        arg if axis is None else jax.tree.map(lambda x: x.reshape(x.shape[1:]), arg)
        for arg, axis in zip(args, in_axes)
    ]
    return jax.tree.map(lambda x: x.reshape((1, *x.shape)), fn(*rows))

  return one_seed
