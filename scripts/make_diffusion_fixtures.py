"""Fixtures for the diffusion tests: diffusers' schedulers (DDPMScheduler, DDIMScheduler) as the reference.

Regenerate:  python3 scripts/make_diffusion_fixtures.py   (pip install torch==2.13.0+cpu diffusers==0.42 safetensors)
Writes Tests/DiffuseDiffusionTests/Fixtures/schedulers.safetensors:
  schedule.<kind>.betas, schedule.<kind>.alphas_cumprod (F32, as diffusers computes them) for kind in linear
    (1e-4..0.02), scaled_linear (0.00085..0.012), squaredcos_cap_v2, sigmoid (1e-4..0.02); T = 1000.
  schedule.linear_zero_snr.betas, .alphas_cumprod (F64): diffusers' rescale_zero_terminal_snr applied to the
    linear betas in float64 (in float32 its 1 − ᾱ_t/ᾱ_{t-1} keeps only ~3 digits of the small β_t).
  posterior.variance, posterior.coef_x0, posterior.coef_xt (F64): the linear schedule's β̃_t and posterior-mean
    coefficients for t = 1..T-1, by the expressions of DDPMScheduler._get_variance / step, evaluated in float64
    on the cumulative product of its betas (its float32 ᾱ would leave 1 − ᾱ_t with ~3 digits at small t).
  spacing.<spacing>.<offset>.<n> (I64): DDIMScheduler.set_timesteps(n) for spacing leading (steps_offset 0 and 1),
    linspace and trailing (offset 0), n = 10, 25, 50.
  sampler.x_T, sampler.noise (F32): the starting noise [2, 3, 4, 4] and the per-step noise z [10, 2, 3, 4, 4].
  sampler.<name> (F32) [10, 2, 3, 4, 4]: the state after each of 10 steps (leading spacing, T = 1000, linear
    schedule) of DDPMScheduler.step / DDIMScheduler.step for the toy model  output = 0.3·x + 0.001·t,
    name = ddpm.<prediction>.<fixed_small|fixed_large>.clip<0|1> or ddim.<prediction>.eta<0|1>.clip<0|1>.
  flow.shift<1|3>.timesteps [10] and flow.shift<1|3>.states [10, 2, 3, 4, 4] (F32): FlowMatchEulerDiscreteScheduler
    (shift 1 and 3, T = 1000) over 10 steps from sampler.x_T for the same toy model at its float timesteps;
    flow_heun.shift<1|3>.final [2, 3, 4, 4]: FlowMatchHeunDiscreteScheduler's result (19 evaluations).
  respaced.edm.<n>, respaced.ays.<n> (F64), n = 10, 25, on diffusers' float32 σ table of Stable Diffusion's
    scaled_linear schedule: EDM's σ (k-diffusion's get_sigmas_karras formula, rho 7, between max(σ_min, 0.002) and
    min(σ_max, 80); written out, as importing PyPI's k-diffusion needs packages that replace this torch), and Align Your
    Steps' (the σ at diffusers' AysSchedules["StableDiffusionTimesteps"] and at t = 0, log-linearly interpolated to
    n + 1 levels as NVIDIA's loglinear_interp, the last dropped for the final σ); respaced.ays.timesteps (I64).
"""
import pathlib

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler
from diffusers.schedulers import AysSchedules
from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseDiffusionTests/Fixtures"
tensors = {}

ranges = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012), "squaredcos_cap_v2": (1e-4, 0.02),
          "sigmoid": (1e-4, 0.02)}
for kind, (start, end) in ranges.items():
    s = DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind, beta_start=start, beta_end=end)
    tensors[f"schedule.{kind}.betas"] = s.betas
    tensors[f"schedule.{kind}.alphas_cumprod"] = s.alphas_cumprod
zero = rescale_zero_terminal_snr(DDPMScheduler().betas.double())
tensors["schedule.linear_zero_snr.betas"] = zero
tensors["schedule.linear_zero_snr.alphas_cumprod"] = torch.cumprod(1 - zero, 0)

# The DDPM posterior in diffusers' terms (prev_t = t - 1 over all T steps), in float64.
a = torch.cumprod(1 - DDPMScheduler().betas.double(), 0)
t = torch.arange(1, 1000)
alpha_prod_t, alpha_prod_t_prev = a[t], a[t - 1]
beta_prod_t, beta_prod_t_prev = 1 - alpha_prod_t, 1 - alpha_prod_t_prev
current_alpha_t = alpha_prod_t / alpha_prod_t_prev
current_beta_t = 1 - current_alpha_t
tensors["posterior.variance"] = beta_prod_t_prev / beta_prod_t * current_beta_t
tensors["posterior.coef_x0"] = alpha_prod_t_prev ** 0.5 * current_beta_t / beta_prod_t
tensors["posterior.coef_xt"] = current_alpha_t ** 0.5 * beta_prod_t_prev / beta_prod_t

for spacing, offsets in [("leading", (0, 1)), ("linspace", (0,)), ("trailing", (0,))]:
    for offset in offsets:
        for n in (10, 25, 50):
            s = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
            s.set_timesteps(n)
            tensors[f"spacing.{spacing}.{offset}.{n}"] = s.timesteps.clone()


def model(x, t):
    """The toy network both languages evaluate: a pure function of (x, t)."""
    return 0.3 * x + 0.001 * t


torch.manual_seed(0)
shape, steps = (2, 3, 4, 4), 10
x_T = torch.randn(shape)
noise = torch.randn((steps,) + shape, generator=torch.Generator().manual_seed(1))
tensors["sampler.x_T"], tensors["sampler.noise"] = x_T, noise

for prediction in ("epsilon", "sample", "v_prediction"):
    for clip in (False, True):
        for variance in ("fixed_small", "fixed_large"):
            s = DDPMScheduler(prediction_type=prediction, clip_sample=clip, variance_type=variance)
            s.set_timesteps(steps)
            # DDPMScheduler.step draws z = randn(shape) from the generator at every step with t > 0: seeded as
            # `noise` was, the i-th draw is noise[i].
            generator, x, states = torch.Generator().manual_seed(1), x_T, []
            for i, t in enumerate(s.timesteps):
                if t > 0:
                    state = generator.get_state()
                    assert torch.equal(torch.randn(shape, generator=generator), noise[i])
                    generator.set_state(state)
                x = s.step(model(x, int(t)), t, x, generator=generator).prev_sample
                states.append(x)
            tensors[f"sampler.ddpm.{prediction}.{variance}.clip{int(clip)}"] = torch.stack(states)
        for eta in (0, 1):
            s = DDIMScheduler(prediction_type=prediction, clip_sample=clip)
            s.set_timesteps(steps)
            x, states = x_T, []
            for i, t in enumerate(s.timesteps):
                x = s.step(model(x, int(t)), t, x, eta=float(eta), variance_noise=noise[i] if eta else None).prev_sample
                states.append(x)
            tensors[f"sampler.ddim.{prediction}.eta{eta}.clip{int(clip)}"] = torch.stack(states)

for shift in (1, 3):
    s = FlowMatchEulerDiscreteScheduler(shift=float(shift))
    s.set_timesteps(steps)
    x, states = x_T, []
    for t in s.timesteps:
        x = s.step(model(x, t), t, x).prev_sample
        states.append(x)
    tensors[f"flow.shift{shift}.timesteps"], tensors[f"flow.shift{shift}.states"] = s.timesteps.clone(), torch.stack(states)
    s = FlowMatchHeunDiscreteScheduler(shift=float(shift))
    s.set_timesteps(steps)
    x = x_T
    for t in s.timesteps:
        x = s.step(model(x, t), t, x).prev_sample
    tensors[f"flow_heun.shift{shift}.final"] = x

sd = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
table = ((1 - sd.alphas_cumprod) / sd.alphas_cumprod) ** 0.5
for n in (10, 25):
    low, high, rho = max(float(table[0]), 0.002), min(float(table[-1]), 80.0), 7.0
    ramp = np.linspace(0, 1, n)
    tensors[f"respaced.edm.{n}"] = torch.tensor((high ** (1 / rho) + ramp * (low ** (1 / rho) - high ** (1 / rho))) ** rho)
    levels = table[AysSchedules["StableDiffusionTimesteps"] + [0]].double().numpy()
    ys = np.interp(np.linspace(0, 1, n + 1), np.linspace(0, 1, len(levels)), np.log(levels[::-1]))
    tensors[f"respaced.ays.{n}"] = torch.tensor(np.exp(ys)[::-1][:-1].copy())
tensors["respaced.ays.timesteps"] = torch.tensor(AysSchedules["StableDiffusionTimesteps"])

root.mkdir(parents=True, exist_ok=True)
out = root / "schedulers.safetensors"
save_file({k: v.contiguous() for k, v in tensors.items()}, str(out))
print("wrote", out, out.stat().st_size, "bytes")
