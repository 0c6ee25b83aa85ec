# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 31, inputs: every input file goes through one bounded reader (`kmm_core/common/bounded_read.py`) - a FIFO, a
symlink to /dev/zero, a directory, an oversized file or a too deeply nested JSON/TOML file is refused with a
KMMError naming the file, in every reader (timeline, bone map, BVH, ASF, bundle config, captions) - and every
model/bundle config value is checked against one range table (`limits.MODEL_CONFIG_RANGES`) before any tensor is
allocated, by `ModelBundle.load` and by `kmm doctor`."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kmm_core.bundle.model_bundle import BundleError, ModelBundle, default_bundle_path, read_manifest
from kmm_core.bundle.weight_checksums import FILES_KEY, bundle_file_names, checksum_entries
from kmm_core.common import bounded_read
from kmm_core.common.bounded_read import read_json
from kmm_core.common.errors import InputFileError, KMMError
from kmm_core.common.limits import MAX_NESTING_DEPTH, MAX_TEXT_FILE_BYTES, MODEL_CONFIG_RANGES
from kmm_core.model.configs import AlignerConfig, DecodingConfig, GeneratorConfig, TokenizerConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

# (reader call, suffix of the file it is given): every kind of input file the backend reads.
READERS = {
    "timeline": ("from kmm_core.generation.timeline import Timeline; Timeline.from_file(PATH)", ".json"),
    "timeline_toml": ("from kmm_core.generation.timeline import Timeline; Timeline.from_file(PATH)", ".toml"),
    "bone_map": ("from kmm_core.retarget.bone_map import load_bone_map; load_bone_map(PATH)", ".json"),
    "bvh": ("from kmm_core.bvh.reader import read_bvh; read_bvh(PATH)", ".bvh"),
    "asf": ("from kmm_core.acclaim.asf import read_asf; read_asf(PATH)", ".asf"),
    "bundle_config": ("from kmm_core.common.bounded_read import read_json; read_json(PATH, 'generator config')", ".json"),
    "captions": ("from kmm_core.data.user_captions import read_captions_file; read_captions_file(PATH)", ".csv"),
}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))  # an unbounded read fails here, not the machine


def _run_reader(call: str, path: Path) -> subprocess.CompletedProcess:
    """Run a reader on `path` in a child process (a hang or an endless read must fail the test, not stop it)."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from kmm_core.common.errors import KMMError
        PATH = Path({str(path)!r})
        try:
            {call}
        except KMMError as error:
            print("KMMError:", error)
            sys.exit(3)
        print("loaded")
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                          preexec_fn=_limit_memory)


def _fifo(folder: Path, suffix: str) -> Path:
    path = folder / f"pipe{suffix}"
    os.mkfifo(path)
    return path


def _dev_zero(folder: Path, suffix: str) -> Path:
    path = folder / f"zero{suffix}"
    path.symlink_to("/dev/zero")
    return path


def _directory(folder: Path, suffix: str) -> Path:
    path = folder / f"folder{suffix}"
    path.mkdir()
    return path


def _oversized(folder: Path, suffix: str) -> Path:
    path = folder / f"huge{suffix}"
    with open(path, "wb") as handle:  # sparse: no disk space used
        handle.truncate(MAX_TEXT_FILE_BYTES + 1 if suffix != ".bvh" and suffix != ".asf" else 600 * 2**20)
    return path


@pytest.mark.parametrize("make", [_fifo, _dev_zero, _directory, _oversized], ids=["fifo", "dev-zero", "directory",
                                                                                 "oversized"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_non_regular_and_oversized_files_are_refused_naming_the_file(reader, make, tmp_path):
    call, suffix = READERS[reader]
    path = make(tmp_path, suffix)
    try:
        completed = _run_reader(call, path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{reader} hung on {path.name}")
    assert completed.returncode == 3, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr and path.name in completed.stdout


def test_the_reader_names_what_is_wrong(tmp_path):
    with pytest.raises(InputFileError, match=r"pipe\.json: the timeline is not a regular file \(a FIFO\)"):
        bounded_read.read_text(_fifo(tmp_path, ".json"), "timeline")
    with pytest.raises(InputFileError, match=r"folder\.json: the bone map is not a regular file \(a directory\)"):
        bounded_read.read_json(_directory(tmp_path, ".json"), "bone map")
    with pytest.raises(InputFileError, match=r"zero\.bvh: the BVH file is not a regular file \(a device\)"):
        bounded_read.read_text(_dev_zero(tmp_path, ".bvh"), "BVH file")
    with pytest.raises(InputFileError, match=r"huge\.json: the config is 64 MiB, more than the 64 MiB allowed"):
        bounded_read.read_json(_oversized(tmp_path, ".json"), "config")
    small = tmp_path / "small.json"
    small.write_text('{"a": 1}')
    with pytest.raises(InputFileError, match=r"small\.json: the config is 8 bytes, more than the 4 bytes allowed"):
        bounded_read.read_json(small, "config", limit=4)
    assert bounded_read.read_json(small, "config") == {"a": 1}


def _nested_json(depth: int) -> str:
    return '{"segments": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("depth", [MAX_NESTING_DEPTH + 1, 5_000, 200_000])
def test_deeply_nested_json_is_refused_naming_the_file(depth, tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(_nested_json(depth))
    with pytest.raises(InputFileError, match=r"deep\.json: the generator config nests lists/objects"):
        read_json(path, "generator config", error_class=BundleError)
    # The same file through every JSON reader: a KMMError naming it, never a RecursionError.
    for reader in ("timeline", "bone_map", "bundle_config"):
        completed = _run_reader(READERS[reader][0], path)
        assert completed.returncode == 3 and "deep.json" in completed.stdout, completed.stdout + completed.stderr


def test_deeply_nested_toml_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("fps = 20\nsegments = " + "[" * 3000 + "]" * 3000 + "\n")
    completed = _run_reader(READERS["timeline_toml"][0], path)
    assert completed.returncode == 3, completed.stdout + completed.stderr
    assert "deep.toml" in completed.stdout and "too deeply" in completed.stdout
    nested = tmp_path / "nested.toml"
    nested.write_text("fps = 20\nsegments = " + "[" * 70 + "]" * 70 + "\n")
    with pytest.raises(InputFileError, match=r"nested\.toml: the timeline nests lists/objects more than 64 deep"):
        bounded_read.read_toml(nested, "timeline")


def test_non_finite_json_numbers_are_refused_unless_asked_for(tmp_path):
    path = tmp_path / "config.json"
    for text in ('{"d_model": NaN}', '{"d_model": Infinity}', '{"d_model": 1e999}'):
        path.write_text(text)
        with pytest.raises(InputFileError, match=r"config\.json: generator config is not valid JSON"):
            read_json(path, "generator config")
    assert read_json(path, "report", allow_non_finite=True) == {"d_model": float("inf")}


# ---- config ranges -------------------------------------------------------------------------------------------------
def _bundle_copy(tmp_path: Path, component: str, edit) -> Path:
    """A copy of the shipped bundle with `component`.json edited and the checksums in bundle.json recomputed, so
    verification passes and only the value itself can refuse it."""
    bundle = Path(shutil.copytree(default_bundle_path(), tmp_path / "bundle"))
    config_path = bundle / f"{component}.json"
    text = edit(config_path.read_text(encoding="utf-8"))
    config_path.write_text(text, encoding="utf-8")
    manifest = read_manifest(bundle)
    manifest[FILES_KEY] = checksum_entries(bundle, bundle_file_names(manifest["components"]))
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return bundle


def _set(key: str, value):
    def edit(text: str) -> str:
        data = json.loads(text)
        data[key] = value
        return json.dumps(data)
    return edit


def test_a_huge_d_model_is_refused_before_any_tensor_naming_file_field_and_range(tmp_path):
    bundle = _bundle_copy(tmp_path, "generator", _set("d_model", 10_000_000))
    low, high = MODEL_CONFIG_RANGES["d_model"]
    with pytest.raises(BundleError, match=rf"generator\.json: generator\.d_model: 10000000 is outside the allowed "
                                          rf"range {low} to {high}") as error:
        ModelBundle.load(bundle, device="cpu")
    assert error.value.path == str(bundle / "generator.json")
    from kmm_core.cli import doctor_checks

    checks = {check["name"]: check for check in doctor_checks(str(bundle))}
    assert checks["weights"]["ok"]  # the checksums match: only the range check can find it
    assert not checks["model_configs"]["ok"] and checks["model_configs"]["required"]
    assert "generator.json" in checks["model_configs"]["detail"] and "d_model" in checks["model_configs"]["detail"]


def test_kmm_doctor_fails_a_deeply_nested_bundle_config(tmp_path):
    bundle = _bundle_copy(tmp_path, "aligner", lambda text: text.rstrip().rstrip("}")
                          + ', "dropout": ' + "[" * 10_000 + "]" * 10_000 + "}")
    doctor = subprocess.run([sys.executable, "-m", "kmm_core.cli", "doctor", "--json", "--checkpoint", str(bundle)],
                            capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    report = json.loads(doctor.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert doctor.returncode == 1 and not report["ok"] and "Traceback" not in doctor.stderr
    assert not checks["model_configs"]["ok"]
    assert "aligner.json" in checks["model_configs"]["detail"] and "too deeply" in checks["model_configs"]["detail"]


@pytest.mark.parametrize(("config_class", "key", "value"), [
    (GeneratorConfig, "n_layers", 1_000_000), (GeneratorConfig, "codebook_size", 10**9),
    (GeneratorConfig, "dropout", float("inf")), (TokenizerConfig, "width", 100_000),
    (TokenizerConfig, "res_blocks", 1000), (AlignerConfig, "heads", 10**6), (DecodingConfig, "guidance_scale", 1e300),
    (DecodingConfig, "top_k", 10**12),
])
def test_every_config_value_out_of_range_is_refused(config_class, key, value):
    with pytest.raises(KMMError, match=rf"{key}: .* is outside the allowed range"):
        config_class.from_dict({key: value}, "model")


def test_fields_in_range_can_still_multiply_past_the_parameter_cap():
    with pytest.raises(KMMError, match=r"d_model: the generator would have about [\d,]+ million parameters"):
        GeneratorConfig.from_dict({"d_model": 2048, "n_layers": 32, "n_heads": 4}, "generator")
    with pytest.raises(KMMError, match=r"dilation_growth"):
        TokenizerConfig.from_dict({"dilation_growth": 8, "res_blocks": 8})


def test_every_numeric_config_field_has_a_range():
    import dataclasses
    import typing

    from kmm_core.model.configs import QuantizerConfig, TextEncoderConfig

    for config_class in (QuantizerConfig, TokenizerConfig, TextEncoderConfig, AlignerConfig, GeneratorConfig,
                         DecodingConfig):
        hints = typing.get_type_hints(config_class)
        for field in dataclasses.fields(config_class):
            if str(hints[field.name]).startswith(("int", "float")) or hints[field.name] in (int, float):
                assert field.name in MODEL_CONFIG_RANGES, f"{config_class.__name__}.{field.name} has no range"
