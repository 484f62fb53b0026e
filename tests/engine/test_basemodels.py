"""The base-model catalog and the built-in model's directory."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tunespec.engine import basemodels
from tunespec.engine.basemodels import BUILTIN, get_base_model, list_base_models, materialize


def names(api_version: str, extra=basemodels._NO_EXTRA) -> list[str]:
    return [m.name for m in list_base_models(api_version, extra)]


def test_v1beta3_catalog_has_builtin_and_text_bison_alias():
    assert names("v1beta3")[:2] == [BUILTIN, "models/text-bison-001"]  # then installed pretrained models
    bison = get_base_model("models/text-bison-001", "v1beta3")
    assert (bison.temperature, bison.top_p, bison.top_k) == (0.7, 0.95, 40)
    assert bison.supported_generation_methods == ("generateText", "countTextTokens", "createTunedTextModel")
    assert BUILTIN in bison.description and "not Google's model" in bison.description
    assert "randomly initialised" in bison.description
    assert "randomly initialised" in get_base_model(BUILTIN, "v1beta3").description


def test_v1beta_catalog_has_gemini_aliases_with_their_defaults():
    assert names("v1beta")[:3] == [BUILTIN, "models/gemini-1.0-pro-001", "models/gemini-1.5-flash-001-tuning"]
    pro = get_base_model("gemini-1.0-pro-001", "v1beta")  # the models/ prefix is optional
    assert (pro.temperature, pro.top_p, pro.top_k) == (0.9, 1.0, 1)
    flash = get_base_model("models/gemini-1.5-flash-001-tuning", "v1beta")
    assert (flash.temperature, flash.top_p, flash.top_k) == (1.0, 0.95, 64)
    assert flash.supported_generation_methods == ("generateContent", "countTokens", "createTunedModel")
    assert get_base_model("models/text-bison-001", "v1beta") is None


def test_unknown_and_hub_names_need_the_opt_in(monkeypatch, tmp_path):
    monkeypatch.delenv("TUNESPEC_ALLOW_DOWNLOAD", raising=False)
    assert get_base_model("models/nope", "v1beta3") is None
    assert get_base_model("Qwen/Qwen2.5-0.5B", "v1beta3") is None
    with pytest.raises(KeyError, match=r"unknown base model 'Qwen/Qwen2\.5-0\.5B'"):
        materialize("Qwen/Qwen2.5-0.5B", tmp_path)
    monkeypatch.setenv("TUNESPEC_ALLOW_DOWNLOAD", "1")
    entry = get_base_model("models/Qwen/Qwen2.5-0.5B", "v1beta3")
    assert entry is not None and "TUNESPEC_ALLOW_DOWNLOAD" in entry.description


def test_registered_local_model_is_listed_and_materialized(tmp_path):
    model_dir = tmp_path / "llama"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 4096}')
    extra = {"my-llama": model_dir}
    assert names("v1beta3", extra)[-1] == "models/my-llama"
    entry = get_base_model("my-llama", "v1beta", extra)
    assert entry.input_token_limit == 4096 and str(model_dir) in entry.description
    assert materialize("models/my-llama", tmp_path / "data", extra) == model_dir.resolve()


def test_registered_dir_without_a_model_names_the_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=str(empty)):
        materialize("x", tmp_path, {"x": empty})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        materialize("y", tmp_path, {"y": tmp_path / "missing"})


def test_builtin_is_built_once_deterministically_and_survives_a_race(tmp_path):
    from safetensors.torch import load_file

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(materialize(BUILTIN, tmp_path / "a")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    built = results[0]
    assert sorted(p.name for p in built.parent.iterdir()) == [built.name]  # no temp dirs left
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tunespec.json"):
        assert (built / name).is_file()
    assert materialize("models/text-bison-001", tmp_path / "a") == built
    other = materialize("models/gemini-1.0-pro-001", tmp_path / "b")
    a, b = load_file(built / "model.safetensors"), load_file(other / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_builtin_tokenizer_is_lossless_bytes(tmp_path):
    from tunespec.engine import modelio

    tokenizer = modelio.load_tokenizer(materialize(BUILTIN, tmp_path))
    text = "héllo € -> 10,100,001\n"
    ids = modelio.encode(tokenizer, text)
    assert len(ids) == len(text.encode()) and tokenizer.decode(ids) == text
    fmt = modelio.PromptFormat.of(tokenizer)
    assert (fmt.pad, fmt.bos, fmt.eos, fmt.sep) == (0, [1], 2, [3])


def test_losing_a_build_race_keeps_the_winner_and_replaces_a_half_made_dir(tmp_path):
    final = materialize(BUILTIN, tmp_path)
    marker = final / "winner"
    marker.write_text("")
    basemodels._build_builtin(final)  # another process finishing second: its rename fails
    assert marker.exists()
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]
    (final / "tunespec.json").unlink()  # a crash mid-build leaves a dir without the marker
    basemodels._build_builtin(final)
    assert (final / "tunespec.json").is_file() and not marker.exists()
