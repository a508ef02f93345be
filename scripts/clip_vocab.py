"""CLIP's real tokenizer vocabulary as a tokenizer folder (vocab.json, merges.txt, tokenizer_config.json), the one
Stable Diffusion 1.x's openai/clip-vit-large-patch14 folder holds, for the tokenizer test.

The merges come from the `open-clip-torch` package, which ships OpenAI's bpe_simple_vocab_16e6.txt.gz: its wheel is
downloaded with pip (no install, no dependencies) unless open_clip is installed. The vocabulary is built from them as
CLIP's SimpleTokenizer builds it: the 256 byte characters, the same with the end-of-word mark </w>, the 48 894 merges
in order, then <|startoftext|> and <|endoftext|> (49 408 tokens).

Usage:  python3 scripts/clip_vocab.py OUT_DIR     (does nothing if OUT_DIR/vocab.json exists)
"""
import gzip
import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile

VERSION = "3.2.0"  # open-clip-torch, whose vocabulary file is the same in every release
NAME = "bpe_simple_vocab_16e6.txt.gz"


def byte_alphabet():
    """GPT-2's map of the 256 bytes to printable characters: the printable Latin-1 ones stand for themselves."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def merges_text():
    try:
        import open_clip  # noqa: F401
        return (pathlib.Path(open_clip.__file__).parent / NAME).read_bytes()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp,
                        f"open-clip-torch=={VERSION}"], check=True)
        wheel = next(pathlib.Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            return z.read(next(n for n in z.namelist() if n.endswith(NAME)))


def main():
    out = pathlib.Path(sys.argv[1])
    if (out / "vocab.json").exists():
        return
    lines = gzip.decompress(merges_text()).decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]  # as CLIP's SimpleTokenizer reads them
    chars = byte_alphabet()
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(set(vocab)) == 49408, len(vocab)
    out.mkdir(parents=True, exist_ok=True)
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
         "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer"}, indent=1) + "\n")
    # Last: its presence says the folder is whole.
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    print(f"wrote CLIP's vocabulary ({len(vocab)} tokens) to {out}")


if __name__ == "__main__":
    main()
