"""`Dense`: `nn.Dense` on the platform's matrix product (`cnnx.backends.dot_general`).

On the CPU with the oneDNN extension built, dense layers' products and both their gradients
run in oneDNN's matmul (`cnnx.backends.cpu.dense`); elsewhere `lax.dot_general`. A partial, as
`Conv`, so parameter trees and names are `nn.Dense`'s. Models use this, never `nn.Dense`.
"""

import functools

import flax.linen as nn

from cnnx import backends

Dense = functools.partial(nn.Dense, dot_general=backends.dot_general)
