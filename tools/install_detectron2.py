#!/usr/bin/env python
"""Install detectron2 into the running Python environment, unless it is already there.

detectron2 is published as source on GitHub, not on PyPI. On a machine that reaches only the
package registries, this script uses the Python sources of PyPI's ``sal-detectron2`` wheel (a
build of detectron2 0.7.2 published only for CPython 3.10):

1. download the wheel with ``pip download`` (tag cp310, no dependencies);
2. copy ``detectron2/`` and the ``.dist-info`` folder into this environment's site-packages,
   leaving out the compiled ``_C`` library (built for CPython 3.10, it cannot load here) and the
   wheel's stray top-level ``tools/`` folder; the dist-info's RECORD lists exactly the files
   written, so ``pip uninstall sal-detectron2`` removes them cleanly;
3. install the wheel's declared requirements (which pin ``numpy<2``; we satisfy the pin so that
   ``pip check`` stays clean), plus ``fvcore``, ``iopath`` and ``setuptools<81`` (for
   ``pkg_resources``), which detectron2 imports but this build's metadata forgets.

Without ``_C``, detectron2's ``DeformConv``/``ModulatedDeformConv``, rotated-box ops and fast
COCOeval are missing; Dual Weighting needs none of them (see docs/INSTALL.md).

An importable detectron2 (for example one built from source with its compiled ops) is kept as it
is: the script prints where it lives and exits.
"""

import argparse
import base64
import hashlib
import importlib.util
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

WHEEL_SPEC = "sal-detectron2==0.7.2"
# Imported by detectron2 (checkpointing, file I/O; pkg_resources in model_zoo) but missing
# from the wheel's metadata.
MISSING_REQUIREMENTS = ["fvcore>=0.1.5", "iopath>=0.1.7", "setuptools<81"]
# Compiled for CPython 3.10: unloadable here, so not installed.
COMPILED_EXTENSION = re.compile(r"^detectron2/_C\..*\.(so|pyd)$")


def _pip(*args):
    subprocess.check_call([sys.executable, "-m", "pip", *args])


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _requirements(metadata_text):
    """Requirements of the wheel's METADATA that apply here (no extras, markers evaluated)."""
    from packaging.requirements import Requirement

    reqs = []
    for line in metadata_text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        reqs.append(str(req))
    return reqs


def install_from_wheel(wheel, site_packages):
    """Copy detectron2's Python sources and dist-info from ``wheel`` into ``site_packages``.

    Returns:
        list[str]: the requirements declared by the wheel's metadata.
    """
    site_packages = Path(site_packages)
    with zipfile.ZipFile(wheel) as zf:
        members = [
            n
            for n in zf.namelist()
            if not n.endswith("/")
            and (n.startswith("detectron2/") or ".dist-info/" in n)
            and not COMPILED_EXTENSION.match(n)
        ]
        dist_info = next(n.split("/")[0] for n in members if ".dist-info/" in n)
        record_path = f"{dist_info}/RECORD"
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        record = []
        for name in members:
            if name == record_path:
                continue
            data = zf.read(name)
            if name == f"{dist_info}/INSTALLER":
                data = b"dual_weighting/tools/install_detectron2.py\n"
            target = site_packages / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            record.append(_record_line(name, data))
        record.append(f"{record_path},,")
        (site_packages / record_path).write_text("\n".join(record) + "\n")
    return _requirements(metadata)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--wheel", help="use this sal-detectron2 wheel file instead of downloading it"
    )
    parser.add_argument(
        "--force", action="store_true", help="install even if detectron2 is importable"
    )
    args = parser.parse_args(argv)

    spec = importlib.util.find_spec("detectron2")
    if spec is not None and not args.force:
        print(f"detectron2 already installed at {Path(spec.origin).parent}; keeping it.")
        return 0

    # packaging parses the wheel's requirements; it comes with pip's own environment in a venv.
    _pip("install", "-q", "packaging")
    site_packages = sysconfig.get_paths()["purelib"]
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel
        if wheel is None:
            _pip(
                "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.10",
                "--dest", tmp, WHEEL_SPEC,
            )  # fmt: skip
            wheel = next(Path(tmp).glob("*.whl"))
        requirements = install_from_wheel(wheel, site_packages)
    _pip("install", "-q", *requirements, *MISSING_REQUIREMENTS)
    print(f"detectron2 installed into {site_packages} from {WHEEL_SPEC} (without compiled ops).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
