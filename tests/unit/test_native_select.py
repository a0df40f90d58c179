"""Which implementation runs, and that it is always said: the build never fails for want of a compiler,
a missing extension means the pure twins and a loud reason, PYLVS_REQUIRE_NATIVE makes it fatal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = "import sys; sys.modules['pylvs._native'] = None; "  # as if the extension had not been built


def py(code: str, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PYLVS_")}
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=60,
                          cwd=ROOT)


@pytest.mark.once
def test_without_the_extension_the_pure_twins_run_and_say_so():
    r = py(BLOCK + "from pylvs import native; print(native.IMPLEMENTATION, '|', native.REASON)")
    assert r.returncode == 0, r.stderr
    impl, reason = r.stdout.strip().split(" | ")
    assert impl == "pure" and "not available" in reason and "slower" in reason
    r = py(BLOCK + "from pylvs.cli import main; main(['--version'])")
    assert "(pure:" in r.stdout and "not available" in r.stdout, r.stdout + r.stderr


@pytest.mark.once
def test_require_native_makes_a_missing_extension_fatal():
    r = py(BLOCK + "import pylvs.native", PYLVS_REQUIRE_NATIVE="1")
    assert r.returncode != 0 and "PYLVS_REQUIRE_NATIVE=1" in r.stderr


@pytest.mark.once
def test_no_native_forces_the_twins_even_when_built():
    r = py("from pylvs import native; print(native.IMPLEMENTATION, native.FlowTable.__module__)",
           PYLVS_NO_NATIVE="1")
    assert r.stdout.split() == ["pure", "pylvs._pure.flowtable"], r.stdout + r.stderr


@pytest.mark.once
def test_built_extension_is_picked_by_default():
    from pylvs import native
    if not native.available():
        pytest.skip("pylvs._native is not built in this environment")
    r = py("from pylvs import native; print(native.IMPLEMENTATION, native.FlowTable.__module__)")
    assert r.stdout.split() == ["native", "pylvs._native"], r.stdout + r.stderr


@pytest.mark.once
def test_a_failed_compile_does_not_fail_the_build(tmp_path):
    """CC=false: the C build fails; setup.py warns and succeeds — unless PYLVS_REQUIRE_NATIVE=1."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "native", tmp_path / "native")
    shutil.copytree(ROOT / "pylvs", tmp_path / "pylvs", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYLVS_")}
    env.update(CC="false", LDSHARED="false")
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "out"),
           "--build-temp", str(tmp_path / "tmp")]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "pylvs._native did not build" in r.stderr and "pure-Python twins" in r.stderr
    assert not list((tmp_path / "out").rglob("_native*.so"))
    env["PYLVS_REQUIRE_NATIVE"] = "1"
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
