"""The package's installation contract: import guard, detectron2 route, version ranges."""

import subprocess
import sys
import zipfile

import pytest

from tools import install_detectron2


def test_import_without_detectron2_says_how_to_install(tmp_path):
    # A module named detectron2 that fails to import stands in for a missing installation.
    (tmp_path / "detectron2").mkdir()
    (tmp_path / "detectron2" / "__init__.py").write_text("raise ImportError('no detectron2')\n")
    proc = subprocess.run(
        [sys.executable, "-c", "import dual_weighting"],
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "dual_weighting needs detectron2" in proc.stderr
    assert "make env" in proc.stderr


@pytest.mark.parametrize("module", ["dual_weighting.config", "dual_weighting.modeling.meta_arch"])
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    # config.py imports modeling/; a module of modeling/ that imported a name of config.py back
    # would find it undefined here.
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_wheel_install_leaves_out_compiled_ops_and_tools(tmp_path):
    wheel = tmp_path / "sal_detectron2-0.7.2-cp310-none-any.whl"
    dist = "sal_detectron2-0.7.2.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("detectron2/__init__.py", "__version__ = '0.7.2'\n")
        zf.writestr("detectron2/_C.cpython-310-x86_64-linux-gnu.so", b"\x7fELF")
        zf.writestr("detectron2/layers/nms.py", "x = 1\n")
        zf.writestr("tools/train_net.py", "print('stray')\n")
        metadata = "Requires-Dist: numpy<2\nRequires-Dist: timm; extra == 'all'\n"
        zf.writestr(f"{dist}/METADATA", metadata)
        zf.writestr(f"{dist}/RECORD", "detectron2/__init__.py,,\n")
        zf.writestr(f"{dist}/INSTALLER", "pip\n")
    site = tmp_path / "site"
    reqs = install_detectron2.install_from_wheel(wheel, site)

    assert reqs == ["numpy<2"]
    assert (site / "detectron2" / "layers" / "nms.py").read_text() == "x = 1\n"
    assert not list(site.glob("detectron2/_C*"))
    assert not (site / "tools").exists()
    record = (site / dist / "RECORD").read_text().splitlines()
    recorded = {line.split(",")[0] for line in record}
    written = {str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()}
    assert recorded == written


def test_installed_detectron2_has_no_compiled_ops_requirement():
    import detectron2
    from detectron2.evaluation import COCOEvaluator  # noqa: F401  (falls back to pycocotools)
    from detectron2.modeling.meta_arch.fcos import FCOS  # noqa: F401

    assert tuple(int(x) for x in detectron2.__version__.split(".")[:2]) >= (0, 6)


@pytest.mark.parametrize("dist", ["torch", "torchvision", "pycocotools", "faster-coco-eval"])
def test_requirement_ranges_accept_installed_versions(dist):
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement

    reqs = {Requirement(r).name: Requirement(r) for r in requires("dual_weighting")}
    installed = version(dist).split("+")[0]
    assert reqs[dist].specifier.contains(installed), (dist, installed, reqs[dist])
