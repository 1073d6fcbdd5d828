#!/usr/bin/env python
"""Install detectron2 into the running Python environment, unless it is already there.

detectron2 is not on PyPI; this script copies the Python sources and dist-info of PyPI's
``sal-detectron2`` wheel (detectron2 0.7.2 for CPython 3.10, downloaded with pip) into
site-packages without the compiled ``_C`` library (unloadable here; DW needs none of its ops) or
the wheel's stray ``tools/``, writes a RECORD of exactly those files (``pip uninstall
sal-detectron2`` removes them), then installs the wheel's requirements plus those detectron2
imports but the metadata forgets. An importable detectron2 (e.g. built from source) is kept.
Details: docs/INSTALL.md.
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


def install_from_wheel(wheel, site_packages):
    """Copy detectron2's Python sources and dist-info from ``wheel`` into ``site_packages``;
    returns the requirements of the wheel's METADATA that apply here (no extras, markers
    evaluated)."""
    from packaging.requirements import Requirement

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
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{name},sha256={digest.decode()},{len(data)}")
        record.append(f"{record_path},,")
        (site_packages / record_path).write_text("\n".join(record) + "\n")
    requirements = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                requirements.append(str(req))
    return requirements


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", help="use this sal-detectron2 wheel, not a download")
    parser.add_argument("--force", action="store_true", help="install even if importable")
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
