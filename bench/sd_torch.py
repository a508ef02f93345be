"""Stable Diffusion 1.5 on the CPU with diffusers, for bench/sd.sh.

  make DIR       writes SD 1.5's architecture (its published configs) with random weights as diffusers pipeline
                 folders DIR/fp32 and DIR/fp16 (the same weights rounded to fp16): random weights cost what trained
                 ones do. The tokenizer is the test fixture's (a small vocabulary; the text encoder has CLIP's 49408).
  pipeline DIR   StableDiffusionPipeline at 512², 20 DPM++ 2M steps, guidance 7.5, fp32: seconds per image (after
                 one warm-up image) and this process's peak RSS.
  parts DIR      the pieces: the text encoder (the prompt and negative prompt), one U-Net step (a batch of 2, as
                 with guidance) at 256² and 512², the VAE decode at 512²: median seconds.

Every run uses 2 threads (torch.set_num_threads), fp32 arithmetic, no gradients. Writes JSON with --json.
"""
import argparse
import json
import pathlib
import resource
import shutil
import statistics
import time

import torch
from diffusers import (AutoencoderKL, DPMSolverMultistepScheduler, PNDMScheduler, StableDiffusionPipeline,
                       UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROMPT, NEGATIVE = "a photograph of an astronaut riding a horse on the moon", "blurry, low quality"


def make(out):
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(ROOT / "Tests/DiffuseModelsTests/Fixtures/clip-tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                                num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                                hidden_act="quick_gelu", projection_dim=768,
                                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # diffusers' defaults are SD 1.x's
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                        layers_per_block=2, latent_channels=4, sample_size=512, scaling_factor=0.18215)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        folder = pathlib.Path(out) / name
        shutil.rmtree(folder, ignore_errors=True)
        pipe.to(dtype).save_pretrained(folder, safe_serialization=True)
        print(f"wrote {folder}")


def load(folder):
    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline(folder):
    pipe = load(folder)
    times = []
    for _ in range(2):  # the first image warms up
        start = time.perf_counter()
        with torch.no_grad():
            pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=20, guidance_scale=7.5, height=512, width=512,
                 generator=torch.Generator().manual_seed(0), output_type="np")
        times.append(time.perf_counter() - start)
    return {"image_s": times[-1], "first_image_s": times[0],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def median_seconds(body, runs):
    body()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        body()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parts(folder, runs):
    pipe = load(folder)
    g = torch.Generator().manual_seed(0)
    ids = torch.cat([pipe.tokenizer(p, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
                     for p in (NEGATIVE, PROMPT)])
    out = {}
    with torch.no_grad():
        out["text_encoder_s"] = median_seconds(lambda: pipe.text_encoder(ids), runs)
        context = pipe.text_encoder(ids)[0]
        for side in (256, 512):
            x = torch.randn(2, 4, side // 8, side // 8, generator=g)
            out[f"unet_{side}_s"] = median_seconds(lambda: pipe.unet(x, 500, encoder_hidden_states=context), runs)
        z = torch.randn(1, 4, 64, 64, generator=g)
        out["vae_decode_512_s"] = median_seconds(lambda: pipe.vae.decode(z), runs)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["make", "pipeline", "parts"])
    parser.add_argument("folder")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.task == "make":
        return make(args.folder)
    result = pipeline(args.folder) if args.task == "pipeline" else parts(args.folder, args.runs)
    result["torch"], result["diffusers"] = torch.__version__, __import__("diffusers").__version__
    print(json.dumps(result))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
