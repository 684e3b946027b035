"""Parameter sharding rules and the shardings of a whole `TrainState`.

Parameters are matched by their '/'-joined path (`stage3_block4/conv2/conv/kernel`,
`block11/mlp/fc1/kernel`) against an ordered list of rules, `config.mesh.rules`:

    (('head/.*kernel', ('...', 'model')),     # the classifier's output axis over 'model'
     ('pos_embed', 'replicated'),
     ('.*', 'auto'))

The first rule whose regular expression `re.search`es the path decides; paths no rule matches
get 'auto'. A rule's spec is a PartitionSpec-like tuple (one entry per dimension: None, an
axis name or a tuple of axis names; a leading '...' aligns the entries with the *last*
dimensions, so one rule fits 2-D dense and 4-D conv kernels), or one of the words:

  'auto'        replicated below `mesh.fsdp_min_size` elements (biases, norm scales, small
                convolutions: gathering them would cost more than they save); above it the
                largest dimension that the 'fsdp' axis divides is split over 'fsdp' and, with a
                'model' axis, the last other dimension the 'model' axis divides over 'model';
  'replicated'  every device holds the whole parameter.

Optimizer state mirrors the parameters (momentum, Adam moments, LARS/LAMB buffers, inside
`multi_transform` / `masked` wrappers) and so does the EMA copy: every leaf of the state whose
path *ends* with a parameter's path and has its shape gets that parameter's sharding, so it
lives where the parameter lives and the update needs no communication. Everything else (the
step, BatchNorm statistics, optimizer counters, the plateau state) is replicated.
"""

import math
import re
from collections.abc import Iterable, Sequence

import jax
import numpy as np
from absl import logging
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cnnx.errors import ConfigError
from cnnx.parallel.mesh import AXES

# Parameters below this many elements stay replicated under 'auto' (2**18 floats = 1 MiB).
DEFAULT_MIN_SIZE = 2**18
_WORDS = ("auto", "replicated")
# State attributes that never mirror parameters (the EMA of BatchNorm statistics neither).
_REPLICATED_FIELDS = ("batch_stats", "ema_batch_stats")


def parse_rules(rules: Iterable | None) -> list[tuple[re.Pattern, object]]:
    """Compiles and checks `config.mesh.rules` (a sequence of (regex, spec) pairs).

    Raises:
      ConfigError: a rule that is not a pair, a bad regex, or a spec with unknown axes.
    """
    parsed = []
    for i, rule in enumerate(rules or ()):
        where = f"--config.mesh.rules[{i}]={rule!r}"
        if not isinstance(rule, Sequence) or isinstance(rule, str) or len(rule) != 2:
            raise ConfigError(f"{where} must be a (regex, spec) pair, e.g. ('head', 'auto').")
        pattern, spec = rule
        try:
            regex = re.compile(pattern)
        except (re.error, TypeError) as e:
            raise ConfigError(f"{where}: bad regular expression ({e}).") from None
        if isinstance(spec, str):
            if spec not in _WORDS:
                raise ConfigError(
                    f"{where}: spec {spec!r} must be 'auto', 'replicated' or a tuple of axis "
                    f"names / None per dimension, e.g. (None, 'fsdp'); axes: {AXES}."
                )
        else:
            if not isinstance(spec, Sequence):
                raise ConfigError(f"{where}: spec must be a tuple or one of {_WORDS}.")
            # Lists (a config read back from JSON) become tuples, as PartitionSpec wants.
            spec = tuple(tuple(e) if isinstance(e, list) else e for e in spec)
            for j, entry in enumerate(spec):
                names = entry if isinstance(entry, tuple | list) else (entry,)
                ok = all(n is None or n in AXES for n in names) or (j == 0 and entry == "...")
                if not ok:
                    raise ConfigError(
                        f"{where}: {entry!r} is not a mesh axis; use None, '...' (first entry "
                        f"only) or names from {AXES}."
                    )
        parsed.append((regex, spec))
    return parsed


def _axis_names(entry) -> tuple[str, ...]:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple | list) else (entry,)


def auto_spec(shape: Sequence[int], mesh: Mesh, min_size: int = DEFAULT_MIN_SIZE) -> PartitionSpec:
    """The default FSDP (and tensor-parallel) placement of a parameter of `shape`."""
    fsdp = mesh.shape.get("fsdp", 1)
    model = mesh.shape.get("model", 1)
    if math.prod(shape) < min_size or (fsdp == 1 and model == 1):
        return PartitionSpec()
    spec: list = [None] * len(shape)
    if model > 1:
        # The last (output) dimension the 'model' axis divides: dense and conv kernels split
        # their output features, as in Megatron's column-parallel layers.
        for d in reversed(range(len(shape))):
            if shape[d] % model == 0:
                spec[d] = "model"
                break
    if fsdp > 1:
        free = [d for d in range(len(shape)) if spec[d] is None and shape[d] % fsdp == 0]
        if free:
            # The largest dimension (the last of equals): the most even and the fewest gathers.
            spec[max(free, key=lambda d: (shape[d], d))] = "fsdp"
    return PartitionSpec(*spec)


def _explicit_spec(spec: tuple, shape, mesh: Mesh, path: str, rule: str) -> PartitionSpec:
    entries = list(spec)
    if entries and entries[0] == "...":
        entries = entries[1:]
        if len(entries) > len(shape):
            entries = None
        else:
            entries = [None] * (len(shape) - len(entries)) + entries
    if entries is None or len(entries) > len(shape):
        raise ConfigError(
            f"--config.mesh.rules: {rule} gives {len(spec)} entries for parameter {path} of "
            f"shape {tuple(shape)}; give at most {len(shape)} (or start with '...')."
        )
    used = [n for e in entries for n in _axis_names(e)]
    if len(used) != len(set(used)):
        raise ConfigError(f"--config.mesh.rules: {rule} uses a mesh axis twice for {path}.")
    for d, entry in enumerate(entries):
        size = math.prod(mesh.shape[n] for n in _axis_names(entry) if n in mesh.shape)
        if shape[d] % size:
            raise ConfigError(
                f"--config.mesh.rules: {rule} splits dimension {d} ({shape[d]}) of {path} "
                f"{tuple(shape)} over {entry} = {size} devices, which does not divide it; pick "
                "another dimension or axis, or let the rule say 'auto'."
            )
    return PartitionSpec(*entries)


def _flat_specs(params, mesh: Mesh, rules, min_size: int) -> dict[tuple, PartitionSpec]:
    parsed = parse_rules(rules)
    out = {}
    for key, leaf in traverse_util.flatten_dict(params).items():
        path = "/".join(map(str, key))
        shape = tuple(leaf.shape)
        spec, rule = "auto", "the default rule"
        for i, (regex, s) in enumerate(parsed):
            if regex.search(path):
                spec, rule = s, f"rule {i} ({regex.pattern!r})"
                break
        if spec == "auto":
            out[key] = auto_spec(shape, mesh, min_size)
        elif spec == "replicated":
            out[key] = PartitionSpec()
        else:
            out[key] = _explicit_spec(spec, shape, mesh, path, rule)
    return out


def param_specs(
    params, mesh: Mesh, rules: Iterable | None = None, min_size: int = DEFAULT_MIN_SIZE
):
    """A pytree of `PartitionSpec`s for a parameter tree (arrays or `ShapeDtypeStruct`s).

    Args:
      params: the 'params' collection.
      mesh: the device mesh (axes 'data', 'fsdp', 'model').
      rules: ordered (regex, spec) pairs, see the module docstring; None: 'auto' everywhere.
      min_size: 'auto' leaves parameters with fewer elements replicated.

    Raises:
      ConfigError: a rule that does not fit a parameter it matches (named in the message).
    """
    return traverse_util.unflatten_dict(_flat_specs(params, mesh, rules, min_size))


def _key_name(k) -> str | None:
    """The dict key of a path entry (None for attributes and sequence indices)."""
    if isinstance(k, jax.tree_util.DictKey):
        return str(k.key)
    return None


def state_shardings(
    state, mesh: Mesh, rules: Iterable | None = None, min_size: int = DEFAULT_MIN_SIZE
):
    """`NamedSharding`s for every leaf of a (usually abstract) `TrainState`.

    Parameters follow `param_specs`; leaves that mirror a parameter (same trailing path and
    shape: optimizer moments, EMA weights) follow their parameter; the rest is replicated.
    """
    specs = _flat_specs(state.params, mesh, rules, min_size)
    shapes = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(state.params).items()}
    by_path = {tuple(map(str, k)): (spec, shapes[k]) for k, spec in specs.items()}

    def place(path, leaf):
        top = path[0].name if isinstance(path[0], jax.tree_util.GetAttrKey) else None
        if top in _REPLICATED_FIELDS:
            return NamedSharding(mesh, PartitionSpec())
        # The trailing run of dict keys is the parameter path, whatever wraps it.
        names = []
        for k in reversed(path):
            name = _key_name(k)
            if name is None:
                break
            names.append(name)
        match = by_path.get(tuple(reversed(names)))
        if match is not None and match[1] == tuple(np.shape(leaf)):
            return NamedSharding(mesh, match[0])
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map_with_path(place, state)


def shardings_from_config(state, mesh: Mesh, mesh_cfg):
    """`state_shardings` with the rules and threshold of a config's `mesh` section."""
    return state_shardings(
        state, mesh, mesh_cfg.get("rules"), mesh_cfg.get("fsdp_min_size", DEFAULT_MIN_SIZE)
    )


def with_shardings(abstract, shardings):
    """`ShapeDtypeStruct`s carrying `shardings`: a restore template that allocates nothing.

    `Checkpointer.restore(with_shardings(jax.eval_shape(create, rng), shardings))` reads a
    checkpoint straight into the layout of another mesh (orbax reshards on read).
    """
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
    )


def bytes_per_device(tree, shardings) -> int:
    """Bytes one device holds of `tree` (arrays or `ShapeDtypeStruct`s) under `shardings`."""
    total = 0
    for leaf, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
        shard = sharding.shard_shape(tuple(leaf.shape))
        total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
    return total


def log_placement(state, shardings, mesh: Mesh) -> None:
    """Logs how much of the state each device holds, and how many parameters are split."""
    params = jax.tree.leaves(state.params)
    split = sum(
        1
        for leaf, s in zip(params, jax.tree.leaves(shardings.params))
        if s.shard_shape(tuple(leaf.shape)) != tuple(leaf.shape)
    )
    total = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(state))
    logging.info(
        "mesh %s: %d of %d parameter tensors sharded; train state %.1f MiB, %.1f MiB per device",
        dict(mesh.shape),
        split,
        len(params),
        total / 2**20,
        bytes_per_device(state, shardings) / 2**20,
    )
