# SPDX-License-Identifier: GPL-3.0-or-later
"""The fallback rule around the compiled CPU loop: no compiler, a failed build, KMM_SELECTIVE_SCAN (what both fused
CPU loops must compute is in test_fused_cpu_scans.py)."""

from __future__ import annotations

import pytest
import torch

from kmm_core.common.errors import ConfigError
from kmm_core.model import compiled_selective_scan as compiled
from kmm_core.model import selective_scan as scan_module
from kmm_core.model.selective_scan import (
    choose_selective_scan,
    selective_scan_compiled,
    selective_scan_numba,
    selective_scan_pure,
)

if compiled.kernel() is None:  # the CI machine and the development machines have g++
    pytest.fail(f"the compiled scan must build on this machine: {compiled.kernel_status()}", pytrace=False)


def test_fallback_when_no_compiler_or_turned_off(monkeypatch, tmp_path):
    """Without a compiler (or a working build) the rule takes numba's loops; KMM_SELECTIVE_SCAN=pure the pure scan."""
    monkeypatch.delenv(scan_module.SCAN_VARIABLE, raising=False)
    u = torch.zeros(1, 2, 3)
    assert choose_selective_scan(u) is selective_scan_compiled  # this machine has a compiler
    try:
        monkeypatch.setenv(scan_module.SCAN_VARIABLE, "pure")
        assert choose_selective_scan(u) is selective_scan_pure
        assert scan_module.cpu_scan_choice() == ("pure", "KMM_SELECTIVE_SCAN=pure")

        monkeypatch.delenv(scan_module.SCAN_VARIABLE)
        monkeypatch.setenv("KMM_CACHE_DIR", str(tmp_path))  # nothing cached here: a build is needed
        monkeypatch.setattr(compiled, "_compiler", lambda: None)
        compiled.kernel.cache_clear()
        assert choose_selective_scan(u) is selective_scan_numba
        assert "no C++ compiler" in compiled.kernel_status()

        monkeypatch.setenv(scan_module.SCAN_VARIABLE, "compiled")  # asked for, not there: the pure scan, saying why
        name, why = scan_module.cpu_scan_choice()
        assert name == "pure" and "compiled: no C++ compiler" in why

        monkeypatch.setattr(compiled, "_compiler", lambda: "/bin/false")  # a "compiler" whose build fails
        compiled.kernel.cache_clear()
        assert compiled.kernel() is None and compiled.kernel_status().startswith("build failed")
        assert not list(tmp_path.rglob("*.so"))  # no half-written library left behind
    finally:
        monkeypatch.undo()
        compiled.kernel.cache_clear()
    assert compiled.kernel() is not None


def test_kernel_built_for_another_instruction_set(monkeypatch, tmp_path):
    """KMM_SCAN_MARCH=haswell (AVX2, no AVX-512) builds a library of its own, says so, and scans as the native build
    does; a value that is not a CPU name is refused naming the variable."""
    g = torch.Generator().manual_seed(3)
    u, delta, z = torch.randn(2, 9, 40, generator=g), torch.rand(2, 9, 40, generator=g), torch.randn(2, 9, 40, generator=g)
    A, B, C = -torch.rand(40, 16, generator=g) - 0.5, torch.randn(2, 9, 16, generator=g), torch.randn(2, 9, 16, generator=g)
    native = compiled.fused_selective_scan(u, delta, A, B, C, D=torch.ones(40), z=z)
    try:
        monkeypatch.setenv("KMM_CACHE_DIR", str(tmp_path))
        monkeypatch.setenv(compiled.MARCH_VARIABLE, "haswell")
        compiled.kernel.cache_clear()
        assert compiled.build_flags()[-1] == "-march=haswell"
        assert compiled.kernel() is not None, compiled.kernel_status()
        assert compiled.kernel_status().endswith("(built with -march=haswell)")
        assert len(list(tmp_path.rglob("*.so"))) == 1
        avx2 = compiled.fused_selective_scan(u, delta, A, B, C, D=torch.ones(40), z=z)
        torch.testing.assert_close(avx2, native, rtol=1e-5, atol=1e-6)

        monkeypatch.setenv(compiled.MARCH_VARIABLE, "haswell; rm -rf /")
        compiled.kernel.cache_clear()
        with pytest.raises(ConfigError, match="KMM_SCAN_MARCH='haswell; rm -rf /': not a CPU name"):
            compiled.kernel()
    finally:
        monkeypatch.undo()
        compiled.kernel.cache_clear()
    assert compiled.kernel() is not None and "built with" not in compiled.kernel_status()


def test_a_cached_library_cut_short_is_rebuilt_not_loaded(tmp_path):
    """A cached library cut short (a full disk, a killed copy) used to be handed to the dynamic loader, which killed
    `kmm doctor`, `kmm generate` and the worker with SIGBUS (exit 135) and printed nothing.  Its SHA-256, kept
    beside it, no longer matches: it is removed, rebuilt and loaded, and the status says so; a library without its
    checksum (an older cache) is rebuilt too."""
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT

    probe = ("from kmm_core.model import compiled_selective_scan as c; k = c.kernel(); "
             "print(k is not None); print(c.kernel_status())")
    env = {**os.environ, "KMM_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}

    def load() -> list[str]:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
        return done.stdout.splitlines()

    assert load()[0] == "True"
    library = next(tmp_path.rglob("*.so"))
    whole = library.read_bytes()
    library.write_bytes(whole[: len(whole) // 2])
    loaded, status = load()
    assert loaded == "True" and "was damaged: removed and rebuilt" in status, status
    assert library.read_bytes() == whole or library.stat().st_size > len(whole) // 2
    assert load()[1].startswith("loaded")  # whole again: loaded without a rebuild
    library.with_name(library.name + ".sha256").unlink()
    loaded, status = load()
    assert loaded == "True" and "removed and rebuilt" in status
