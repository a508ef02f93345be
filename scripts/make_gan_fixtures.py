"""Fixture for the GAN check: DCGAN's generator and discriminator (and the patch discriminator) as PyTorch modules
with the layout of Sources/DiffuseModels/GAN.swift and random weights; in training mode (batch statistics) their
outputs and all gradients for random upstream gradients, the running statistics after the step; the two adversarial
losses and their gradients; and the exact R1 penalty ‖∇_x D(x)‖² of the evaluation-mode discriminator, by double
backpropagation.

Regenerate:  python3 scripts/make_gan_fixtures.py   (pip install torch==2.13.0+cpu safetensors)
Writes Tests/DiffuseModelsTests/Fixtures/gan.safetensors (F32):
  z, x, gen.out, gen.gout, gen.param.<key>, gen.grad.<key>, gen.after.<buffer>, disc.out, disc.gout, disc.grad.x,
  disc.param.<key>, disc.grad.<key>, patch.out, patch.param.<key>, real, fake, loss.<name>, loss.<name>.grad.real,
  loss.<name>.grad.fake, r1.per_image
"""
import pathlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseModelsTests/Fixtures"
torch.manual_seed(0)
LATENT, CHANNELS, SIZE, WIDTH = 5, 2, 8, 4


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.project = nn.Linear(LATENT, 4 * WIDTH * (SIZE // 4) ** 2)
        self.norms = nn.ModuleList([nn.BatchNorm2d(4 * WIDTH), nn.BatchNorm2d(2 * WIDTH), nn.BatchNorm2d(WIDTH)])
        self.convs = nn.ModuleList([nn.Conv2d(4 * WIDTH, 2 * WIDTH, 3, padding=1), nn.Conv2d(2 * WIDTH, WIDTH, 3, padding=1),
                                    nn.Conv2d(WIDTH, CHANNELS, 3, padding=1)])

    def forward(self, z):
        h = F.relu(self.norms[0](self.project(z).view(z.shape[0], 4 * WIDTH, SIZE // 4, SIZE // 4)))
        for i in range(2):
            h = F.relu(self.norms[i + 1](self.convs[i](F.interpolate(h, scale_factor=2, mode="nearest"))))
        return torch.tanh(self.convs[2](h))


class Discriminator(nn.Module):
    def __init__(self, patch):
        super().__init__()
        self.conv1 = nn.Conv2d(CHANNELS, WIDTH, 4, 2, 1)
        self.conv2 = nn.Conv2d(WIDTH, 2 * WIDTH, 4, 2, 1)
        self.norm = nn.BatchNorm2d(2 * WIDTH)
        self.head = nn.Conv2d(2 * WIDTH, 1, 4, 1, 1) if patch else nn.Linear(2 * WIDTH * (SIZE // 4) ** 2, 1)
        self.patch = patch

    def forward(self, x):
        h = F.leaky_relu(self.norm(self.conv2(F.leaky_relu(self.conv1(x), 0.2))), 0.2)
        return self.head(h) if self.patch else self.head(h.flatten(1))


def randomize(module):  # random norms, biases and running statistics: nothing tested only at 1 and 0
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)


def state(prefix, module, grads=True):
    out = {f"{prefix}.param.{k}": v for k, v in module.state_dict().items() if "num_batches" not in k}
    if grads:
        out.update({f"{prefix}.grad.{k}": p.grad for k, p in module.named_parameters()})
    return out


tensors = {}
gen, disc, patch = Generator(), Discriminator(False), Discriminator(True)
for m in (gen, disc, patch):
    randomize(m)
tensors.update({k: v.clone() for k, v in state("gen", gen, grads=False).items()})
tensors.update({k: v.clone() for k, v in state("disc", disc, grads=False).items()})
tensors.update(state("patch", patch, grads=False))

z = torch.randn(3, LATENT)
out = gen(z)
gout = torch.randn_like(out)
out.backward(gout)
tensors.update({"z": z, "gen.out": out, "gen.gout": gout})
tensors.update({f"gen.grad.{k}": p.grad for k, p in gen.named_parameters()})
tensors.update({f"gen.after.{k}": v for k, v in gen.state_dict().items() if "running" in k})

x = torch.randn(3, CHANNELS, SIZE, SIZE, requires_grad=True)
d = disc(x)
dgout = torch.randn_like(d)
d.backward(dgout)
tensors.update({"x": x, "disc.out": d, "disc.gout": dgout, "disc.grad.x": x.grad})
tensors.update({f"disc.grad.{k}": p.grad for k, p in disc.named_parameters()})
tensors["patch.out"] = patch(x.detach())

real, fake = torch.randn(6, 1, requires_grad=True), torch.randn(6, 1, requires_grad=True)
tensors.update({"real": real, "fake": fake})
losses = {
    "non-saturating.d": F.softplus(-real).mean() + F.softplus(fake).mean(),
    "non-saturating.g": F.softplus(-fake).mean(),
    "hinge.d": F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
    "hinge.g": -fake.mean(),
}
for name, loss in losses.items():
    gr, gf = torch.autograd.grad(loss, [real, fake], allow_unused=True)
    tensors[f"loss.{name}"] = loss.reshape(1)
    tensors[f"loss.{name}.grad.real"] = gr if gr is not None else torch.zeros_like(real)
    tensors[f"loss.{name}.grad.fake"] = gf if gf is not None else torch.zeros_like(fake)

disc_eval = Discriminator(False)
disc_eval.load_state_dict({k[len("disc.param."):]: v for k, v in tensors.items() if k.startswith("disc.param.")}, strict=False)
disc_eval.eval()
xr = x.detach().clone().requires_grad_(True)
(g,) = torch.autograd.grad(disc_eval(xr).sum(), xr, create_graph=True)
tensors["r1.per_image"] = g.pow(2).flatten(1).sum(1)

save_file({k: v.detach().contiguous().float() for k, v in tensors.items()}, str(root / "gan.safetensors"))
print("wrote", root / "gan.safetensors", (root / "gan.safetensors").stat().st_size, "bytes")
