"""Install the Kafka connector jars of the Flink job: ``python -m app.distributed.flink.jars`` (run by
``make install``).

``apache-flink`` ships no connectors. The wheel ``shigawire-apache-flink-libraries`` carries them, but installing it
drops 55 unversioned jars into ``pyflink/lib`` (duplicating Flink's own), so it is only downloaded, and just the jars
the job needs are extracted. It is one person's repackaging: every jar must match the SHA-256 committed in
``jars.sha256``, else nothing is installed and the command fails.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "shigawire-apache-flink-libraries==2.0.0.post1"
WHEEL_PREFIX = "pyflink/lib/"
PIP_DOWNLOAD = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
MANIFEST = Path(__file__).with_name("jars.sha256")


class JarError(RuntimeError):
    """A jar is missing from the wheel or does not match its committed hash."""


def manifest(path: Path | None = None) -> dict[str, str]:
    """Jar file name -> expected SHA-256 (``sha256sum`` format; ``#`` starts a comment)."""
    path = path or MANIFEST
    expected: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise JarError(f"{path}: bad line {line!r}")
        expected[name.strip()] = digest.lower()
    return expected


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def jar_paths(jars_dir: Path, expected: dict[str, str] | None = None) -> list[Path]:
    """The installed jars, in manifest order (what the job hands to Flink)."""
    return [jars_dir / name for name in (expected or manifest())]


def installed(jars_dir: Path, expected: dict[str, str] | None = None) -> bool:
    expected = expected or manifest()
    return all((jars_dir / name).is_file() and sha256(jars_dir / name) == digest for name, digest in expected.items())


def _download(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("shigawire_apache_flink_libraries-*.whl"))
    if not wheels:
        subprocess.run(
            [*PIP_DOWNLOAD, WHEEL_REQUIREMENT, "-d", str(cache)],
            check=True,
        )
        wheels = sorted(cache.glob("shigawire_apache_flink_libraries-*.whl"))
    if not wheels:
        raise JarError(f"pip download of {WHEEL_REQUIREMENT} left no wheel in {cache}")
    return wheels[-1]


def install(jars_dir: Path, *, cache: Path | None = None) -> list[Path]:
    """Idempotent: jars already present with the right hash are left alone (no download)."""
    expected = manifest()
    if installed(jars_dir, expected):
        return jar_paths(jars_dir, expected)
    own_cache = cache is None
    wheel = _download(cache or jars_dir / ".cache")
    jars_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name, digest in expected.items():
            try:
                data = archive.read(WHEEL_PREFIX + name)
            except KeyError:
                raise JarError(f"{wheel.name} has no {WHEEL_PREFIX}{name}") from None
            actual = hashlib.sha256(data).hexdigest()
            if actual != digest:
                raise JarError(f"{name} from {wheel.name}: SHA-256 {actual} does not match the committed {digest}")
            target = jars_dir / name
            partial = target.with_suffix(".part")
            partial.write_bytes(data)
            partial.replace(target)  # never a half-written jar under the real name
    if own_cache:
        wheel.unlink()  # 92 MB of which the job uses 10
    return jar_paths(jars_dir, expected)


def main(argv: list[str] | None = None) -> int:
    from app.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=None, help="Default: CATALOG_FLINK_JARS_DIR.")
    args = parser.parse_args(argv)
    jars_dir: Path = args.dir or Settings().flink_jars_dir
    try:
        paths = install(jars_dir)
    except (JarError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{path}  ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
