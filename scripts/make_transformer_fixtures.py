"""Fixtures for Stable Diffusion's spatial transformer: diffusers' Transformer2DModel (BasicTransformerBlock with
self-attention, cross-attention over a context and a GEGLU feed-forward) with random weights, its output and every
gradient for a random upstream gradient.

Regenerate:  python3 scripts/make_transformer_fixtures.py   (pip install torch==2.13.0+cpu diffusers==0.42.1 safetensors)
Writes Tests/DiffuseModelsTests/Fixtures/transformer2d.safetensors (F32), for kind in conv (1x1 convolutions in and
out, SD 1.x) and linear (use_linear_projection, SD 2.x): Transformer2DModel(num_attention_heads=2,
attention_head_dim=8, in_channels=16, norm_num_groups=4, cross_attention_dim=12, num_layers=2):
  <kind>.x [2, 16, 3, 5], <kind>.context [2, 7, 12], <kind>.gout, <kind>.out, <kind>.grad.x, <kind>.grad.context,
  <kind>.param.<name> and <kind>.grad.<name> for every parameter (norms drawn away from 1 and 0).
"""
import pathlib

import torch
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from safetensors.torch import save_file

torch.manual_seed(0)
tensors = {}
for kind in ("conv", "linear"):
    model = Transformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=16, norm_num_groups=4,
                               cross_attention_dim=12, num_layers=2, use_linear_projection=kind == "linear")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
            elif "proj_out" in name:  # diffusers zero-initialises it; random here, so that the blocks count
                p.copy_(torch.randn_like(p) * 0.2)
    x = torch.randn(2, 16, 3, 5, requires_grad=True)
    context = torch.randn(2, 7, 12, requires_grad=True)
    out = model(x, encoder_hidden_states=context).sample
    gout = torch.randn_like(out)
    out.backward(gout)
    tensors.update({f"{kind}.x": x, f"{kind}.context": context, f"{kind}.gout": gout, f"{kind}.out": out,
                    f"{kind}.grad.x": x.grad, f"{kind}.grad.context": context.grad})
    for name, p in model.named_parameters():
        tensors[f"{kind}.param.{name}"], tensors[f"{kind}.grad.{name}"] = p, p.grad
path = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseModelsTests/Fixtures/transformer2d.safetensors"
save_file({k: v.detach().contiguous().float() for k, v in tensors.items()}, str(path))
print("wrote", path, len(tensors), "tensors")
