"""Fixture for the whole-block check: a diffusers ResnetBlock2D (with time embedding) followed by the diffusers
Attention block that UNet2DModel's attention blocks use, with random weights; its output and every parameter
gradient for a random upstream gradient.

Regenerate:  python3 scripts/make_block_fixtures.py   (pip install torch==2.13.0+cpu diffusers safetensors)
Writes Tests/DiffuseModelsTests/Fixtures/blocks.safetensors (F32):
  x, temb, gout, out, grad.x, grad.temb, resnet.<param>, attn.<param>, grad.resnet.<param>, grad.attn.<param>
"""
import pathlib

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from safetensors.torch import save_file

torch.manual_seed(0)
IN, OUT, TEMB, GROUPS, EPS, HEAD_DIM = 8, 16, 12, 4, 1e-6, 8

resnet = ResnetBlock2D(in_channels=IN, out_channels=OUT, temb_channels=TEMB, groups=GROUPS, eps=EPS, dropout=0.0)
attn = Attention(OUT, heads=OUT // HEAD_DIM, dim_head=HEAD_DIM, rescale_output_factor=1.0, eps=EPS,
                 norm_num_groups=GROUPS, residual_connection=True, bias=True, upcast_softmax=True,
                 _from_deprecated_attn_block=True)
# Random, non-trivial norms so that their gradients are tested with weights other than 1 and 0.
with torch.no_grad():
    for m in (resnet, attn):
        for name, p in m.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))

x = torch.randn(2, IN, 6, 5, requires_grad=True)
temb = torch.randn(2, TEMB, requires_grad=True)
out = attn(resnet(x, temb))
gout = torch.randn_like(out)
out.backward(gout)

tensors = {"x": x, "temb": temb, "gout": gout, "out": out, "grad.x": x.grad, "grad.temb": temb.grad}
for prefix, m in (("resnet", resnet), ("attn", attn)):
    for name, p in m.named_parameters():
        tensors[f"{prefix}.{name}"] = p
        tensors[f"grad.{prefix}.{name}"] = p.grad
path = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseModelsTests/Fixtures/blocks.safetensors"
save_file({k: v.detach().contiguous().float() for k, v in tensors.items()}, str(path))
print(f"wrote {path} ({path.stat().st_size} bytes, {len(tensors)} tensors)")
