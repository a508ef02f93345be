"""Fixtures for Stable Diffusion: two tiny random StableDiffusionPipelines and what diffusers makes with them.

Regenerate:  python3 scripts/make_sd_fixtures.py
             (pip install torch==2.13.0+cpu diffusers==0.42.1 transformers==5.25.0 safetensors)
Deterministic: seeded generators, one CPU thread. Writes Tests/DiffuseModelsTests/Fixtures/sd/<name>/ (deleted and
rewritten) for two pipelines shaped like the published ones, shrunk:
  sd1  SD 1.x-like: UNet2DConditionModel with 1×1-convolution projections, attention_head_dim 2 (2 heads everywhere),
       cross_attention_dim 32; CLIP text encoder with quick_gelu; tokenizer padded with <|endoftext|> (tokenizer.json,
       as transformers 5 writes it); PNDMScheduler (scaled_linear 0.00085..0.012, skip_prk_steps, steps_offset 1,
       clip_sample false as in SD 1.5's config), ε-prediction. Weights F32.
  sd2  SD 2.x-like: use_linear_projection, attention_head_dim [2, 4, 4] (heads per level), upcast_attention;
       gelu text encoder; tokenizer padded with "!" (vocab.json and merges.txt, as the published folders have it);
       DDIMScheduler with v_prediction (clip_sample False, set_alpha_to_one False, steps_offset 1). Weights F16.
Every parameter is F16-exact (rounded to F16 before the references are computed in F32), so F32 and F16 files hold
the same weights.
Both: UNet block_out_channels (16, 32, 32), CrossAttnDownBlock2D ×2 + DownBlock2D, UpBlock2D + CrossAttnUpBlock2D ×2,
layers_per_block 2, norm_num_groups 4, sample_size 8; AutoencoderKL block_out_channels (8, 16) (a factor of 2:
latents 4×8×8 for 16×16 images), scaling_factor 0.18215; CLIPTextModel hidden 32, 2 layers, 4 heads, 77 positions,
over the tokenizer fixture's vocabulary (Fixtures/clip-tokenizer). Every parameter is re-drawn from a seeded
generator (see `randomise`), so that no layer is an identity.

Each folder holds the pipeline as `save_pretrained(folder, safe_serialization=True)` writes it (model_index.json,
scheduler/, text_encoder/, tokenizer/, unet/, vae/), plus:
  sd.safetensors        the same weights as one checkpoint in the original (CompVis / stability) layout:
                        model.diffusion_model.*, first_stage_model.*, and cond_stage_model.transformer.text_model.*
                        (sd1) or cond_stage_model.model.* (OpenCLIP's, sd2); written by `to_original` here and checked
                        to map back exactly through diffusers' own single-file converters. F16.
  expected.safetensors  (F32) for prompt PROMPT and negative prompt NEGATIVE:
    ids                 [2, 77] the token ids (negative first), as float
    embeddings          [2, 77, 32] the text encoder's last hidden state for them
    unet.x [2, 4, 8, 8], unet.out [2, 4, 8, 8]   one UNet call at timestep 37 with the embeddings as context
    noise [1, 4, 8, 8]  the starting latent noise (the pipeline's `latents`)
    S.image [1, 16, 16, 3]  the pipeline's output_type="np" image (in [0, 1]) for sampler S in SAMPLERS,
                        10 steps, guidance 7.5, from `noise`
    img2img.init [1, 16, 16, 3], img2img.encoder_noise [1, 4, 8, 8], img2img.noise [1, 4, 8, 8],
    img2img.image [1, 16, 16, 3]   StableDiffusionImg2ImgPipeline with DDIM, strength 0.6, 10 steps, guidance 7.5:
                        the VAE's posterior sampled with encoder_noise, then noised with noise
    vae.tiled.latents [1, 4, 12, 12], vae.tiled.image [1, 3, 24, 24]   AutoencoderKL.tiled_decode of latents larger
                        than the VAE's sample size
  expected.json         the prompts, the samplers with their scheduler classes and overrides, the timesteps of each.
"""
import json
import pathlib
import shutil

import numpy as np
import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler,
                       StableDiffusionImg2ImgPipeline, StableDiffusionPipeline, UNet2DConditionModel)
from diffusers.loaders import single_file_utils
from diffusers.models.autoencoders import vae as vae_module
from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_img2img as img2img_module
from diffusers.utils import logging
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

torch.set_num_threads(1)
logging.set_verbosity_error()
logging.disable_progress_bar()
fixtures = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseModelsTests/Fixtures"
PROMPT, NEGATIVE = "the cat and the hat, hello", "blurry"
STEPS, GUIDANCE, UNET_T = 10, 7.5, 37
SAMPLERS = {
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "ddim": (DDIMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler,
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
}
unet_common = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32), layers_per_block=2,
                   norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32)
scheduler_common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                        set_alpha_to_one=False)
PIPELINES = {
    "sd1": dict(seed=1, act="quick_gelu", pad="<|endoftext|>", f16=False, unet=dict(attention_head_dim=2),
                scheduler=PNDMScheduler(skip_prk_steps=True, **scheduler_common)),
    "sd2": dict(seed=2, act="gelu", pad="!", f16=True,
                unet=dict(attention_head_dim=(2, 4, 4), use_linear_projection=True, upcast_attention=True),
                scheduler=DDIMScheduler(prediction_type="v_prediction", clip_sample=False, **scheduler_common)),
}


def randomise(model, generator):
    """Re-draws every parameter: weights N(0, 1/fan_in), biases N(0, 0.1²), norms' scales 1 + N(0, 0.2²) and shifts
    N(0, 0.2²), embeddings N(0, 1); rounded to F16 values, so that F32 and F16 files hold the same weights."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=generator)
            if "norm" in name:
                p.copy_(1 + 0.2 * z if name.endswith("weight") else 0.2 * z)
            elif name.endswith("bias"):
                p.copy_(0.1 * z)
            elif "embedding" in name:
                p.copy_(z)
            else:
                p.copy_(z / (p[0].numel()) ** 0.5)
            p.copy_(p.half().float())
    return model.eval()


def to_original(pipe, openclip):
    """The pipeline's weights under the original checkpoint keys: the inverse of diffusers' convert_ldm_* functions
    (which the caller runs on the result to check it)."""
    out = {}
    unet = pipe.unet
    levels = len(unet.config.block_out_channels)
    layers = unet.config.layers_per_block

    def put(prefix, module, rename=lambda k: k):
        for k, v in module.state_dict().items():
            out[prefix + rename(k)] = v.clone()

    def resnet(k):
        return (k.replace("norm1", "in_layers.0").replace("conv1", "in_layers.2").replace("time_emb_proj", "emb_layers.1")
                .replace("norm2", "out_layers.0").replace("conv2", "out_layers.3").replace("conv_shortcut", "skip_connection"))

    u = "model.diffusion_model."
    put(u + "time_embed.0.", unet.time_embedding.linear_1)
    put(u + "time_embed.2.", unet.time_embedding.linear_2)
    put(u + "input_blocks.0.0.", unet.conv_in)
    put(u + "out.0.", unet.conv_norm_out)
    put(u + "out.2.", unet.conv_out)
    block = 1
    for i, down in enumerate(unet.down_blocks):
        for j in range(layers):
            put(f"{u}input_blocks.{block}.0.", down.resnets[j], resnet)
            if getattr(down, "attentions", None) is not None:
                put(f"{u}input_blocks.{block}.1.", down.attentions[j])
            block += 1
        if down.downsamplers is not None:
            put(f"{u}input_blocks.{block}.0.op.", down.downsamplers[0].conv)
            block += 1
    put(u + "middle_block.0.", unet.mid_block.resnets[0], resnet)
    put(u + "middle_block.1.", unet.mid_block.attentions[0])
    put(u + "middle_block.2.", unet.mid_block.resnets[1], resnet)
    block = 0
    for i, up in enumerate(unet.up_blocks):
        for j in range(layers + 1):
            put(f"{u}output_blocks.{block}.0.", up.resnets[j], resnet)
            has_attention = getattr(up, "attentions", None) is not None
            if has_attention:
                put(f"{u}output_blocks.{block}.1.", up.attentions[j])
            if j == layers and up.upsamplers is not None:
                put(f"{u}output_blocks.{block}.{2 if has_attention else 1}.conv.", up.upsamplers[0].conv)
            block += 1

    v = "first_stage_model."
    vae = pipe.vae

    def vae_rename(k):
        return (k.replace("conv_shortcut", "nin_shortcut").replace("group_norm", "norm").replace("to_q", "q")
                .replace("to_k", "k").replace("to_v", "v").replace("to_out.0", "proj_out"))

    for name, module in (("encoder", vae.encoder), ("decoder", vae.decoder)):
        put(f"{v}{name}.conv_in.", module.conv_in)
        put(f"{v}{name}.norm_out.", module.conv_norm_out)
        put(f"{v}{name}.conv_out.", module.conv_out)
        mid = module.mid_block
        put(f"{v}{name}.mid.block_1.", mid.resnets[0], vae_rename)
        put(f"{v}{name}.mid.attn_1.", mid.attentions[0], vae_rename)
        put(f"{v}{name}.mid.block_2.", mid.resnets[1], vae_rename)
    for i, down in enumerate(vae.encoder.down_blocks):
        for j, r in enumerate(down.resnets):
            put(f"{v}encoder.down.{i}.block.{j}.", r, vae_rename)
        if down.downsamplers is not None:
            put(f"{v}encoder.down.{i}.downsample.conv.", down.downsamplers[0].conv)
    n = len(vae.decoder.up_blocks)
    for i, up in enumerate(vae.decoder.up_blocks):
        for j, r in enumerate(up.resnets):
            put(f"{v}decoder.up.{n - 1 - i}.block.{j}.", r, vae_rename)
        if up.upsamplers is not None:
            put(f"{v}decoder.up.{n - 1 - i}.upsample.conv.", up.upsamplers[0].conv)
    put(v + "quant_conv.", vae.quant_conv)
    put(v + "post_quant_conv.", vae.post_quant_conv)
    # The original VAE's mid attention is a 1×1 convolution: q, k, v and proj_out weights [C, C, 1, 1].
    for k in list(out):
        if k.startswith(v) and ".attn_1." in k and k.endswith("weight") and out[k].dim() == 2:
            out[k] = out[k][:, :, None, None]

    text = pipe.text_encoder.state_dict()
    text = {("text_model." + k if not k.startswith("text_model.") else k): t for k, t in text.items()}
    if not openclip:
        for k, t in text.items():
            out["cond_stage_model.transformer." + k] = t.clone()
    else:
        c = "cond_stage_model.model."
        out[c + "token_embedding.weight"] = text["text_model.embeddings.token_embedding.weight"].clone()
        out[c + "positional_embedding"] = text["text_model.embeddings.position_embedding.weight"].clone()
        out[c + "ln_final.weight"] = text["text_model.final_layer_norm.weight"].clone()
        out[c + "ln_final.bias"] = text["text_model.final_layer_norm.bias"].clone()
        layers_count = pipe.text_encoder.config.num_hidden_layers
        for i in range(layers_count):
            s, o = f"text_model.encoder.layers.{i}.", f"{c}transformer.resblocks.{i}."
            out[o + "attn.in_proj_weight"] = torch.cat([text[s + f"self_attn.{p}_proj.weight"] for p in "qkv"])
            out[o + "attn.in_proj_bias"] = torch.cat([text[s + f"self_attn.{p}_proj.bias"] for p in "qkv"])
            for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                out[o + a + ".weight"] = text[s + b + ".weight"].clone()
                out[o + a + ".bias"] = text[s + b + ".bias"].clone()
        # OpenCLIP's text projection (unused by Stable Diffusion, present in the checkpoints).
        out[c + "text_projection"] = torch.zeros(32, 32)
    return {k: t.contiguous() for k, t in out.items()}


def check_original(pipe, original, openclip):
    """diffusers' single-file converters map `original` back to the pipeline's own state dicts."""
    unet = single_file_utils.convert_ldm_unet_checkpoint(original, dict(pipe.unet.config))
    assert unet.keys() == pipe.unet.state_dict().keys(), set(unet) ^ set(pipe.unet.state_dict())
    assert all(torch.equal(unet[k], t) for k, t in pipe.unet.state_dict().items())
    vae = single_file_utils.convert_ldm_vae_checkpoint(original, dict(pipe.vae.config))
    assert vae.keys() == pipe.vae.state_dict().keys(), set(vae) ^ set(pipe.vae.state_dict())
    assert all(torch.equal(vae[k].reshape(t.shape), t) for k, t in pipe.vae.state_dict().items())
    if openclip:
        text = single_file_utils.convert_open_clip_checkpoint(pipe.text_encoder, original)
    else:
        text = single_file_utils.convert_ldm_clip_checkpoint(original)
    mine = {("text_model." + k if not k.startswith("text_model.") else k): t for k, t in pipe.text_encoder.state_dict().items()}
    text = {("text_model." + k if not k.startswith("text_model.") else k): t for k, t in text.items()}
    missing = set(mine) - set(text)
    assert missing <= {"text_model.embeddings.position_ids"}, missing
    assert all(torch.equal(text[k], mine[k]) for k in mine if k in text)


class Draws:
    """Stands in for `randn_tensor` in a module: hands out pre-drawn tensors in order."""

    def __init__(self, tensors):
        self.tensors = list(tensors)

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        t = self.tensors.pop(0)
        assert tuple(t.shape) == tuple(shape), (t.shape, shape)
        return t.clone()


def build(name, spec):
    g = torch.Generator().manual_seed(100 + spec["seed"])
    tokenizer = CLIPTokenizer.from_pretrained(fixtures / "clip-tokenizer", pad_token=spec["pad"])
    text_config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                 num_attention_heads=4, max_position_embeddings=77, hidden_act=spec["act"],
                                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id, projection_dim=32)
    text_encoder = randomise(CLIPTextModel(text_config), g)
    unet = randomise(UNet2DConditionModel(**unet_common, **spec["unet"]), g)
    vae = randomise(AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                                  latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=16,
                                  scaling_factor=0.18215), g)
    scheduler = spec["scheduler"]
    if isinstance(scheduler, PNDMScheduler):
        scheduler.register_to_config(clip_sample=False)  # as SD 1.5's scheduler_config.json has it, for DDIM
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe, g


def main():
    root = fixtures / "sd"
    shutil.rmtree(root, ignore_errors=True)
    for name, spec in PIPELINES.items():
        pipe, g = build(name, spec)
        folder = root / name
        expected, info = {}, {"prompt": PROMPT, "negative_prompt": NEGATIVE, "steps": STEPS, "guidance": GUIDANCE,
                              "unet_timestep": UNET_T, "samplers": {}}
        with torch.no_grad():
            ids = [pipe.tokenizer(p, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
                   for p in (NEGATIVE, PROMPT)]
            ids = torch.cat(ids)
            embeddings = pipe.text_encoder(ids)[0]
            expected["ids"] = ids.float()
            expected["embeddings"] = embeddings
            x = torch.randn(2, 4, 8, 8, generator=g)
            expected["unet.x"] = x
            expected["unet.out"] = pipe.unet(x, UNET_T, encoder_hidden_states=embeddings).sample
            noise = torch.randn(1, 4, 8, 8, generator=g)
            expected["noise"] = noise
            # As the folder's scheduler_config.json reads back: without the in-memory `_use_default_values`, which
            # would make from_config give another class its own defaults for keys the file states (Euler's spacing).
            base_config = {k: v for k, v in pipe.scheduler.config.items() if k != "_use_default_values"}
            for sampler, (cls, overrides) in SAMPLERS.items():
                pipe.scheduler = cls.from_config(base_config, **overrides)
                image = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                             latents=noise.clone(), output_type="np", height=16, width=16).images
                expected[f"{sampler}.image"] = torch.from_numpy(image)
                info["samplers"][sampler] = {"class": cls.__name__, "overrides": overrides,
                                             "timesteps": pipe.scheduler.timesteps.tolist()}
            pipe.scheduler = DDIMScheduler.from_config(base_config)
            init = torch.rand(1, 16, 16, 3, generator=g)
            encoder_noise = torch.randn(1, 4, 8, 8, generator=g)
            img_noise = torch.randn(1, 4, 8, 8, generator=g)
            img2img = StableDiffusionImg2ImgPipeline(**pipe.components, requires_safety_checker=False)
            img2img.set_progress_bar_config(disable=True)
            saved = (vae_module.randn_tensor, img2img_module.randn_tensor)
            vae_module.randn_tensor, img2img_module.randn_tensor = Draws([encoder_noise]), Draws([img_noise])
            image = img2img(PROMPT, image=init.permute(0, 3, 1, 2), strength=0.6, negative_prompt=NEGATIVE,
                            num_inference_steps=STEPS, guidance_scale=GUIDANCE, output_type="np").images
            vae_module.randn_tensor, img2img_module.randn_tensor = saved
            expected.update({"img2img.init": init, "img2img.encoder_noise": encoder_noise, "img2img.noise": img_noise,
                             "img2img.image": torch.from_numpy(image)})
            info["img2img"] = {"strength": 0.6, "sampler": "ddim", "timesteps": img2img.scheduler.timesteps.tolist()}
            # Tiled decoding of latents larger than the VAE's sample size (8 latents here): 12×12 latents, tiles of 8
            # every 6, blended over 4 pixels.
            z = torch.randn(1, 4, 12, 12, generator=g)
            expected["vae.tiled.latents"] = z
            expected["vae.tiled.image"] = pipe.vae.tiled_decode(z).sample
        pipe.scheduler = spec["scheduler"]
        saved_pipe = pipe.to(torch.float16) if spec["f16"] else pipe
        saved_pipe.save_pretrained(folder, safe_serialization=True)
        pipe = pipe.to(torch.float32)
        original = to_original(pipe, openclip=name == "sd2")
        check_original(pipe, original, openclip=name == "sd2")
        save_file({k: t.half() for k, t in original.items()}, str(folder / "sd.safetensors"))
        if name == "sd2":
            # The tokenizer files of the published folders (transformers 5 writes tokenizer.json alone).
            (folder / "tokenizer/tokenizer.json").unlink()
            for f in ("vocab.json", "merges.txt"):
                shutil.copy(fixtures / "clip-tokenizer" / f, folder / "tokenizer" / f)
        save_file({k: t.float().contiguous() for k, t in expected.items()}, str(folder / "expected.safetensors"))
        (folder / "expected.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        # The saved folder reproduces the UNet output.
        reloaded = UNet2DConditionModel.from_pretrained(folder / "unet").float()
        with torch.no_grad():
            again = reloaded(expected["unet.x"], UNET_T, encoder_hidden_states=expected["embeddings"]).sample
        assert torch.equal(again, expected["unet.out"]), (again - expected["unet.out"]).abs().max()
        print(name, {k: list(t.shape) for k, t in expected.items() if k.endswith("image")},
              sorted(p.name for p in folder.iterdir()))


main()
