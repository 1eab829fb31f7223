"""Regenerate (or check) the Python stubs from the .proto files.

    python -m protos.generate          # write stubs next to the .proto files
    python -m protos.generate --check  # exit 1 if the committed stubs are stale

The repository root is the include path, so generated modules import each
other as `protos.attnx.v1.*` and need no path hacks.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos" / "attnx" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc on every .proto file, writing the stubs under `out_dir`."""
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")


def generated_files(base: Path) -> list[Path]:
    folder = base / "protos" / "attnx" / "v1"
    return sorted(p for p in folder.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def stale_files() -> list[str]:
    """Names of stubs that differ from what protoc makes now (or are missing)."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = {p.name: p for p in generated_files(Path(tmp))}
        committed = {p.name: p for p in generated_files(ROOT)}
        names = sorted(set(fresh) | set(committed))
        return [
            n
            for n in names
            if n not in fresh
            or n not in committed
            or not filecmp.cmp(fresh[n], committed[n], shallow=False)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale stubs: {', '.join(stale)}; run `python -m protos.generate`")
            sys.exit(1)
        print("stubs are up to date")
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        for path in generated_files(Path(tmp)):
            shutil.copy(path, PROTO_DIR / path.name)
            print(f"wrote {(PROTO_DIR / path.name).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
