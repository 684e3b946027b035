"""Backend-specific workarounds, fenced off from the layers and models that use them.

- `cpu`: XLA:CPU's slow gradients (1x1 and depthwise convolutions, max pooling) replaced by
  custom VJPs behind the `CNNX_CPU_GRADS` switch, and the XLA flags the entry points set.

On every other backend the layers run plain `lax` / `flax.linen` operations.
"""
