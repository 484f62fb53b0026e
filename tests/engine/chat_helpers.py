"""A tiny chat model for the tests: the built-in byte model with ChatML special tokens and template."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SYSTEM = "Be brief."
# SmolLM2-Instruct's template (ChatML, a default system turn), with a shorter default system prompt.
CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + SYSTEM + "<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def chat_tokenizer():
    """The built-in byte tokenizer plus <|im_start|> (260) and <|im_end|> (261) and the template.

    Its eos stays the built-in `<eos>`, so generation must stop at the end-of-turn token itself."""
    from tunespec.engine import builtin

    tokenizer = builtin.build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START, IM_END]})
    tokenizer.chat_template = CHATML
    return tokenizer


def write_chat_model(target: Path) -> Path:
    """A Hugging Face dir: the built-in architecture (random, seeded) over the chat tokenizer."""
    from tunespec.engine import builtin

    tokenizer = chat_tokenizer()
    model = builtin.build_model(tokenizer)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
