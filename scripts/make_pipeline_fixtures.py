"""Fixtures for loading Hugging Face diffusers pipelines and for matching diffusers' samplers end to end.

Regenerate:  python3 scripts/make_pipeline_fixtures.py   (pip install torch==2.13.0+cpu diffusers==0.42.1 safetensors)
Deterministic: seeded torch generators, one CPU thread, sorted keys; a second run writes identical bytes.
Writes under Tests/DiffuseModelsTests/Fixtures/ (folders are deleted and rewritten):

  pipelines/<name>/  for name in eps-linear, v-cosine, sample-scaled, class-cond: DDPMPipeline(unet, scheduler)
    .save_pretrained(dir, safe_serialization=True), i.e. model_index.json, scheduler/scheduler_config.json,
    unet/config.json, unet/diffusion_pytorch_model.safetensors (F32). Tiny UNet2DModels (sample_size 8,
    block_out_channels (4, 8), norm_num_groups 2, layers_per_block 1, attention_head_dim 4, i.e. 1 head at 4
    channels and 2 heads at 8) with every parameter re-drawn from a seeded generator (see `randomise`):
      eps-linear     C=3, DownBlock2D/AttnDownBlock2D, AttnUpBlock2D/UpBlock2D;
                     DDPMScheduler(linear, epsilon, T=1000, clip_sample=True)
      v-cosine       C=1, same blocks, flip_sin_to_cos=False, freq_shift=1;
                     DDPMScheduler(squaredcos_cap_v2, v_prediction, clip_sample=False)
      sample-scaled  C=2, AttnDownBlock2D/DownBlock2D, UpBlock2D/AttnUpBlock2D, resnet_time_scale_shift=scale_shift,
                     downsample_type=resnet, upsample_type=resnet; DDPMScheduler(scaled_linear 0.00085..0.012,
                     sample, clip_sample=False, timestep_spacing=trailing)
      class-cond     C=1, DownBlock2D/AttnDownBlock2D, num_class_embeds=3; DDPMScheduler() defaults (linear, epsilon,
                     clip_sample=True, leading spacing)
  unet-only/     the eps-linear UNet alone: config.json + diffusion_pytorch_model.safetensors
  unet-sharded/  the same UNet saved with max_shard_size=20000 bytes: diffusion_pytorch_model-0000k-of-0000n.safetensors
                 (n >= 2) + diffusion_pytorch_model.safetensors.index.json

  samplers.safetensors (F32), for each pipeline P (C channels, batch 2, 8x8):
    P.noise [2, C, 8, 8]        the starting noise x_T (the loop starts from noise * scheduler.init_noise_sigma)
    class-cond.labels [2]       the class labels [0, 2] (as float)
    P.unet_out [2, C, 8, 8]     unet(P.noise, timestep 37 (int64), class_labels).sample
    P.S.n [2, C, 8, 8]          deterministic sampler S, n in {10, 25}: the raw x after the last scheduler.step
                                (no clamping, no rescaling to [0, 1])
    P.S.10.states [10, 2, C, 8, 8]       stochastic sampler S: x after each of the 10 steps
    P.S.10.step_noise [10, 2, C, 8, 8]   the noise randn_tensor handed to step i (zeros where the step draws none)
  P.ipndm.n [2, C, 8, 8]      iPNDM (k-diffusion's sample_ipndm rule) on DPMSolverMultistepScheduler's timesteps and sigmas
  samplers.json: per pipeline its in_channels, class_conditional, labels and scheduler config; per sampler
    ("P.S") the scheduler class, the from_config overrides, step kwargs and the resulting full scheduler config; per
    stored key the sampler, steps, scheduler.timesteps (after set_timesteps), their dtype, scheduler.sigmas where
    the scheduler has them, init_noise_sigma, the number of UNet evaluations and the draws per step; plus the
    (pipeline, sampler) pairs diffusers cannot run (euler_ancestral has no prediction_type "sample").

The sampling loop is the generic one every scheduler supports:
    x = noise * s.init_noise_sigma
    for t in s.timesteps: x = s.step(unet(s.scale_model_input(x, t), t, class_labels).sample, t, x).prev_sample
with s.set_begin_index(0) after set_timesteps where the scheduler has it (so step i uses sigmas[i]; without it
v-cosine's dpmpp_2m_karras, whose first timestep repeats, starts at index 1 and fails). Each sampler is
Class.from_config(config, **overrides) with the pipeline's scheduler config as reloaded from scheduler_config.json
(every key explicit), so it inherits the pipeline's betas, prediction type, timestep_spacing and (DDIM, Heun)
clip_sample. The stochastic schedulers draw noise through `randn_tensor` imported into their own module; it is
replaced by a function that hands out pre-drawn tensors and counts the draws (asserted: one per step, except none on
a DDPM step with t = 0; none at all for the deterministic samplers).
At the end every saved folder is reloaded with DDPMPipeline/UNet2DModel.from_pretrained and must reproduce unet_out
exactly.
"""
import json
import pathlib
import re
import shutil

import torch
from diffusers import (DDIMScheduler, DDPMPipeline, DDPMScheduler, DEISMultistepScheduler, DPMSolverMultistepScheduler,
                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler, PNDMScheduler,
                       UNet2DModel, UniPCMultistepScheduler)
from diffusers.schedulers import (scheduling_ddim, scheduling_ddpm, scheduling_dpmsolver_multistep,
                                  scheduling_euler_ancestral_discrete, scheduling_euler_discrete)
from diffusers.utils import logging
from safetensors.torch import save_file

torch.set_num_threads(1)
logging.set_verbosity_error()
logging.disable_progress_bar()
root = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseModelsTests/Fixtures"
BATCH, SIZE, UNET_T = 2, 8, 37

common = dict(sample_size=SIZE, layers_per_block=1, block_out_channels=(4, 8), norm_num_groups=2, attention_head_dim=4)
plain = dict(down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
PIPELINES = {
    "eps-linear": dict(
        seed=1, unet=dict(in_channels=3, out_channels=3, **plain),
        scheduler=dict(beta_schedule="linear", prediction_type="epsilon", num_train_timesteps=1000, clip_sample=True)),
    "v-cosine": dict(
        seed=2, unet=dict(in_channels=1, out_channels=1, flip_sin_to_cos=False, freq_shift=1, **plain),
        scheduler=dict(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=False)),
    "sample-scaled": dict(
        seed=3, unet=dict(in_channels=2, out_channels=2, down_block_types=("AttnDownBlock2D", "DownBlock2D"),
                          up_block_types=("UpBlock2D", "AttnUpBlock2D"), resnet_time_scale_shift="scale_shift",
                          downsample_type="resnet", upsample_type="resnet", num_class_embeds=None),
        scheduler=dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="sample",
                       clip_sample=False, timestep_spacing="trailing")),
    "class-cond": dict(
        seed=4, unet=dict(in_channels=1, out_channels=1, num_class_embeds=3, **plain), scheduler=dict(),
        labels=[0, 2]),
}
class FixedDPMSolverMultistepScheduler(DPMSolverMultistepScheduler):
    """diffusers 0.42.1's DPM-Solver++(3M) SDE has the sign of the 1/2 in its D2 coefficient wrong:
    alpha_t * ((1 - exp(-2h) - 2h) / (2h)^2 - 0.5) tends to -alpha_t as h -> 0 where the integral it stands for is O(h)
    (k-diffusion's sample_dpmpp_3m_sde: -phi_3 with phi_3 = phi_2 / 2h - 1/2, i.e. + 0.5 here). This reference adds
    alpha_t * D2 (the difference of the two) to diffusers' own third-order SDE step, and leaves everything else."""

    def multistep_dpm_solver_third_order_update(self, model_output_list, *args, sample=None, noise=None, **kwargs):
        x_t = super().multistep_dpm_solver_third_order_update(model_output_list, *args, sample=sample, noise=noise, **kwargs)
        if self.config.algorithm_type != "sde-dpmsolver++":
            return x_t
        sigmas = [self.sigmas[self.step_index + k] for k in (1, 0, -1, -2)]
        (alpha_t, _), (alpha_s0, sigma_s0), (alpha_s1, sigma_s1), (alpha_s2, sigma_s2) = [
            self._sigma_to_alpha_sigma_t(s) for s in sigmas]
        lambda_t = torch.log(alpha_t) - torch.log(self._sigma_to_alpha_sigma_t(sigmas[0])[1])
        lambda_s0, lambda_s1, lambda_s2 = [torch.log(a) - torch.log(s) for a, s in
                                           ((alpha_s0, sigma_s0), (alpha_s1, sigma_s1), (alpha_s2, sigma_s2))]
        m0, m1, m2 = model_output_list[-1], model_output_list[-2], model_output_list[-3]
        h, h_0, h_1 = lambda_t - lambda_s0, lambda_s0 - lambda_s1, lambda_s1 - lambda_s2
        r0, r1 = h_0 / h, h_1 / h
        d2 = (1.0 / (r0 + r1)) * ((1.0 / r0) * (m0 - m1) - (1.0 / r1) * (m1 - m2))
        return x_t + alpha_t * d2


# name: (class, from_config overrides, step kwargs)
DETERMINISTIC = {
    "ddim": (DDIMScheduler, {}, {"eta": 0.0}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}, {}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler,
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}, {}),
    "euler": (EulerDiscreteScheduler, {}, {}),
    "euler_karras": (EulerDiscreteScheduler, {"use_karras_sigmas": True}, {}),
    "heun": (HeunDiscreteScheduler, {}, {}),
    "heun_karras": (HeunDiscreteScheduler, {"use_karras_sigmas": True}, {}),
    "euler_exponential": (EulerDiscreteScheduler, {"use_exponential_sigmas": True}, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}, {}),
    "pndm_prk": (PNDMScheduler, {"skip_prk_steps": False}, {}),
    "dpmpp_2m_exponential": (DPMSolverMultistepScheduler,
                             {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_exponential_sigmas": True}, {}),
    "dpmpp_3m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 3}, {}),
    "dpmpp_3m_karras": (DPMSolverMultistepScheduler,
                        {"algorithm_type": "dpmsolver++", "solver_order": 3, "use_karras_sigmas": True}, {}),
    "unipc": (UniPCMultistepScheduler, {"solver_type": "bh2"}, {}),
    # bh1's last step to sigma = 0 is NaN in diffusers (B(h) = -h = -inf times a zero correction): end at sigma_min.
    "unipc_bh1": (UniPCMultistepScheduler, {"solver_type": "bh1", "final_sigmas_type": "sigma_min"}, {}),
    "unipc_3": (UniPCMultistepScheduler, {"solver_type": "bh2", "solver_order": 3}, {}),
    "unipc_karras": (UniPCMultistepScheduler, {"solver_type": "bh2", "use_karras_sigmas": True}, {}),
    "deis": (DEISMultistepScheduler, {}, {}),
    "deis_3": (DEISMultistepScheduler, {"solver_order": 3}, {}),
}
STOCHASTIC = {
    "ddpm": (DDPMScheduler, {}, {}),
    "euler_ancestral": (EulerAncestralDiscreteScheduler, {}, {}),
    "dpmpp_2m_sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, {}),
    "dpmpp_3m_sde": (FixedDPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, {}),
}
SCHEDULER_MODULES = [scheduling_ddim, scheduling_ddpm, scheduling_dpmsolver_multistep,
                     scheduling_euler_ancestral_discrete, scheduling_euler_discrete]  # Heun draws no noise at all


def randomise(unet, seed):
    """Re-draw every parameter: weights N(0, 1/fan_in), biases N(0, 0.1²), GroupNorm weights 1 + N(0, 0.2²) and
    biases N(0, 0.2²), the class embedding N(0, 1); so that no norm sits at the trivial (1, 0). conv_out's weights
    are ten times smaller, so that the network behaves like a trained denoiser, whose output changes little with x:
    at full size the random network makes a 25-step DDIM chain (clipped, ε-prediction) multiply a 1e-6 change of x_T
    by ten thousand, and not even diffusers in float64 stays within 1e-4 of its own float32 run. At a tenth it
    multiplies it by at most ~30 (DDIM), and the chains can be compared to 1e-4."""
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            z = torch.randn(p.shape, generator=g)
            if "norm" in name:
                p.copy_(1 + 0.2 * z if name.endswith("weight") else 0.2 * z)
            elif name.endswith("bias"):
                p.copy_(0.1 * z)
            elif name.startswith("class_embedding"):
                p.copy_(z)
            else:
                p.copy_(z / (p[0].numel() ** 0.5) * (0.1 if name == "conv_out.weight" else 1))


class Draws:
    """Stand-in for the schedulers' randn_tensor: returns the noise of the current step, counting the calls."""

    def __init__(self):
        self.noise, self.step, self.counts = None, 0, []

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        assert self.noise is not None, "unexpected randn_tensor call in a deterministic sampler"
        assert tuple(shape) == tuple(self.noise.shape[1:]), shape
        self.counts[self.step] += 1
        return self.noise[self.step].to(dtype=dtype or torch.float32).clone()


draws = Draws()
for module in SCHEDULER_MODULES:
    assert hasattr(module, "randn_tensor"), module.__name__
    module.randn_tensor = draws


def floats(x):
    return float(x) if not isinstance(x, torch.Tensor) else float(x.item())


def run(unet, scheduler, noise, labels, n, step_kwargs, step_noise=None):
    """The generic sampling loop; returns (final x, states after each step, draws per step, UNet evaluations)."""
    scheduler.set_timesteps(n)
    if hasattr(scheduler, "set_begin_index"):  # step i uses sigmas[i] even when timesteps[0] repeats (see below)
        scheduler.set_begin_index(0)
    draws.noise, draws.counts = step_noise, [0] * len(scheduler.timesteps)
    x, states = noise * scheduler.init_noise_sigma, []
    for i, t in enumerate(scheduler.timesteps):
        draws.step = i
        inp = scheduler.scale_model_input(x, t)
        out = unet(inp, t, class_labels=labels).sample
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
        states.append(x)
    counts, draws.noise = draws.counts, None
    assert torch.isfinite(x).all()
    return x, torch.stack(states), counts, len(scheduler.timesteps)


def ipndm(unet, scheduler, noise, labels, max_order=4):
    """Adams-Bashforth on dx/dsigma = (x - D(x))/sigma in x = x_t/a, order min(i + 1, 4); a step to sigma = 0 is D(x)."""
    sigmas, prediction = scheduler.sigmas, scheduler.config.prediction_type
    x, slopes = noise * (sigmas[0] ** 2 + 1) ** 0.5, []
    for i, t in enumerate(scheduler.timesteps):
        sigma, following = sigmas[i], sigmas[i + 1]
        a = 1 / (sigma ** 2 + 1) ** 0.5
        out = unet(x * a, t, class_labels=labels).sample
        denoised = {"epsilon": x - sigma * out, "v_prediction": a * (x * a) - sigma * a * out, "sample": out}[prediction]
        d = (x - denoised) / sigma
        slopes.append(d)
        order = min(max_order, i + 1)
        c = {1: [1], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}[order]
        x = denoised if following == 0 else x + (following - sigma) * sum(w * slopes[-1 - j] for j, w in enumerate(c))
    return x


def describe(scheduler, n, evaluations, counts):
    first = scheduler.timesteps[0]
    needed = hasattr(scheduler, "index_for_timestep") and scheduler.index_for_timestep(first) != 0
    info = {"steps": n, "begin_index_needed": bool(needed), "timesteps": scheduler.timesteps.tolist(), "timesteps_dtype": str(scheduler.timesteps.dtype),
            "init_noise_sigma": floats(scheduler.init_noise_sigma), "unet_evaluations": evaluations,
            "draws_per_step": counts}
    if hasattr(scheduler, "sigmas") and scheduler.sigmas is not None and len(scheduler.sigmas) < 100:
        info["sigmas"] = scheduler.sigmas.tolist()
    return info


def jsonable(v):
    if isinstance(v, (list, tuple)):
        return [jsonable(e) for e in v]
    if isinstance(v, dict):
        return {k: jsonable(e) for k, e in v.items()}
    if isinstance(v, torch.Tensor):
        return jsonable(v.tolist())
    if isinstance(v, float) and v != v or v in (float("inf"), float("-inf")):
        return str(v)  # JSON has no infinities (lambda_min_clipped is -inf): "-inf"
    return v


tensors, manifest = {}, {"pipelines": {}, "samplers": {}, "keys": {}, "unsupported": []}
unets = {}
with torch.no_grad():
    for pname, spec in PIPELINES.items():
        torch.manual_seed(spec["seed"])
        unet = UNet2DModel(**common, **spec["unet"]).eval()
        randomise(unet, spec["seed"])
        scheduler = DDPMScheduler(**spec["scheduler"])
        unets[pname] = unet
        C = spec["unet"]["in_channels"]
        noise = torch.randn(BATCH, C, SIZE, SIZE, generator=torch.Generator().manual_seed(100 + spec["seed"]))
        labels = torch.tensor(spec["labels"]) if "labels" in spec else None
        tensors[f"{pname}.noise"] = noise
        if labels is not None:
            tensors[f"{pname}.labels"] = labels.float()
        tensors[f"{pname}.unet_out"] = unet(noise, torch.tensor(UNET_T), class_labels=labels).sample

        folder = root / "pipelines" / pname
        shutil.rmtree(folder, ignore_errors=True)
        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder, safe_serialization=True)
        # The samplers are built from the config as loaded from scheduler_config.json, where every key is explicit.
        # (An in-memory DDPMScheduler() records which arguments were defaults in `_use_default_values`, and
        # from_config then lets the target class fall back to its own defaults, e.g. timestep_spacing "linspace"
        # instead of DDPM's "leading"; the saved file loses that list.)
        scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
        assert "_use_default_values" not in scheduler.config
        manifest["pipelines"][pname] = {
            "in_channels": C, "class_conditional": labels is not None,
            "labels": spec.get("labels"), "unet_out_timestep": UNET_T,
            "parameters": sum(p.numel() for p in unet.parameters()),
            "scheduler_config": jsonable(dict(scheduler.config))}

        for sname, (cls, overrides, step_kwargs) in {**DETERMINISTIC, **STOCHASTIC}.items():
            stochastic = sname in STOCHASTIC
            s = cls.from_config(scheduler.config, **overrides)
            if sname in ("euler_ancestral", "pndm", "pndm_prk") and s.config.prediction_type == "sample":
                manifest["unsupported"].append({"pipeline": pname, "sampler": sname, "reason":
                    f"{cls.__name__}.step raises for prediction_type 'sample'"})
                continue
            manifest["samplers"][f"{pname}.{sname}"] = {
                "class": cls.__name__, "overrides": overrides, "step_kwargs": step_kwargs, "stochastic": stochastic,
                "config": jsonable({k: v for k, v in s.config.items() if not k.startswith("_")})}
            for n in ((10,) if stochastic else (10, 25)):
                s = cls.from_config(scheduler.config, **overrides)
                if stochastic:
                    g = torch.Generator().manual_seed(10_000 + 100 * spec["seed"] + list(STOCHASTIC).index(sname))
                    step_noise = torch.randn((n, BATCH, C, SIZE, SIZE), generator=g)
                    x, states, counts, evals = run(unet, s, noise, labels, n, step_kwargs, step_noise)
                    expected = [int(not (sname == "ddpm" and int(t) == 0)) for t in s.timesteps]
                    assert counts == expected, (pname, sname, counts, expected)
                    step_noise[torch.tensor(counts) == 0] = 0
                    key = f"{pname}.{sname}.{n}"
                    tensors[f"{key}.states"], tensors[f"{key}.step_noise"] = states, step_noise
                    info = describe(s, n, evals, counts)
                    for suffix in ("states", "step_noise"):
                        manifest["keys"][f"{key}.{suffix}"] = {"sampler": f"{pname}.{sname}", **info}
                else:
                    x, _, counts, evals = run(unet, s, noise, labels, n, step_kwargs)
                    assert counts == [0] * len(counts)
                    tensors[f"{pname}.{sname}.{n}"] = x
                    manifest["keys"][f"{pname}.{sname}.{n}"] = {"sampler": f"{pname}.{sname}",
                                                                 **describe(s, n, evals, counts)}
        # iPNDM: k-diffusion's sample_ipndm step rule (PyPI's k-diffusion 0.1.1 has no sample_ipndm; written here
        # from its description) on DPMSolverMultistepScheduler's timesteps and σ, from x = x_T·√(σ_0² + 1) in x_t/a.
        s = DPMSolverMultistepScheduler.from_config(scheduler.config)
        for n in (10, 25):
            s.set_timesteps(n)
            tensors[f"{pname}.ipndm.{n}"] = ipndm(unet, s, noise, labels)
            manifest["keys"][f"{pname}.ipndm.{n}"] = {"sampler": f"{pname}.ipndm", "steps": n,
                                                      "timesteps": s.timesteps.tolist(), "sigmas": s.sigmas.tolist()}
    for key in tensors:
        if key not in manifest["keys"]:
            base = key.rsplit(".", 1)[0]
            manifest["keys"][key] = {"pipeline": base, "kind": key.rsplit(".", 1)[1]}

    # The bare UNet folders (the eps-linear UNet).
    for folder, kwargs in (("unet-only", {}), ("unet-sharded", {"max_shard_size": 20_000})):
        shutil.rmtree(root / folder, ignore_errors=True)
        unets["eps-linear"].save_pretrained(root / folder, safe_serialization=True, **kwargs)
    shards = sorted((root / "unet-sharded").glob("diffusion_pytorch_model-*.safetensors"))
    assert len(shards) >= 2 and (root / "unet-sharded/diffusion_pytorch_model.safetensors.index.json").exists()


def compact(text):
    """json.dumps(indent=1) with lists of numbers (and null) kept on one line."""
    return re.sub(r"\[\s*((?:-?[\d.eE+-]+|null|true|false|\"[^\"\n]*\")(?:,\s*(?:-?[\d.eE+-]+|null|true|false|\"[^\"\n]*\"))*)\s*\]",
                  lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)


root.mkdir(parents=True, exist_ok=True)
out = root / "samplers.safetensors"
save_file({k: tensors[k].contiguous().float() for k in sorted(tensors)}, str(out))
(root / "samplers.json").write_text(compact(json.dumps(manifest, indent=1, sort_keys=True)) + "\n")

# Reload every saved folder and check that it reproduces unet_out exactly.
with torch.no_grad():
    def check(unet, pname):
        unet.eval()
        labels = torch.tensor(PIPELINES[pname]["labels"]) if "labels" in PIPELINES[pname] else None
        got = unet(tensors[f"{pname}.noise"], torch.tensor(UNET_T), class_labels=labels).sample
        assert torch.equal(got, tensors[f"{pname}.unet_out"]), pname

    for pname in PIPELINES:
        pipe = DDPMPipeline.from_pretrained(root / "pipelines" / pname)
        check(pipe.unet, pname)
        public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}
        assert public(pipe.scheduler.config) == public(DDPMScheduler(**PIPELINES[pname]["scheduler"]).config)
    for folder in ("unet-only", "unet-sharded"):
        check(UNet2DModel.from_pretrained(root / folder), "eps-linear")

files = [out, root / "samplers.json"] + [p for d in ("pipelines", "unet-only", "unet-sharded")
                                         for p in sorted((root / d).rglob("*")) if p.is_file()]
for d in ("pipelines", "unet-sharded", "unet-only"):
    for p in sorted((root / d).rglob("*.safetensors")):
        assert p.stat().st_size < 100_000, p
total = sum(p.stat().st_size for p in files)
print(f"wrote {len(tensors)} tensors ({out.stat().st_size} bytes), {len(manifest['keys'])} manifest keys, "
      f"{len(PIPELINES)} pipelines + unet-only + unet-sharded ({len(shards)} shards); {len(files)} files, {total} bytes")
