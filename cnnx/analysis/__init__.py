"""Architecture analysis: summary tables, FLOPs, depth, memory, receptive field, speed.

Import the submodule you need (`from cnnx.analysis import summary`); this package imports
nothing itself, so `import cnnx.analysis` stays cheap.

  trace            the jaxpr walk every other tool reads (layers, depth, receptive fields)
  summary          per-layer table and totals; text / markdown / csv / json
  flops            MACs per layer and in total; torchvision's published figures
  depth            conventional depth (conv + fc layers on the longest path)
  receptive_field  receptive field size, jump and start per layer
  memory           parameter and activation bytes; compiled peak of inference / train steps
  speed            images/s of inference and train steps
  benchmark        the real train step against the matmul and convolution ceilings, in rounds
  rounds           median, spread and verdict of figures over separated rounds
  host             the CPU model, its matmul instruction sets, the load average
  grouped_layers   single grouped and depthwise convolutions: XLA, the platform's, torch
  torch_speed      the torchvision / timm counterpart, timed the same way
  input_speed      images/s of the tf.data training pipeline over a folder of JPEGs
  gradient_flow    per-layer gradient norms at initialisation (plain vs residual)
  reference_steps  the steps memory, speed and benchmark measure (the trainer's own train step)
  filters          first-layer filters as a PNG grid
  zoo              the at-a-glance table of all registered models
"""
