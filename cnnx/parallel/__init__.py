"""Device meshes and sharding rules, used by the trainer, the evaluators and the analysis alike.

Import the submodule you need; this package imports nothing itself.

  mesh      the ('data', 'fsdp', 'model') mesh from the `mesh` config section, its size
            checks, and the batch / replicated shardings
  sharding  parameter sharding rules (`mesh.rules`, 'auto' FSDP) and the shardings of a
            whole train state
"""
