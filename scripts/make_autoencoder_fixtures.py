"""Fixture for the VAE check: a tiny diffusers AutoencoderKL (two levels, attention in the mid block, 3 latent
channels, quant convolutions) with random weights; for a batch of images, the encoder's posterior (mean, log
variance), the KL term, the decoding of the posterior mean, and the gradients of every parameter and of the input
for a loss that touches both halves: sum(gmean·mean) + sum(glogvar·logvar) + sum(gout·decode(mean + std·eps)).

Regenerate:  python3 scripts/make_autoencoder_fixtures.py   (pip install torch==2.13.0+cpu diffusers safetensors)
Writes Tests/DiffuseModelsTests/Fixtures/autoencoder.safetensors (F32):
  x, eps, gmean, glogvar, gout, mean, logvar, kl, decoded, out, grad.x, param.<key>, grad.<key>
and Tests/DiffuseModelsTests/Fixtures/autoencoder_config.json (the model's diffusers config).
"""
import json
import pathlib

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseModelsTests/Fixtures"
torch.manual_seed(0)
config = dict(in_channels=2, out_channels=2, down_block_types=("DownEncoderBlock2D",) * 2,
              up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
              act_fn="silu", latent_channels=3, norm_num_groups=4, sample_size=8, scaling_factor=0.5)
model = AutoencoderKL(**config)
with torch.no_grad():  # random norms and biases, so that no gradient is tested only at 1 and 0
    for name, p in model.named_parameters():
        if "norm" in name or name.endswith("bias"):
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
        elif "conv_out" in name and name.startswith("encoder"):
            p.mul_(0.5)  # keep the log variance in a range where exp() does not swamp the test

x = torch.randn(2, 2, 8, 8, requires_grad=True)
posterior = model.encode(x).latent_dist
mean, logvar = posterior.mean, posterior.logvar
kl = posterior.kl()
eps = torch.randn_like(mean)
out = model.decode(mean + posterior.std * eps).sample
with torch.no_grad():
    decoded = model.decode(mean).sample
gmean, glogvar, gout = torch.randn_like(mean), torch.randn_like(logvar), torch.randn_like(out)
((gmean * mean).sum() + (glogvar * logvar).sum() + (gout * out).sum()).backward()

tensors = {"x": x, "eps": eps, "gmean": gmean, "glogvar": glogvar, "gout": gout, "mean": mean, "logvar": logvar,
           "kl": kl, "decoded": decoded, "out": out, "grad.x": x.grad}
for name, p in model.named_parameters():
    tensors[f"param.{name}"] = p
    tensors[f"grad.{name}"] = p.grad
save_file({k: v.detach().contiguous().float() for k, v in tensors.items()}, str(root / "autoencoder.safetensors"))
(root / "autoencoder_config.json").write_text(json.dumps(dict(model.config), indent=1, default=list))
print("wrote", root / "autoencoder.safetensors", (root / "autoencoder.safetensors").stat().st_size, "bytes")
