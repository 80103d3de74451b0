"""The download stage on real files: local mirror, HTTP on 127.0.0.1, corrupted sources."""

from __future__ import annotations

import gzip
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from prunelab.data import MNIST_MD5, DownloadError, fetch_mnist, md5_hex, raw_dir, verify_mnist

from helpers import small_params


@contextmanager
def http_server(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 at a free port; yields its base URL."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def assert_canonical(root: Path) -> None:
    for name, md5 in MNIST_MD5.items():
        assert md5_hex((raw_dir(root) / name).read_bytes()) == md5


def corrupted_copy(mirror: Path, dest: Path, how: str) -> Path:
    """A copy of the mirror whose train labels are corrupted (`flip`) or cut short (`truncate`)."""
    dest.mkdir()
    for f in mirror.glob("*.gz"):
        shutil.copy(f, dest / f.name)
    target = dest / "train-labels-idx1-ubyte.gz"
    if how == "flip":  # a valid gzip whose content differs by one label
        content = bytearray(gzip.decompress(target.read_bytes()))
        content[100] = (content[100] + 1) % 10
        target.write_bytes(gzip.compress(bytes(content)))
    else:  # a download cut off midway
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    return dest


def test_local_mirror_gives_the_layout_torchvision_reads(mirror: Path, tmp_path: Path) -> None:
    from torchvision.datasets import MNIST

    fetch_mnist([str(mirror)], tmp_path)
    assert_canonical(tmp_path)
    assert len(MNIST(str(tmp_path), train=True, download=False)) == 60000
    assert len(MNIST(str(tmp_path), train=False, download=False)) == 10000


def test_http_source_after_a_missing_folder(mirror: Path, tmp_path: Path) -> None:
    with http_server(mirror) as url:
        fetch_mnist([str(tmp_path / "no-such-folder"), url], tmp_path / "out")
    assert_canonical(tmp_path / "out")


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_bad_http_source_is_skipped_for_the_next(mirror: Path, tmp_path: Path, how: str) -> None:
    bad = corrupted_copy(mirror, tmp_path / "bad", how)
    with http_server(bad) as bad_url, http_server(mirror) as good_url:
        fetch_mnist([bad_url, good_url], tmp_path / "out")
    assert_canonical(tmp_path / "out")


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_only_bad_sources_fail_with_every_attempt_named(
    mirror: Path, tmp_path: Path, how: str
) -> None:
    bad = corrupted_copy(mirror, tmp_path / "bad", how)
    missing = tmp_path / "missing"
    with http_server(bad) as url, pytest.raises(DownloadError) as err:
        fetch_mnist([str(missing), url], tmp_path / "out")
    msg = str(err.value)
    assert "train-labels-idx1-ubyte" in msg and str(missing) in msg and url in msg
    assert ("decompressed MD5" if how == "flip" else "not a complete gzip") in msg
    # The corrupted file was never written; the good ones were, and nothing half-written.
    out = raw_dir(tmp_path / "out")
    assert not (out / "train-labels-idx1-ubyte").exists()
    assert (out / "t10k-labels-idx1-ubyte").exists()
    assert not list(out.glob("*.tmp"))


def test_a_corrupted_file_already_in_data_is_replaced(mirror: Path, tmp_path: Path) -> None:
    fetch_mnist([str(mirror)], tmp_path)
    victim = raw_dir(tmp_path) / "t10k-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:-10])
    fetch_mnist([str(mirror)], tmp_path)
    assert_canonical(tmp_path)


def test_unreachable_url_is_reported(tmp_path: Path) -> None:
    with http_server(tmp_path) as url:  # serves an empty folder: 404 for every file
        with pytest.raises(DownloadError, match="404"):
            fetch_mnist([url], tmp_path / "out", timeout=5)


def test_a_download_cut_off_midway_is_not_taken_for_a_file(mirror: Path, tmp_path: Path) -> None:
    """The server promises the whole file (Content-Length) and closes after half of it."""
    from http.server import BaseHTTPRequestHandler

    class CutOff(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            data = (mirror / Path(self.path).name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), CutOff)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with pytest.raises(DownloadError, match="IncompleteRead"):
            fetch_mnist([url], tmp_path, timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    out = raw_dir(tmp_path)
    assert not out.exists() or not any(out.iterdir())  # nothing written, not even a temp


def test_the_mirror_variable_serves_the_download_stage(mirror: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from prunelab.config import parse_config
    from prunelab.stages import download

    params = small_params(mirror, **{"data.sources": ["/nonexistent/mnist"],
                                     "data.root": str(tmp_path / "data")})
    cfg = parse_config(params)
    monkeypatch.delenv("PRUNELAB_MNIST_MIRROR", raising=False)
    with pytest.raises(DownloadError, match="/nonexistent/mnist") as err:
        download.run(cfg)
    assert "set PRUNELAB_MNIST_MIRROR" in str(err.value)  # the other fix, named
    monkeypatch.setenv("PRUNELAB_MNIST_MIRROR", str(mirror))
    download.run(cfg)
    verify_mnist(tmp_path / "data")
