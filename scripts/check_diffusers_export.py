"""Round trip through Hugging Face diffusers: a model exported by `diffuse export --diffusers` loads in diffusers, and
DDIM sampling there from the same noise gives the samples `diffuse sample --model` gives.

    pip install torch==2.13.0+cpu diffusers safetensors
    .build/release/diffuse export runs/mnist --diffusers /tmp/mnist-diffusers
    python3 scripts/check_diffusers_export.py /tmp/mnist-diffusers [--diffuse .build/release/diffuse] [--steps 50]

Steps: UNet2DModel.from_pretrained(folder/unet) and DDPMPipeline.from_pretrained(folder) load the folder; 8 noise
images are drawn (seed 0) and saved; `diffuse sample --model folder --sampler ddim --noise ... --out ...` samples
them; DDIMScheduler.from_config(pipeline.scheduler.config) samples the same noise in diffusers (η = 0); the two sets
are compared. Prints max |difference| / max |diffusers' value| and exits 1 if it is above --tolerance (1e-4).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
from diffusers import DDIMScheduler, DDPMPipeline, UNet2DModel
from safetensors.torch import load_file, save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--diffuse", default=".build/release/diffuse")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(2)

    unet = UNet2DModel.from_pretrained(os.path.join(args.folder, "unet"))
    pipeline = DDPMPipeline.from_pretrained(args.folder)
    c = unet.config
    print(f"diffusers loaded {args.folder}: UNet2DModel of {sum(p.numel() for p in unet.parameters())} parameters, "
          f"{type(pipeline.scheduler).__name__}")

    noise = torch.randn(args.count, c.in_channels, c.sample_size, c.sample_size,
                        generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as scratch:
        noise_path, ours_path = os.path.join(scratch, "noise.safetensors"), os.path.join(scratch, "ours.safetensors")
        save_file({"noise": noise}, noise_path)
        subprocess.run([args.diffuse, "sample", "--model", args.folder, "--sampler", "ddim", "--steps", str(args.steps),
                        "--noise", noise_path, "--batch-size", str(args.count), "--out", ours_path], check=True)
        ours = load_file(ours_path)["samples"]

    scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    scheduler.set_timesteps(args.steps)
    x = noise.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(pipeline.unet(x, t).sample, t, x, eta=0.0).prev_sample
    error = ((ours - x).abs().max() / x.abs().max()).item()
    print(f"DDIM {args.steps} steps, {args.count} samples from the same noise: "
          f"max |Diffuse − diffusers| / max |diffusers| = {error:.2e} (tolerance {args.tolerance:g})")
    sys.exit(0 if error <= args.tolerance else 1)


if __name__ == "__main__":
    main()
