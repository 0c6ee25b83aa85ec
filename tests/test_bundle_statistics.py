# SPDX-License-Identifier: GPL-3.0-or-later
"""A model bundle is refused, naming the file, when its feature statistics cannot normalise (a `Std.npy` of zeros,
a negative or NaN value: generation once exited 0 with the pelvis travelling 18 m in 2 s) or when its `bundle.json`
lists no checksums (unless `KMM_ALLOW_UNCHECKED_BUNDLE=1`); `kmm doctor` reports both.  Copies of the shipped
bundle, the damaged file's checksum recorded honestly, so only the new checks can catch it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path, read_manifest
from kmm_core.bundle.weight_checksums import (
    FILES_KEY,
    UNCHECKED_BUNDLE_ENV,
    WeightFileError,
    checksum_entries,
    verify_bundle_files,
)
from kmm_core.cli import doctor_checks
from kmm_core.common.errors import BundleError

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = default_bundle_path()
pytestmark = pytest.mark.skipif(not SHIPPED.is_dir(), reason="needs the shipped model")


def _copy_with_std(tmp_path: Path, change) -> Path:
    bundle = Path(shutil.copytree(SHIPPED, tmp_path / "bundle"))
    std = np.load(bundle / "Std.npy")
    change(std)
    np.save(bundle / "Std.npy", std)
    manifest = read_manifest(bundle)
    manifest[FILES_KEY].update(checksum_entries(bundle, ["Std.npy"]))  # honest checksums: the file is "intact"
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=1))
    return bundle


def _check(checks: list[dict], name: str) -> dict:
    return next(check for check in checks if check["name"] == name)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda std: std.__setitem__(slice(None), 0.0), "all 263 of its values are zero, negative, NaN or infinite"),
    (lambda std: std.__setitem__([0, 1, 2, 150], -0.01), "4 of 263 of its values are zero"),
    (lambda std: std.__setitem__(7, np.nan), "feature indices 7"),
])
def test_a_std_that_cannot_normalise_is_refused_on_load_and_by_doctor(change, expected, tmp_path):
    bundle = _copy_with_std(tmp_path, change)
    with pytest.raises(BundleError) as caught:
        ModelBundle.load(bundle, device="cpu")
    assert caught.value.path == str(bundle / "Std.npy") and expected in caught.value.reason, str(caught.value)
    checks = doctor_checks(str(bundle))
    statistics = _check(checks, "statistics")
    assert not statistics["ok"] and statistics["required"] and "Std.npy" in statistics["detail"]
    assert expected in statistics["detail"]
    assert _check(checks, "weights")["ok"]  # the checksums alone would have let it through


def test_kmm_generate_with_a_zero_std_bundle_exits_3_in_one_line(tmp_path):
    bundle = _copy_with_std(tmp_path, lambda std: std.__setitem__(slice(None), 0.0))
    result = subprocess.run([sys.executable, "-m", "kmm_core.cli", "generate", "a person walks", "--seconds", "1",
                             "--device", "cpu", "--checkpoint", str(bundle), "-o", str(tmp_path / "walk.npz")],
                            capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 3, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and "Std.npy" in lines[-1] and "feature indices 0-262" in lines[-1]
    assert not (tmp_path / "walk.npz").exists()


def test_the_shipped_statistics_pass(tmp_path):
    statistics = _check(doctor_checks(str(SHIPPED)), "statistics")
    assert statistics["ok"] and "263 features" in statistics["detail"]


def test_a_bundle_without_checksums_is_refused_unless_the_user_opts_out(tmp_path, monkeypatch):
    bundle = Path(shutil.copytree(SHIPPED, tmp_path / "bundle"))
    manifest = read_manifest(bundle)
    del manifest[FILES_KEY]
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=1))
    monkeypatch.delenv(UNCHECKED_BUNDLE_ENV, raising=False)
    with pytest.raises(WeightFileError) as caught:
        ModelBundle.load(bundle, device="cpu")
    assert caught.value.path == str(bundle / "bundle.json")
    assert "lists no checksums ('files')" in caught.value.reason and UNCHECKED_BUNDLE_ENV in caught.value.reason
    weights = _check(doctor_checks(str(bundle)), "weights")
    assert not weights["ok"] and weights["required"] and "lists no checksums" in weights["detail"]

    monkeypatch.setenv(UNCHECKED_BUNDLE_ENV, "1")  # the documented, explicit opt-out
    assert verify_bundle_files(bundle, manifest) == 0
    weights = _check(doctor_checks(str(bundle)), "weights")
    assert not weights["ok"] and not weights["required"]  # a warning, not a failure
    loaded = ModelBundle.load(bundle, device="cpu")
    assert loaded.normalizer.dim == 263
