"""Fixtures for the CLIP tokenizer: a small byte-level BPE tokenizer folder and transformers' CLIPTokenizer's ids.

Regenerate:  python3 scripts/make_tokenizer_fixtures.py   (pip install transformers==5.25.0 tokenizers)
Writes Tests/DiffuseModelsTests/Fixtures/clip-tokenizer/:
  vocab.json, merges.txt, tokenizer_config.json: CLIP's byte alphabet (each of the 256 byte characters, alone and with
    the end-of-word mark </w>), sixteen merges, then <|startoftext|> and <|endoftext|> (the pad token);
    model_max_length 77.
  expected.json: for each prompt, CLIPTokenizer.from_pretrained(folder)(prompt, padding="max_length", max_length=77,
    truncation=True).input_ids, and for the same prompts padded with "!" (Stable Diffusion 2's pad token) at
    max_length 16.
and Tests/DiffuseModelsTests/Fixtures/clip-vocab-expected.json: transformers' CLIPTokenizer with CLIP's real
  vocabulary (the folder scripts/clip_vocab.py writes) on a few hundred tricky strings (accents, other scripts, emoji,
  punctuation runs, numbers, A1111-style weights, prompts over 77 tokens): each string's ids up to its end token,
  truncated to 77, and whether it was cut.
"""
import json
import pathlib
import random
import subprocess
import sys
import tempfile

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


def tricky_strings():
    """Hand-picked cases, then seeded random mixes of the characters and words that trip tokenizers up."""
    cases = ["a photograph of an astronaut riding a horse", "Café, naïve résumé — déjà vu", "ÀÉÎÕÜ àéîõü ßøæå ñç",
             "e\u0301 vs é", "Ω≈ç√∫˜µ≤≥÷", "日本語のテキスト", "中文提示词，高质量", "한국어 프롬프트", "русский текст, Ёж",
             "ελληνικά κείμενα", "עברית", "العربية", "हिन्दी", "ไทย", "🙂🐈‍⬛🏳️‍🌈👍🏽", "emoji🙂inside", "(masterpiece:1.2), best quality",
             "((red)), [blue], {green}", "(word:1.2) (other:0.8) [faded:0.5]", "a <lora:detail:0.7> tag", "!!!???...,,,;;;",
             "---___===+++", "....", "@#$%^&*()", "3.14159 2,718 1e-5 -42 +7 007 1000000", "1girl, 2boys, 4k, 8K, 16:9",
             "x1.5 v2.1 sd-1.5 SDXL", "don't won't I'm you're it's we've they'll she'd", "DON'T WON'T I'M", "'quoted' \"double\"",
             "tab\tseparated\nnew line\r\nwindows", "   spaces   everywhere   ", "", " ", "a", "A", "UPPER lower MiXeD",
             "hyphen-ated words and snake_case and camelCase", "http://example.com/path?q=1&x=2", "user@example.com",
             "#hashtag @mention", "<|startoftext|>inside<|endoftext|>", "the the the the", "supercalifragilisticexpialidocious",
             "pneumonoultramicroscopicsilicovolcanoconiosis", "ａｂｃ full-width ＡＢＣ １２３", "ﬁ ligature ﬀ", "½ ¼ ² ³ ™ © ®",
             "zero\u200bwidth\u200dspace", "soft\u00adhyphen", "non\u00a0breaking", "\u3000ideographic space",
             "a, b. c! d? e; f: g", "(((nested (parens))))", "'' \"\" `` ´´", "‘curly’ “quotes”", "…ellipsis…", "–en —em dash",
             "a" * 100, "ab " * 60, "starry night, " * 20, "oil painting of a cat, " * 10,
             "masterpiece, best quality, ultra-detailed, 8k, (photorealistic:1.4), RAW photo, " * 3]
    pool_words = ["cat", "Cat", "CATS", "café", "naïve", "日本", "🙂", "(red:1.3)", "[x]", "---", "!!!", "123", "3.5", "don't",
                  "É", "ß", "ﬁ", "中文", "кот", "λ", "a.b", "x_y", "...", "'s", "∞", "#", "@", "\u00a0", "\n", "\t"]
    rng = random.Random(0)
    for n in range(240):
        words = [rng.choice(pool_words) for _ in range(rng.randint(1, 12 if n < 200 else 60))]
        cases.append(rng.choice([" ", "", ", "]).join(words))
    return cases


with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, str(pathlib.Path(__file__).parent / "clip_vocab.py"), tmp], check=True)
    real = CLIPTokenizer.from_pretrained(tmp)
    strings = tricky_strings()
    ids = [real(t, max_length=77, truncation=True).input_ids for t in strings]
    out = root.parent / "clip-vocab-expected.json"
    truncated = [len(real(t).input_ids) > 77 for t in strings]
    out.write_text(json.dumps({"strings": strings, "ids": ids, "truncated": truncated}, ensure_ascii=False) + "\n")
    print("wrote", out, len(strings), "strings,", sum(len(i) == 77 for i in ids), "truncated")
