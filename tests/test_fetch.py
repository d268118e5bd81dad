"""``data fetch``: resume, checksums, clean-up and the no-network message, all on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import socket
import zipfile

import pytest
from conftest import LocalServer

from minireason.cli import main
from minireason.data import fetch as fetch_mod
from minireason.data.fetch import Dataset, FetchError, RemoteFile, download, fetch
from minireason.files import sha256_file

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


def _remote(url, payload=PAYLOAD, sha=None, size=None):
    return RemoteFile(
        url,
        "file.bin",
        len(payload) if size is None else size,
        sha or hashlib.sha256(payload).hexdigest(),
    )


def test_download_checks_and_renames(tmp_path):
    with LocalServer(PAYLOAD) as srv:
        path = download(_remote(srv.url), tmp_path / "file.bin", timeout=5, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "file.bin.part").exists()
    assert srv.ranges == [None]


def test_partial_download_resumes_with_range(tmp_path):
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:30_000])
    with LocalServer(PAYLOAD) as srv:
        path = download(_remote(srv.url), tmp_path / "file.bin", timeout=5, progress=False)
    assert srv.ranges == ["bytes=30000-"]
    assert path.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(tmp_path):
    (tmp_path / "file.bin.part").write_bytes(b"x" * 1000)
    with LocalServer(PAYLOAD, honour_range=False) as srv:
        path = download(_remote(srv.url), tmp_path / "file.bin", timeout=5, progress=False)
    assert srv.ranges == ["bytes=1000-"] and path.read_bytes() == PAYLOAD


def test_connection_cut_keeps_the_part_then_resumes(tmp_path):
    with LocalServer(PAYLOAD, cut_after=50_000) as srv, pytest.raises(FetchError, match="rerun"):
        download(_remote(srv.url), tmp_path / "file.bin", timeout=5, progress=False)
    part = tmp_path / "file.bin.part"
    assert part.stat().st_size == 50_000
    with LocalServer(PAYLOAD) as srv:
        download(_remote(srv.url), tmp_path / "file.bin", timeout=5, progress=False)
    assert srv.ranges == ["bytes=50000-"]
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_removes_the_file(tmp_path):
    with (
        LocalServer(PAYLOAD) as srv,
        pytest.raises(FetchError, match="SHA-256 .* corrupt download removed"),
    ):
        download(_remote(srv.url, sha="0" * 64), tmp_path / "file.bin", timeout=5, progress=False)
    assert not (tmp_path / "file.bin.part").exists() and not (tmp_path / "file.bin").exists()


def test_no_network_says_what_to_do(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/reviews.json.gz"
    with pytest.raises(FetchError) as err:
        download(_remote(url), tmp_path / "file.bin", timeout=5, progress=False)
    msg = str(err.value)
    assert (
        msg.startswith(f"{url}: no network")
        and f"manually from {url}" in msg
        and "--reviews PATH" in msg
    )


def test_fetch_named_dataset_into_the_cache_with_a_checked_zip(tmp_path, monkeypatch, capsys):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,5\n")
    zipped = buf.getvalue()
    member_sha = hashlib.sha256(b"userId,movieId,rating,timestamp\n1,1,4.0,5\n").hexdigest()
    monkeypatch.setenv("MINIREASON_CACHE", str(tmp_path / "cache"))
    with LocalServer(zipped) as srv:
        monkeypatch.setitem(
            fetch_mod.DATASETS,
            "toy",
            Dataset(
                "toy",
                "toy-folder",
                (
                    RemoteFile(
                        srv.url, "toy.zip", None, None, members={"ml/ratings.csv": member_sha}
                    ),
                ),
                "",
            ),
        )
        assert main(["data", "fetch", "toy"]) == 0
    folder = tmp_path / "cache" / "toy-folder"
    assert (folder / "ratings.csv").read_text().startswith("userId")
    assert f"ready in {folder}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown dataset 'nope'; known: "):
        fetch("nope")


def test_fetch_never_replaces_a_file_it_did_not_download(tmp_path, monkeypatch, capsys):
    theirs = tmp_path / "file.bin"
    theirs.write_bytes(b"the user's own file")
    with LocalServer(PAYLOAD) as srv:
        with pytest.raises(FetchError, match=r"file.bin: exists and is not file.bin as published"):
            download(_remote(srv.url), theirs, timeout=5, progress=False)
    assert theirs.read_bytes() == b"the user's own file" and srv.ranges == []
    text = b"userId,movieId,rating,timestamp\n1,1,4.0,5\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml/ratings.csv", text)
    member = {"ml/ratings.csv": hashlib.sha256(text).hexdigest()}
    folder = tmp_path / "cache" / "toy-folder"
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_text("my ratings")
    monkeypatch.setenv("MINIREASON_CACHE", str(tmp_path / "cache"))
    with LocalServer(buf.getvalue()) as srv:
        remote = RemoteFile(srv.url, "toy.zip", None, None, members=member)
        monkeypatch.setitem(fetch_mod.DATASETS, "toy", Dataset("toy", "toy-folder", (remote,), ""))
        assert main(["data", "fetch", "toy"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ratings.csv: exists and is not ml/ratings.csv" in err, err
    assert (folder / "ratings.csv").read_text() == "my ratings"
    (folder / "ratings.csv").write_bytes(text)  # the member itself: kept, not written again
    before = (folder / "ratings.csv").stat().st_mtime_ns
    with LocalServer(buf.getvalue()) as srv:
        assert main(["data", "fetch", "toy"]) == 0
    assert (folder / "ratings.csv").stat().st_mtime_ns == before


def test_cli_reports_fetch_failure_in_one_line(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(
        fetch_mod.DATASETS,
        "toy",
        Dataset("toy", "toy", (_remote(f"http://127.0.0.1:{port}/x.gz"),), ""),
    )
    assert main(["data", "fetch", "toy", "--cache", str(tmp_path), "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no network" in err and "manually" in err


def test_known_datasets_match_the_local_copies(data_dir):
    for ds in fetch_mod.DATASETS.values():
        for remote in ds.files:
            if remote.sha256:
                assert sha256_file(data_dir / ds.folder / remote.name) == remote.sha256
                assert (data_dir / ds.folder / remote.name).stat().st_size == remote.size
            for member, sha in remote.members.items():
                assert sha256_file(data_dir / ds.folder / member.split("/")[-1]) == sha
