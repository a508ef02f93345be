"""Fixtures for the CLIP tokenizer: a small byte-level BPE tokenizer folder and transformers' CLIPTokenizer's ids.

Regenerate:  python3 scripts/make_tokenizer_fixtures.py   (pip install transformers==5.25.0 tokenizers)
Writes Tests/DiffuseModelsTests/Fixtures/clip-tokenizer/:
  vocab.json, merges.txt, tokenizer_config.json: CLIP's byte alphabet (each of the 256 byte characters, alone and with
    the end-of-word mark </w>), sixteen merges, then <|startoftext|> and <|endoftext|> (the pad token);
    model_max_length 77.
  expected.json: for each prompt, CLIPTokenizer.from_pretrained(folder)(prompt, padding="max_length", max_length=77,
    truncation=True).input_ids, and for the same prompts padded with "!" (Stable Diffusion 2's pad token) at
    max_length 16.
"""
import json
import pathlib

from transformers import CLIPTokenizer

root = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseModelsTests/Fixtures/clip-tokenizer"
root.mkdir(parents=True, exist_ok=True)


def byte_alphabet():
    """GPT-2's map of the 256 bytes to printable characters: the printable Latin-1 ones stand for themselves."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


chars = byte_alphabet()
merges = ["t h", "th e</w>", "a n", "an d</w>", "c a", "ca t</w>", "i n", "in g</w>", "o n</w>", "h e", "he l", "hel l",
          "hell o</w>", "s t", "st a", "r s</w>"]
vocab = list(dict.fromkeys(chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in merges]
                           + ["<|startoftext|>", "<|endoftext|>"]))
(root / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False) + "\n")
(root / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
(root / "tokenizer_config.json").write_text(json.dumps(
    {"model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
     "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer"}, indent=1) + "\n")

prompts = ["the cat and the hat", "Hello, World!!", "café naïve 123 don't It's I'LL we're they've I'm he'd",
           "a  b\n\tc", "", "中文 🙂 ok", "the<|endoftext|>cat", "  leading and trailing  ", "e\u0301 (decomposed é)",
           "x'y '' 'st"' "quoted"', "starry night, " * 20]
tokenizer = CLIPTokenizer.from_pretrained(root)
expected = {"prompts": prompts,
            "ids": [tokenizer(p, padding="max_length", max_length=77, truncation=True).input_ids for p in prompts]}
tokenizer = CLIPTokenizer.from_pretrained(root, pad_token="!")
expected["pad_exclamation_16"] = [tokenizer(p, padding="max_length", max_length=16, truncation=True).input_ids for p in prompts]
(root / "expected.json").write_text(json.dumps(expected, ensure_ascii=False) + "\n")
print("wrote", root, [len(i) for i in expected["ids"]])
