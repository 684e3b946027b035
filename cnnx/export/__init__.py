"""Trained runs out of cnnx: weights for torch / safetensors users, and a serving artefact.

run       a workdir's checkpoint with its model and evaluation preprocessing (`load_run`)
weights   state_dicts in torchvision's / timm's names (or cnnx's), .pth or safetensors
serving   `jax.export` of inference with preprocessing folded in, loadable with jax alone
"""
