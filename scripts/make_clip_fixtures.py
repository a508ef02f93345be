"""Fixtures for the CLIP text encoder: tiny transformers CLIPTextModels and their outputs.

Regenerate:  python3 scripts/make_clip_fixtures.py   (pip install torch==2.13.0+cpu transformers==5.25.0 safetensors)
Writes Tests/DiffuseModelsTests/Fixtures/clip-text/<act>/ for act in quick_gelu (CLIP, Stable Diffusion 1.x) and gelu
(OpenCLIP, Stable Diffusion 2.x):
  config.json                  CLIPTextConfig(vocab_size=100, hidden_size=32, intermediate_size=37,
                               num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=16, hidden_act=act)
  model.safetensors (F32)      its state dict under the published keys (text_model.*), every parameter re-drawn from a seeded generator (weights N(0, 1/fan_in),
                               biases N(0, 0.1²), layer norms 1 + N(0, 0.2²) and N(0, 0.2²), embeddings N(0, 1))
  expected.safetensors (F32)   ids [2, 16] (as float), last_hidden_state [2, 16, 32], and penultimate [2, 16, 32]:
                               final_layer_norm(hidden_states[-2]), what diffusers' clip_skip=1 uses.
"""
import json
import pathlib

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

torch.set_num_threads(1)
root = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseModelsTests/Fixtures/clip-text"
for seed, act in enumerate(["quick_gelu", "gelu"]):
    config = CLIPTextConfig(vocab_size=100, hidden_size=32, intermediate_size=37, num_hidden_layers=3,
                            num_attention_heads=4, max_position_embeddings=16, hidden_act=act, bos_token_id=98,
                            eos_token_id=99, pad_token_id=99)
    model = CLIPTextModel(config).eval()
    g = torch.Generator().manual_seed(50 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=g)
            if "layer_norm" in name:
                p.copy_(1 + 0.2 * z if name.endswith("weight") else 0.2 * z)
            elif name.endswith("bias"):
                p.copy_(0.1 * z)
            elif "embedding" in name:
                p.copy_(z)
            else:
                p.copy_(z / p.shape[1] ** 0.5)
    ids = torch.randint(0, 100, (2, 16), generator=g)
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        penultimate = model.final_layer_norm(out.hidden_states[-2])
    folder = root / act
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=1, sort_keys=True, default=str) + "\n")
    # The keys as the published checkpoints (saved by transformers 4) have them, text_model.*; transformers 5 names
    # its modules without that prefix and maps the old keys on load, checked below.
    save_file({"text_model." + k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    reloaded = CLIPTextModel.from_pretrained(folder).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).last_hidden_state, out.last_hidden_state)
    save_file({"ids": ids.float(), "last_hidden_state": out.last_hidden_state.contiguous(), "penultimate": penultimate.contiguous()},
              str(folder / "expected.safetensors"))
    print(act, sorted(model.state_dict())[:3], len(model.state_dict()))
