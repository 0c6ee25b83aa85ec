# SPDX-License-Identifier: GPL-3.0-or-later
"""Damaged weights never load: real corrupted copies of the shipped bundle (8 KB of 0xFF, 2,000 random bit flips,
NaN weights with matching checksums) fail with an error naming the file, `kmm` exits 3 with one line, and
`kmm doctor` reports them.  `kmm-train bundle` records the checksums."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kmm_core.bundle.model_bundle import BundleError, ModelBundle, default_bundle_path, read_manifest
from kmm_core.bundle.weight_checksums import (
    FILES_KEY,
    WeightFileError,
    bundle_file_names,
    checksum_entries,
    count_non_finite,
    verify_bundle_files,
)
from kmm_core.model.weights import CheckpointError
from kmm_core.training.bundle_writer import assemble_bundle

SHIPPED = default_bundle_path()
REPO_ROOT = Path(__file__).resolve().parents[1]


def _copy(tmp_path: Path, name: str = "bundle") -> Path:
    return Path(shutil.copytree(SHIPPED, tmp_path / name))


def _ff_block(bundle: Path) -> Path:
    weights = bundle / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[200_000:208_192] = b"\xff" * 8192  # 4,096 float16 NaNs in the middle of the generator's weights
    weights.write_bytes(bytes(data))
    return weights


def _bit_flips(bundle: Path, flips: int = 2000, seed: int = 0) -> Path:
    weights = bundle / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")  # keep the JSON header readable: damage only the tensors
    rng = np.random.default_rng(seed)
    for position, bit in zip(rng.integers(header, len(data), flips), rng.integers(0, 8, flips), strict=True):
        data[position] ^= 1 << int(bit)
    weights.write_bytes(bytes(data))
    return weights


def _kmm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kmm_core.cli", *args], capture_output=True, text=True, timeout=600,
                          cwd=REPO_ROOT)


def test_the_shipped_bundle_carries_checksums_of_every_file_it_loads():
    manifest = read_manifest(SHIPPED)
    # Weights, configs and statistics always; the vocabulary files once the bundle is rebuilt by kmm-train bundle.
    assert set(bundle_file_names(manifest["components"])) <= set(manifest[FILES_KEY]) \
        <= set(bundle_file_names(manifest["components"], SHIPPED))
    assert verify_bundle_files(SHIPPED, manifest) == len(manifest[FILES_KEY]) >= 10
    assert all(count_non_finite(SHIPPED / f"{c}.safetensors")[0] == 0 for c in manifest["components"])


@pytest.mark.parametrize("damage", [_ff_block, _bit_flips], ids=["8KB-of-0xFF", "2000-bit-flips"])
def test_damaged_weights_are_refused_naming_the_file(damage, tmp_path):
    bundle = _copy(tmp_path)
    weights = damage(bundle)
    with pytest.raises(WeightFileError, match=r"generator\.safetensors: SHA-256 .* does not match") as error:
        ModelBundle.load(bundle, device="cpu")
    assert error.value.path == str(weights)
    generated = _kmm("generate", "a person walks", "--seconds", "1", "--steps", "1", "--device", "cpu", "--quiet",
                     "--checkpoint", str(bundle), "-o", str(tmp_path / "out.bvh"))
    assert generated.returncode == 3 and "Traceback" not in generated.stderr
    assert generated.stderr.strip().splitlines() == [f"kmm: error: {weights}: {error.value.reason}"]
    assert not (tmp_path / "out.bvh").exists()
    doctor = _kmm("doctor", "--json", "--checkpoint", str(bundle))
    report = json.loads(doctor.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert doctor.returncode == 1 and not report["ok"]
    assert not checks["weights"]["ok"] and "generator.safetensors" in checks["weights"]["detail"]


def test_truncated_and_missing_files_are_named(tmp_path):
    bundle = _copy(tmp_path)
    (bundle / "tokenizer.safetensors").write_bytes((bundle / "tokenizer.safetensors").read_bytes()[:-4096])
    with pytest.raises(WeightFileError, match=r"tokenizer\.safetensors: is \d+ bytes, bundle\.json says \d+"):
        ModelBundle.load(bundle, device="cpu")
    (bundle / "tokenizer.safetensors").unlink()
    with pytest.raises(WeightFileError, match=r"tokenizer\.safetensors: missing"):
        verify_bundle_files(bundle, read_manifest(bundle))


def test_non_finite_weights_are_refused_even_with_matching_checksums(tmp_path):
    """A run that diverged bundles NaN weights with honest checksums: loading refuses them anyway."""
    bundle = _copy(tmp_path)
    _ff_block(bundle)
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest[FILES_KEY] = checksum_entries(bundle, bundle_file_names(manifest["components"]))
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2))
    bad, tensor = count_non_finite(bundle / "generator.safetensors")
    assert bad >= 4096 and tensor
    with pytest.raises(CheckpointError, match=r"generator\.safetensors: \d+ non-finite value\(s\) \(NaN or infinity\)"):
        ModelBundle.load(bundle, device="cpu")
    generated = _kmm("generate", "a person walks", "--seconds", "1", "--device", "cpu", "--quiet", "--checkpoint",
                     str(bundle), "-o", str(tmp_path / "out.npz"))
    assert generated.returncode == 3 and "non-finite" in generated.stderr and "Traceback" not in generated.stderr
    doctor = _kmm("doctor", "--checkpoint", str(bundle))
    assert doctor.returncode == 1 and "[FAIL] weights" in doctor.stdout and "non-finite" in doctor.stdout


def test_kmm_train_bundle_records_checksums_that_loading_checks(tmp_path):
    """`kmm-train bundle` on a run folder (the shipped bundle's files stand in for a finished run's)."""
    from kmm_core.training.cli import main

    run = _copy(tmp_path, "run")
    (run / "bundle.json").unlink()
    assert main(["bundle", "--run", str(run), "--out", str(tmp_path / "rebuilt")]) == 0
    manifest = read_manifest(tmp_path / "rebuilt")
    assert verify_bundle_files(tmp_path / "rebuilt", manifest) == 10
    for name in ("Mean.npy", "Std.npy", "tokenizer.json", "generator.json"):  # copied as they are
        assert manifest[FILES_KEY][name] == read_manifest(SHIPPED)[FILES_KEY][name]
    manifest[FILES_KEY]["Std.npy"]["sha256"] = "0" * 64
    (tmp_path / "rebuilt" / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"Std\.npy: SHA-256"):
        ModelBundle.load(tmp_path / "rebuilt", device="cpu")


def test_assemble_bundle_writes_checksums_directly(tmp_path):
    run = _copy(tmp_path, "run")
    out = assemble_bundle(run, tmp_path / "out", dtype="float32")
    manifest = read_manifest(out)
    assert verify_bundle_files(out, manifest) == 10 and manifest["dtype"] == "float32"
