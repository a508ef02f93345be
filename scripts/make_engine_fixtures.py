"""Reference values for the DiffuseEngine tests, computed with PyTorch.

Regenerate (from the repository root) with:

    python3 scripts/make_engine_fixtures.py

It writes two files:

* Tests/DiffuseEngineTests/Fixtures/ops.safetensors — for every case NAME: the inputs NAME.in0, NAME.in1, ...,
  a random upstream gradient NAME.gout (the shape of the output), the output NAME.out, and the input gradients
  NAME.grad0, NAME.grad1, ... of out.backward(gout). A gradient is stored only for the inputs that have one
  (labels and indices are stored as F32 but get none). Some cases store extra outputs (batch norm's NAME.mean
  and NAME.var). The op's non-tensor arguments (axes, stride, ...) are written both here and in OpTests.swift.
* Tests/DiffuseEngineTests/Fixtures/dtypes.safetensors — a few tensors in F16, BF16, F64, I64 (and F32) whose
  values SafeTensorsTests.swift spells out.

Inputs are drawn as float32 with a fixed seed; the references are computed in float64 from those exact values and
stored as float32, so they are the correctly rounded answers for the stored inputs.
"""

import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(20240611)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "DiffuseEngineTests", "Fixtures")

tensors = {}


def randn(*shape, scale=1.0):
    return torch.randn(*shape) * scale


def uniform(*shape, low=0.0, high=1.0):
    return torch.rand(*shape) * (high - low) + low


def away_from(x, points, margin=0.05):
    """Moves values that lie within `margin` of a kink (0 for abs and relu, a clamp bound) away from it, so the
    derivative is unambiguous and finite differences in the tests do not straddle the kink."""
    for p in points:
        near = (x - p).abs() < margin
        x = torch.where(near, p + torch.where(x >= p, margin, -margin) * 2, x)
    return x


def case(name, fn, *inputs, no_grad=()):
    """Runs fn on the inputs (float32 tensors, computed in float64) and stores inputs, gout, out and gradients.
    fn returns the output, or (output, {suffix: extra tensor}). Inputs listed in no_grad get no gradient."""
    assert name not in {k.split(".")[0] for k in tensors}, name
    xs = [x.double().requires_grad_(i not in no_grad) for i, x in enumerate(inputs)]
    result = fn(*xs)
    out, extras = result if isinstance(result, tuple) else (result, {})
    gout = torch.randn(out.shape)
    out.backward(gout.double())
    for i, x in enumerate(inputs):
        tensors[f"{name}.in{i}"] = x.float()
        if i not in no_grad:
            tensors[f"{name}.grad{i}"] = xs[i].grad.float()
    tensors[f"{name}.gout"] = gout
    tensors[f"{name}.out"] = out.detach().float()
    for suffix, t in extras.items():
        tensors[f"{name}.{suffix}"] = t.detach().float()


# Elementwise binary ops with broadcasting, and the scalar forms.
for op, f in [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul)]:
    case(f"{op}_same", f, randn(3, 4), randn(3, 4))
    case(f"{op}_bcast", f, randn(2, 3, 4), randn(3, 1))
    case(f"{op}_bias", f, randn(2, 3, 2, 2), randn(1, 3, 1, 1))
    case(f"{op}_outer", f, randn(3, 1), randn(1, 4))
    case(f"{op}_row", f, randn(2, 3, 4), randn(4))
    case(f"{op}_cross", f, randn(2, 1, 4, 1), randn(3, 1, 5))
# Denominators kept away from zero.
case("div_same", torch.div, randn(3, 4), uniform(3, 4, low=0.5, high=2.0))
case("div_bcast", torch.div, randn(2, 3, 4), uniform(3, 1, low=0.5, high=2.0))
case("div_bias", torch.div, randn(2, 3, 2, 2), -uniform(1, 3, 1, 1, low=0.5, high=2.0))
case("div_outer", torch.div, randn(3, 1), uniform(1, 4, low=0.5, high=2.0))
case("div_row", torch.div, randn(2, 3, 4), uniform(4, low=0.5, high=2.0))
case("div_cross", torch.div, randn(2, 1, 4, 1), uniform(3, 1, 5, low=0.5, high=2.0))
case("scale", lambda x: x * -1.5, randn(3, 4))
case("shift", lambda x: x + 0.75, randn(3, 4))

# Elementwise unary ops.
case("exp", torch.exp, randn(3, 4))
case("log", torch.log, uniform(3, 4, low=0.2, high=3.0))
case("sqrt", torch.sqrt, uniform(3, 4, low=0.2, high=3.0))
case("pow_3", lambda x: torch.pow(x, 3.0), randn(3, 4))
case("pow_half", lambda x: torch.pow(x, 0.5), uniform(3, 4, low=0.2, high=3.0))
case("pow_neg", lambda x: torch.pow(x, -1.5), uniform(3, 4, low=0.5, high=3.0))
case("square", torch.square, randn(3, 4))
case("abs", torch.abs, away_from(randn(3, 4), [0.0]))
case("clamp", lambda x: torch.clamp(x, -0.5, 0.7), away_from(randn(4, 5), [-0.5, 0.7]))
case("clamp_min", lambda x: torch.clamp(x, min=0.1), away_from(randn(4, 5), [0.1]))

# Reductions (axes as in the Swift call; torch's dim is the same list).
case("sum_all", lambda x: x.sum(), randn(2, 3, 4))
case("sum_axes", lambda x: x.sum(dim=[0, 2]), randn(2, 3, 4))
case("sum_keep", lambda x: x.sum(dim=[1], keepdim=True), randn(2, 3, 4))
case("sum_last", lambda x: x.sum(dim=-1), randn(2, 3, 4))
case("mean_all", lambda x: x.mean(), randn(2, 3, 4))
case("mean_axes", lambda x: x.mean(dim=[0, 2]), randn(2, 3, 4))
case("mean_keep", lambda x: x.mean(dim=[1, 2], keepdim=True), randn(2, 3, 4))
case("var_all", lambda x: x.var(), randn(2, 3, 4))
case("var_unbiased", lambda x: x.var(dim=[1, 2]), randn(2, 3, 4))
case("var_biased_keep", lambda x: x.var(dim=[2], unbiased=False, keepdim=True), randn(2, 3, 4))
case("var_biased", lambda x: x.var(dim=[0], unbiased=False), randn(3, 4, 2))

# Moving values: reshape, permute, transpose, concat, slice, pad.
case("reshape", lambda x: x.reshape(4, 6), randn(2, 3, 4))
case("permute", lambda x: x.permute(2, 0, 3, 1), randn(2, 3, 4, 5))
case("transpose", lambda x: x.transpose(0, 2), randn(2, 3, 4))
case("transpose_last", lambda x: x.transpose(-2, -1), randn(2, 3, 4))
case("concat_axis1", lambda a, b, c: torch.cat([a, b, c], dim=1), randn(2, 3, 2), randn(2, 1, 2), randn(2, 4, 2))
case("concat_axis0", lambda a, b: torch.cat([a, b], dim=0), randn(2, 3), randn(1, 3))
case("concat_last", lambda a, b: torch.cat([a, b], dim=-1), randn(2, 3, 2), randn(2, 3, 3))
case("slice", lambda x: x[1:3, 0:4, 2:5], randn(3, 4, 5))
case("slice_axis", lambda x: x[..., 1:4], randn(2, 3, 5))
# F.pad lists (before, after) pairs from the last dimension backwards.
case("padded", lambda x: F.pad(x, (2, 1, 1, 2)), randn(2, 3, 4))
case("padded_value", lambda x: F.pad(x, (0, 0, 0, 1, 1, 0), value=0.5), randn(2, 3, 4))

# Matrix products.
case("mm", lambda a, b: a @ b, randn(3, 4), randn(4, 5))
case("mm_tA", lambda a, b: a.T @ b, randn(4, 3), randn(4, 5))
case("mm_tB", lambda a, b: a @ b.T, randn(3, 4), randn(5, 4))
case("mm_tAB", lambda a, b: a.T @ b.T, randn(4, 3), randn(5, 4))
case("bmm", lambda a, b: a @ b, randn(2, 3, 4), randn(2, 4, 5))
case("bmm_tA", lambda a, b: a.transpose(-2, -1) @ b, randn(2, 4, 3), randn(2, 4, 5))
case("bmm_tB", lambda a, b: a @ b.transpose(-2, -1), randn(2, 3, 4), randn(2, 5, 4))
case("bmm_tAB", lambda a, b: a.transpose(-2, -1) @ b.transpose(-2, -1), randn(2, 4, 3), randn(2, 5, 4))
case("bmm4d", lambda a, b: a @ b, randn(2, 2, 3, 4), randn(2, 2, 4, 5))
case("bmm4d_tB", lambda a, b: a @ b.transpose(-2, -1), randn(2, 2, 3, 4), randn(2, 2, 5, 4))
case("mm_shared", lambda a, b: a @ b, randn(2, 3, 4), randn(4, 5))
case("mm_shared_tB", lambda a, b: a @ b.T, randn(2, 3, 4), randn(5, 4))
case("mm_shared_tA", lambda a, b: a.transpose(-2, -1) @ b, randn(2, 2, 4, 3), randn(4, 5))
case("mm_shared_tAB", lambda a, b: a.transpose(-2, -1) @ b.T, randn(2, 4, 3), randn(5, 4))
case("linear", F.linear, randn(2, 3, 4), randn(5, 4), randn(5))
case("linear_nobias", F.linear, randn(3, 4), randn(5, 4))

# Convolution: NAME_k{kernel}_s{stride}_p{padding}; those ending in _bias have a bias input.
case("conv_k3_s1_p1_bias", lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1),
     randn(2, 3, 5, 5), randn(4, 3, 3, 3), randn(4))
case("conv_k3_s1_p0_bias", lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=0),
     randn(2, 2, 5, 4), randn(3, 2, 3, 3), randn(3))
case("conv_k3_s2_p1", lambda x, w: F.conv2d(x, w, None, stride=2, padding=1), randn(2, 3, 6, 6), randn(4, 3, 3, 3))
case("conv_k3_s2_p1_bias", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
     randn(2, 2, 7, 5), randn(3, 2, 3, 3), randn(3))
case("conv_k3_s2_p0", lambda x, w: F.conv2d(x, w, None, stride=2, padding=0), randn(2, 2, 7, 6), randn(3, 2, 3, 3))
case("conv_k1_s1_p0_bias", lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=0),
     randn(2, 3, 4, 4), randn(5, 3, 1, 1), randn(5))
case("conv_k1_s2_p0", lambda x, w: F.conv2d(x, w, None, stride=2, padding=0), randn(2, 3, 5, 4), randn(2, 3, 1, 1))
case("conv_k1_s1_p1", lambda x, w: F.conv2d(x, w, None, stride=1, padding=1), randn(2, 2, 3, 3), randn(3, 2, 1, 1))

# Resampling.
case("upsample", lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), randn(2, 3, 3, 4))
case("avgpool_k2", lambda x: F.avg_pool2d(x, 2), randn(2, 3, 4, 6))
case("avgpool_k3", lambda x: F.avg_pool2d(x, 3), randn(1, 2, 6, 9))
# Inception-v3's pooling and input resizing.
case("maxpool_k3s2", lambda x: F.max_pool2d(x, 3, stride=2), randn(2, 3, 9, 8))
case("maxpool_k3s1p1", lambda x: F.max_pool2d(x, 3, stride=1, padding=1), randn(1, 2, 5, 6))
case("avgpool_k3s1p1", lambda x: F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False), randn(2, 2, 5, 6))
case("avgpool_k3s1p1_pad", lambda x: F.avg_pool2d(x, 3, stride=1, padding=1), randn(1, 2, 4, 5))
case("resize_up", lambda x: F.interpolate(x, size=(11, 13), mode="bilinear", align_corners=False), randn(2, 2, 5, 7))
case("resize_down", lambda x: F.interpolate(x, size=(4, 6), mode="bilinear", align_corners=False), randn(1, 2, 9, 9))

# Normalization.
case("groupnorm_eps5", lambda x, w, b: F.group_norm(x, 3, w, b, eps=1e-5),
     randn(2, 6, 3, 3, scale=2) + 0.5, randn(6), randn(6))
case("groupnorm_eps6", lambda x, w, b: F.group_norm(x, 2, w, b, eps=1e-6), randn(2, 4, 2, 5), randn(4), randn(4))
case("groupnorm_rank3", lambda x, w, b: F.group_norm(x, 2, w, b, eps=1e-5), randn(3, 4, 5), randn(4), randn(4))
case("layernorm", lambda x, w, b: F.layer_norm(x, (8,), w, b, eps=1e-5), randn(2, 3, 8, scale=3) - 1, randn(8), randn(8))
case("layernorm_eps6", lambda x, w, b: F.layer_norm(x, (6,), w, b, eps=1e-6), randn(4, 6), randn(6), randn(6))


def batch_norm_train(x, w, b):
    """Training-mode batch norm. With momentum 1 the running statistics become the batch mean and the unbiased
    batch variance, which the Swift op returns."""
    c = x.shape[1]
    running_mean = torch.zeros(c, dtype=x.dtype)
    running_var = torch.ones(c, dtype=x.dtype)
    y = F.batch_norm(x, running_mean, running_var, w, b, training=True, momentum=1.0, eps=1e-5)
    return y, {"mean": running_mean, "var": running_var}


case("batchnorm_train", batch_norm_train, randn(4, 3, 2, 2, scale=2) + 1, randn(3), randn(3))
case("batchnorm_train_2d", batch_norm_train, randn(5, 3), randn(3), randn(3))
# Eval mode: inputs x, running mean, running variance, weight, bias. PyTorch gives no gradient for the running
# statistics, so only grad0, grad3 and grad4 are stored.
case("batchnorm_eval",
     lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b, training=False, eps=1e-5),
     randn(2, 3, 2, 3), randn(3), uniform(3, low=0.5, high=2.0), randn(3), randn(3), no_grad=(1, 2))

# Activations.
for name, f in [("silu", F.silu), ("relu", F.relu), ("leakyrelu", lambda x: F.leaky_relu(x, 0.2)),
                ("gelu", F.gelu), ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
                ("tanh", torch.tanh), ("sigmoid", torch.sigmoid)]:
    case(name, f, away_from(randn(3, 5, scale=2), [0.0]))

# Softmax.
case("softmax_last", lambda x: torch.softmax(x, dim=-1), randn(2, 3, 5, scale=2))
case("softmax_axis1", lambda x: torch.softmax(x, dim=1), randn(2, 4, 3, scale=2))
case("logsoftmax_last", lambda x: torch.log_softmax(x, dim=-1), randn(2, 3, 5, scale=2))
case("logsoftmax_axis1", lambda x: torch.log_softmax(x, dim=1), randn(2, 4, 3, scale=2))

# Attention: [B, H, L, D] queries, [B, H, S, D] keys and values, L != S.
case("attention", F.scaled_dot_product_attention, randn(2, 2, 3, 4), randn(2, 2, 5, 4), randn(2, 2, 5, 4))
case("attention_scale", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=0.3),
     randn(1, 2, 4, 3), randn(1, 2, 2, 3), randn(1, 2, 2, 3))
# Causal (is_causal: query i sees keys j <= i, the mask aligned at the top left), L = S and L < S.
case("attention_causal", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
     randn(2, 2, 5, 4), randn(2, 2, 5, 4), randn(2, 2, 5, 4))
case("attention_causal_wide", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
     randn(1, 2, 3, 4), randn(1, 2, 6, 4), randn(1, 2, 6, 4))

# Embedding: weight [V, D], indices [2, 3] (stored as F32; 1 and 4 repeat, 5 is never picked).
case("embedding", lambda w, i: F.embedding(i.long(), w), randn(6, 4),
     torch.tensor([[1.0, 4.0, 0.0], [4.0, 1.0, 3.0]]), no_grad=(1,))

# Losses.
case("mse", F.mse_loss, randn(3, 4), randn(3, 4))
prediction = randn(3, 4)
case("l1", F.l1_loss, prediction, prediction - away_from(randn(3, 4), [0.0]))  # |ŷ − y| kept away from its kink
case("bce_logits", F.binary_cross_entropy_with_logits, randn(3, 4, scale=3), uniform(3, 4), no_grad=(1,))
case("cross_entropy", lambda x, labels: F.cross_entropy(x, labels.long()), randn(4, 5, scale=2),
     torch.tensor([2.0, 0.0, 4.0, 2.0]), no_grad=(1,))


def gaussian_kl(m1, lv1, m2, lv2):
    """KL(N(m1, e^lv1) || N(m2, e^lv2)), the closed form, checked against torch.distributions."""
    kl = 0.5 * (-1.0 + lv2 - lv1 + torch.exp(lv1 - lv2) + (m1 - m2) ** 2 * torch.exp(-lv2))
    p = torch.distributions.Normal(m1, torch.exp(0.5 * lv1))
    q = torch.distributions.Normal(m2, torch.exp(0.5 * lv2))
    assert torch.allclose(kl, torch.distributions.kl_divergence(p, q), atol=1e-12)
    return kl


case("gaussian_kl", gaussian_kl, randn(2, 3), randn(2, 3), randn(2, 3), randn(2, 3))
case("mish", F.mish, randn(3, 7, scale=3))
# GroupNorm followed by SiLU, fused into one op in the engine.
case("groupnorm_silu", lambda x, w, b: F.silu(F.group_norm(x, 2, w, b, eps=1e-5)), randn(2, 4, 3, 5, scale=2),
     randn(4), randn(4))

os.makedirs(FIXTURES, exist_ok=True)
save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, os.path.join(FIXTURES, "ops.safetensors"))

# Other element types. SafeTensorsTests.swift spells out the same values; every one is exact in its dtype (F64
# and I64 also hold values that a Float32 cannot: 0.1, 1e300, 2^53 + 1).
dtypes = {
    "f16": torch.tensor([[0.5, -1.25, 3.0], [65504.0, -0.0, 2.0 ** -24]], dtype=torch.float16),  # max, subnormal
    "bf16": torch.tensor([[1.0, -2.5, 0.15625], [2.0 ** 100, -(2.0 ** -20), 7.0]], dtype=torch.bfloat16),
    "f64": torch.tensor([0.1, -1.0 / 3.0, 1.0e300, 2.0 ** 0.5], dtype=torch.float64),
    "i64": torch.tensor([-3, 0, 7, 2 ** 40, 2 ** 53 + 1], dtype=torch.int64),
    "f32": torch.tensor([1.5, -2.0], dtype=torch.float32),
}
save_file(dtypes, os.path.join(FIXTURES, "dtypes.safetensors"), metadata={"format": "pt"})  # one key: the order of several is not stable

size = os.path.getsize(os.path.join(FIXTURES, "ops.safetensors"))
cases = len({k.split(".")[0] for k in tensors})
print(f"wrote {cases} cases, {len(tensors)} tensors, {size} bytes to ops.safetensors; dtypes.safetensors")
