"""The connector jar install step: only the listed jars, only with the committed hashes."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from app.distributed.flink import jars


def _wheel(cache: Path, files: dict[str, bytes]) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / "shigawire_apache_flink_libraries-2.0.0.post1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(jars.WHEEL_PREFIX + name, data)
    return wheel


def _manifest(tmp_path: Path, entries: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "jars.sha256"
    lines = ["# test manifest"] + [f"{hashlib.sha256(d).hexdigest()}  {n}" for n, d in entries.items()]
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(jars, "MANIFEST", path)


def test_the_committed_manifest_pins_the_kafka_connector_jars() -> None:
    assert set(jars.manifest()) == {"flink-connector-kafka.jar", "kafka-clients.jar"}
    assert all(len(digest) == 64 for digest in jars.manifest().values())


def test_only_the_listed_jars_are_extracted_and_a_second_run_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _manifest(tmp_path, {"a.jar": b"jar a"}, monkeypatch)
    _wheel(tmp_path / "cache", {"a.jar": b"jar a", "flink-core.jar": b"not wanted"})
    target = tmp_path / "jars"
    assert jars.install(target, cache=tmp_path / "cache") == [target / "a.jar"]
    assert sorted(p.name for p in target.iterdir()) == ["a.jar"]
    assert jars.installed(target)
    (tmp_path / "cache").joinpath("shigawire_apache_flink_libraries-2.0.0.post1-py3-none-any.whl").unlink()
    assert jars.install(target, cache=tmp_path / "cache") == [target / "a.jar"]  # no download needed


def test_a_jar_that_does_not_match_its_hash_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _manifest(tmp_path, {"a.jar": b"the reviewed jar"}, monkeypatch)
    _wheel(tmp_path / "cache", {"a.jar": b"something else"})
    with pytest.raises(jars.JarError, match=r"a\.jar.*does not match"):
        jars.install(tmp_path / "jars", cache=tmp_path / "cache")
    assert not (tmp_path / "jars" / "a.jar").exists()


def test_a_jar_missing_from_the_wheel_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _manifest(tmp_path, {"a.jar": b"x"}, monkeypatch)
    _wheel(tmp_path / "cache", {})
    with pytest.raises(jars.JarError, match="has no"):
        jars.install(tmp_path / "jars", cache=tmp_path / "cache")
