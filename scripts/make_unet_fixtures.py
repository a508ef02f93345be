"""Fixture for the whole-model check: a tiny diffusers UNet2DModel (both block kinds, attention, a class embedding)
with random weights; its output for a batch of images, timesteps and labels, and the gradient of every parameter
for a random upstream gradient. Also the parameter counts of the two reference presets.

Regenerate:  python3 scripts/make_unet_fixtures.py   (pip install torch==2.13.0+cpu diffusers safetensors)
Writes Tests/DiffuseModelsTests/Fixtures/unet.safetensors (F32):
  x, timesteps, labels, gout, out, grad.x, param.<key>, grad.<key>; count.mnist_small, count.cifar_ddpm (I64)
and Tests/DiffuseModelsTests/Fixtures/unet_config.json (the tiny model's diffusers config).
"""
import json
import pathlib

import torch
from diffusers import UNet2DModel
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseModelsTests/Fixtures"
torch.manual_seed(0)
config = dict(sample_size=8, in_channels=2, out_channels=2, layers_per_block=1, block_out_channels=(8, 16),
              norm_num_groups=4, attention_head_dim=4, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
              up_block_types=("AttnUpBlock2D", "UpBlock2D"), num_class_embeds=3, freq_shift=1, flip_sin_to_cos=False)
model = UNet2DModel(**config)
with torch.no_grad():  # random norms and biases, so that no gradient is tested only at 1 and 0
    for name, p in model.named_parameters():
        if "norm" in name or name.endswith("bias"):
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))

x = torch.randn(2, 2, 8, 8, requires_grad=True)
timesteps, labels = torch.tensor([3, 700]), torch.tensor([2, 0])
out = model(x, timesteps, class_labels=labels).sample
gout = torch.randn_like(out)
out.backward(gout)

tensors = {"x": x, "timesteps": timesteps, "labels": labels, "gout": gout, "out": out, "grad.x": x.grad}
for name, p in model.named_parameters():
    tensors[f"param.{name}"] = p
    tensors[f"grad.{name}"] = p.grad
mnist_small = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1,
                          block_out_channels=(32, 64, 128), norm_num_groups=8,
                          down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                          up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))
cifar = UNet2DModel(sample_size=32, block_out_channels=(128, 256, 256, 256),
                    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
tensors["count.mnist_small"] = torch.tensor([sum(p.numel() for p in mnist_small.parameters())])
tensors["count.cifar_ddpm"] = torch.tensor([sum(p.numel() for p in cifar.parameters())])
save_file({k: v.detach().contiguous() if k.startswith("count.") else v.detach().contiguous().float()
           for k, v in tensors.items()}, str(root / "unet.safetensors"))
(root / "unet_config.json").write_text(json.dumps(dict(model.config), indent=1, default=list))
print("wrote", root / "unet.safetensors", (root / "unet.safetensors").stat().st_size, "bytes")
