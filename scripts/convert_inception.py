"""Converts pytorch-fid's Inception-v3 weights (the FID network) to the safetensors file `diffuse eval --features
inception:FILE` reads: torchvision's key names (Conv2d_1a_3x3.conv.weight, Mixed_6b.branch7x7_2.bn.running_var, ...),
without the classifier (fc) and the BatchNorm step counters.

    python3 scripts/convert_inception.py pt_inception.safetensors            # downloads the weights (needs internet)
    python3 scripts/convert_inception.py pt_inception.safetensors --pth FILE # from a downloaded .pth

The weights are pytorch-fid's FID_WEIGHTS_URL, pt_inception-2015-12-05-6726825d.pth (ported from TensorFlow's FID
Inception); the script checks that every tensor of the network is there. Needs torch and safetensors only.
"""
import argparse

import torch
from safetensors.torch import save_file

URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
# The stem and the mixed blocks Diffuse's InceptionV3 builds; every key of the file under them is converted.
PREFIXES = ("Conv2d_1a_3x3.", "Conv2d_2a_3x3.", "Conv2d_2b_3x3.", "Conv2d_3b_1x1.", "Conv2d_4a_3x3.", "Mixed_5b.", "Mixed_5c.",
            "Mixed_5d.", "Mixed_6a.", "Mixed_6b.", "Mixed_6c.", "Mixed_6d.", "Mixed_6e.", "Mixed_7a.", "Mixed_7b.", "Mixed_7c.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="the safetensors file to write")
    ap.add_argument("--pth", help="pytorch-fid's weights file, already downloaded")
    args = ap.parse_args()
    if args.pth:
        state = torch.load(args.pth, map_location="cpu", weights_only=True)
    else:
        state = torch.hub.load_state_dict_from_url(URL, map_location="cpu", progress=True)
    kept = {k: v.float().contiguous() for k, v in state.items() if k.startswith(PREFIXES) and "num_batches_tracked" not in k}
    convolutions = [k for k in kept if k.endswith("conv.weight")]
    if len(convolutions) != 94 or len(kept) != 470:
        raise SystemExit(f"{args.pth or URL}: {len(convolutions)} convolutions and {len(kept)} tensors, expected 94 and 470")
    save_file(kept, args.out, metadata={"source": URL})
    print(f"wrote {args.out}: {len(kept)} tensors")


if __name__ == "__main__":
    main()
