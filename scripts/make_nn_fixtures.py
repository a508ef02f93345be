"""Fixtures for the optimizers: PyTorch's SGD (momentum, Nesterov, weight decay), Adam (L2 weight decay) and AdamW
run for 4 steps on one parameter with a fixed sequence of gradients; clip_grad_norm_ on two gradients.

Regenerate:  python3 scripts/make_nn_fixtures.py   (pip install torch==2.13.0+cpu safetensors)
Writes Tests/DiffuseNNTests/Fixtures/optimizers.safetensors (F32):
  start, grad.<k> (k = 0..3), <optimizer>.after.<k>; clip.g0, clip.g1, clip.out0, clip.out1, clip.norm
"""
import pathlib

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
STEPS = 4
start = torch.randn(3, 5)
grads = [torch.randn(3, 5) for _ in range(STEPS)]
out = {"start": start}
for k, g in enumerate(grads):
    out[f"grad.{k}"] = g

optimizers = {
    "sgd": lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "nesterov": lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda p: torch.optim.Adam([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01),
    "adamw": lambda p: torch.optim.AdamW([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05),
}
for name, make in optimizers.items():
    p = torch.nn.Parameter(start.clone())
    opt = make(p)
    for k, g in enumerate(grads):
        p.grad = g.clone()
        opt.step()
        out[f"{name}.after.{k}"] = p.detach().clone()

a, b = torch.nn.Parameter(torch.zeros(4, 3)), torch.nn.Parameter(torch.zeros(7))
a.grad, b.grad = torch.randn(4, 3) * 2, torch.randn(7) * 2
out["clip.g0"], out["clip.g1"] = a.grad.clone(), b.grad.clone()
norm = torch.nn.utils.clip_grad_norm_([a, b], max_norm=1.5)
out["clip.out0"], out["clip.out1"], out["clip.norm"] = a.grad.clone(), b.grad.clone(), norm.reshape(1)

path = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseNNTests/Fixtures/optimizers.safetensors"
save_file({k: v.contiguous().float() for k, v in out.items()}, str(path))
print(f"wrote {path} ({path.stat().st_size} bytes)")
