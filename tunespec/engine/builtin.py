"""The built-in base model: a byte-level tokenizer and a tiny Llama-style model, built in code.

No download: the tokenizer is a byte-level BPE with zero merges (every UTF-8 byte is a token)
and the weights are a random initialisation from a fixed seed, so every machine builds the same
model. It knows nothing until it is tuned.
"""

from __future__ import annotations

from pathlib import Path

from tunespec.engine import modelio  # imported before Hugging Face: it runs runtime.configure()

PAD, BOS, EOS, SEP = "<pad>", "<bos>", "<eos>", "<sep>"
SPECIALS = (PAD, BOS, EOS, SEP)  # ids 0, 1, 2, 3; the 256 bytes follow
SEED = 1234
HIDDEN = 128
INTERMEDIATE = 512
LAYERS = 2
HEADS = 4
MAX_POSITIONS = 2048


def build_tokenizer():
    """The 260-token byte-level tokenizer (pad/bos/eos/sep = 0/1/2/3, then the 256 bytes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *alphabet])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIALS))
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   sep_token=SEP, unk_token=None)


def build_model(tokenizer):
    """The tiny Llama (hidden 128, 2 layers, 4 heads, tied embeddings) from the fixed seed, in fp32."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
        max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def write(target: Path) -> None:
    """Save tokenizer + model (safetensors) + the engine's marker file into `target`."""
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    modelio.write_meta(target, {"kind": "full", "tokenizer": "bytes", "builtin": True})
