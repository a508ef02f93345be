"""Fixture for the FID network: pytorch-fid's InceptionV3 (its FID blocks over torchvision's Inception-v3 modules)
with random weights, and its 2048 pool features for two images, resized to 299×299 as pytorch-fid does.

pytorch-fid downloads the real weights; here its loader is replaced by pseudo-random weights (every convolution,
every BatchNorm's weight, bias and running statistics), so the check is of the structure and arithmetic, which is
what the real weights then run through. The weights are not stored (87 MB): each tensor's values are
u = splitmix64(FNV-1a(name) + index) mapped to [−1, 1), scaled per kind (see `weights`), which the test
recomputes bit for bit. torchvision's compiled ops do not load against torch's CPU wheel (and installed beside it,
torchvision breaks diffusers' import), so torchvision is not installed: its wheel (version TORCHVISION) is downloaded
into a temporary folder and torchvision/models/inception.py itself is executed, with stand-ins for the registry and
weight-metadata helpers it imports (nothing of the network).

Regenerate:  pip install --no-deps pytorch-fid; python3 scripts/make_inception_fixtures.py
Writes Tests/DiffuseModelsTests/Fixtures/inception.safetensors (F32): images ([2, 3, 40, 48] in [0, 1]) and
features ([2, 2048]); its metadata "shapes" lists every weight and buffer (torchvision key → shape) as JSON.
"""
import enum
import json
import importlib.util
import pathlib
import subprocess
import sys
import tempfile
import types
import zipfile

import numpy as np
import torch
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseModelsTests/Fixtures"
TORCHVISION = "0.28.0"


def torchvision_sources():
    """torchvision's Python files, unpacked from its wheel (downloaded without dependencies) in a temporary folder."""
    folder = pathlib.Path(tempfile.mkdtemp())
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                    "-d", str(folder), "torchvision==" + TORCHVISION], check=True)
    wheel = next(folder.glob("torchvision-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(folder, [n for n in z.namelist() if n.startswith("torchvision/") and n.endswith(".py")])
    return folder / "torchvision"


package = torchvision_sources()


def module(name, **attributes):
    m = types.ModuleType(name)
    m.__dict__.update(attributes)
    sys.modules[name] = m
    return m


class WeightsEnum(enum.Enum):
    @classmethod
    def verify(cls, weights):
        return weights


torchvision = module("torchvision", __path__=[str(package)], __version__=TORCHVISION)
models = module("torchvision.models", __path__=[str(package / "models")])
module("torchvision.transforms", __path__=[])
module("torchvision.transforms._presets", ImageClassification=object)
module("torchvision.utils", _log_api_usage_once=lambda *a: None)
module("torchvision.models._api", register_model=lambda *a, **k: (lambda f: f), Weights=lambda **k: k, WeightsEnum=WeightsEnum)
module("torchvision.models._meta", _IMAGENET_CATEGORIES=[])
module("torchvision.models._utils", _ovewrite_named_param=lambda kwargs, k, v: kwargs.__setitem__(k, v),
       handle_legacy_interface=lambda **k: (lambda f: f))
spec = importlib.util.spec_from_file_location("torchvision.models.inception", package / "models/inception.py")
inception_module = importlib.util.module_from_spec(spec)
sys.modules["torchvision.models.inception"] = inception_module
spec.loader.exec_module(inception_module)
models.inception = inception_module
models.inception_v3 = inception_module.inception_v3
torchvision.models = models

import pytorch_fid.inception as fid  # noqa: E402

built = {}
original = fid._inception_v3
fid._inception_v3 = lambda *a, **k: built.setdefault("net", original(*a, **k))
fid.load_state_dict_from_url = lambda *a, **k: None
load = torch.nn.Module.load_state_dict
torch.nn.Module.load_state_dict = lambda self, state, *a, **k: None  # no downloaded weights
model = fid.InceptionV3([fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
torch.nn.Module.load_state_dict = load
inception = built["net"]

M64 = (1 << 64) - 1


def fnv1a(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def uniform(name, count):
    """u_j = splitmix64(FNV-1a(name) + j) → [−1, 1) from its top 24 bits, exactly as the test computes it."""
    with np.errstate(over="ignore"):
        z = (np.uint64(fnv1a(name)) + np.arange(count, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float64) / float(1 << 23) - 1).astype(np.float32)


def weights(name, t):
    """Convolutions U(±√(6/fan_in)); BatchNorm γ = 1 + 0.2u, β = 0.1u, running mean 0.1u, running variance 1 + 0.5u."""
    u = torch.from_numpy(uniform(name, t.numel())).reshape(t.shape)
    if name.endswith("conv.weight"):
        return u * np.float32((6.0 / t[0].numel()) ** 0.5)
    scale, offset = {"weight": (0.2, 1.0), "bias": (0.1, 0.0), "running_mean": (0.1, 0.0), "running_var": (0.5, 1.0)}[name.split(".")[-1]]
    return u * np.float32(scale) + np.float32(offset)


state = {k: v for k, v in inception.state_dict().items()
         if not k.startswith(("fc.", "AuxLogits.")) and "num_batches_tracked" not in k}
with torch.no_grad():
    for name, t in state.items():
        t.copy_(weights(name, t))
torch.manual_seed(0)
model.eval()
images = torch.rand(2, 3, 40, 48)
with torch.no_grad():
    features = model(images)[0].flatten(1)
shapes = {k: list(v.shape) for k, v in state.items()}
save_file({"images": images.contiguous(), "features": features.contiguous().float()}, str(root / "inception.safetensors"),
          metadata={"shapes": json.dumps(shapes)})
print("features", tuple(features.shape), "mean |f|", features.abs().mean().item(), "tensors", len(shapes))
