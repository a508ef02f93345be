"""Fixtures for the data tests, made with Pillow (an encoder and a resampler independent of Diffuse's):

- PNG kinds Diffuse's own writer never makes, to check the libpng reader: a 4-colour palette image, an RGBA image
  with opaque and fully transparent pixels, a 16-bit greyscale image without gamma information, an 8-bit
  greyscale+alpha image. pngs.json holds each one's pixels as libpng should hand them over (8-bit, RGB or grey,
  transparent pixels black).
- parameters*.png: images with a `parameters` text chunk as AUTOMATIC1111's web UI writes it with Pillow's PngInfo
  (tEXt for Latin-1 text, iTXt for other text, zTXt and compressed iTXt with zip=True); texts.json holds each
  file's chunks.
- bilinear.json: Pillow's BILINEAR resize of float images to a larger square, from the centred square window of
  the source (box=...), which is what LabeledImages.resized does when enlarging.

Regenerate:  python3 scripts/make_data_fixtures.py   (pip install pillow numpy)
Writes Tests/DiffuseDataTests/Fixtures/{palette,rgba,gray16,gray_alpha,parameters*}.png, pngs.json, texts.json,
bilinear.json
"""
import json
import pathlib

import numpy as np
from PIL import Image, PngImagePlugin

out = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseDataTests/Fixtures"
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
expected = {}

# Palette: 5×3 pixels of 4 colours.
colours = [(255, 0, 0), (0, 128, 255), (20, 200, 40), (250, 250, 250)]
index = rng.integers(0, 4, size=(3, 5)).astype(np.uint8)
img = Image.fromarray(index, mode="P")
img.putpalette([v for c in colours for v in c])
img.save(out / "palette.png")
expected["palette.png"] = {"channels": 3, "pixels": [[list(colours[i]) for i in row] for row in index.tolist()]}

# RGBA: 4×2 pixels, alpha 255 or 0; transparent pixels composite onto black.
rgb = rng.integers(0, 256, size=(2, 4, 3)).astype(np.uint8)
alpha = np.array([[255, 0, 255, 0], [0, 255, 255, 0]], dtype=np.uint8)
Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(out / "rgba.png")
expected["rgba.png"] = {"channels": 3, "pixels": (rgb * (alpha[..., None] == 255)).tolist()}

# 16-bit grey: 3×2 pixels, values v·257 so that the 8-bit reading is exactly v.
grey = np.array([[0, 1, 128], [200, 254, 255]], dtype=np.uint16)
Image.fromarray(grey * 257).save(out / "gray16.png")
expected["gray16.png"] = {"channels": 1, "pixels": grey.tolist()}

# Grey + alpha: 3×1 pixels, alpha 255, 0, 255.
Image.fromarray(np.array([[[10, 255], [99, 0], [240, 255]]], dtype=np.uint8), mode="LA").save(out / "gray_alpha.png")
expected["gray_alpha.png"] = {"channels": 1, "pixels": [[10, 0, 240]]}

(out / "pngs.json").write_text(json.dumps(expected) + "\n")

# Bilinear enlargement of the centred square (the window starts at a whole pixel, rounded down).
cases = []
for height, width, size in [(3, 3, 7), (4, 7, 9), (7, 4, 16), (5, 8, 6)]:
    image = rng.uniform(-1, 1, size=(height, width)).astype(np.float32)
    side = min(height, width)
    oy, ox = (height - side) // 2, (width - side) // 2
    resized = Image.fromarray(image, mode="F").resize((size, size), Image.BILINEAR, box=(ox, oy, ox + side, oy + side))
    cases.append({"height": height, "width": width, "size": size, "image": image.flatten().tolist(),
                  "expected": np.asarray(resized, dtype=np.float32).flatten().tolist()})
(out / "bilinear.json").write_text(json.dumps(cases) + "\n")

# Generation parameters in text chunks, as the web UIs write them.
settings = "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x768, Model hash: 6ce0161689, " \
           'Model: v1-5-pruned-emaonly, Lora hashes: "detail: 1a2b, style: 3c4d", Version: v1.10.1'
texts = {
    "parameters.png": ([("parameters", "a lighthouse at dusk, (oil painting:1.2), détaillé\nNegative prompt: blurry, text\n"
                         + settings), ("Software", "Pillow")], False),
    "parameters-utf8.png": ([("parameters", "灯台 🌅 at dusk\nsecond line of the prompt\nNegative prompt: ugly\n"
                              "worse, with a second line\n" + settings)], False),
    "parameters-zip.png": ([("parameters", "a cat\n" + settings), ("Comment", "猫 compressed")], True),
}
for name, (chunks, zip_) in texts.items():
    info = PngImagePlugin.PngInfo()
    for key, text in chunks:
        info.add_text(key, text, zip=zip_)
    Image.fromarray(np.full((2, 3, 3), 128, dtype=np.uint8)).save(out / name, pnginfo=info)
(out / "texts.json").write_text(json.dumps({name: chunks for name, (chunks, _) in texts.items()}, ensure_ascii=False) + "\n")
