"""Download recipes against a small HTTP server on 127.0.0.1 (resume, checksums, offline)."""

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from genossm.cli.main import main
from genossm.data import download as dl

GENOME = b">chr1\n" + b"ACGT" * 5000 + b"\n"
BED = b"chr1\t0\t100\ttrain\n"


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes), honouring ``Range: bytes=N-`` unless ``server.ranges`` is off."""

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.server.ranges and (spec := self.headers.get("Range")):
            start = int(spec.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.requests, httpd.ranges = {}, [], True
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def serve_hg38(server, md5=None):
    server.files["/goldenPath/hg38/bigZips/hg38.fa.gz"] = GENOME
    digest = md5 or hashlib.md5(GENOME).hexdigest()
    server.files["/goldenPath/hg38/bigZips/md5sum.txt"] = f"abc  other.fa.gz\n{digest}  hg38.fa.gz\n".encode()
    server.files["/basenji_barnyard2/sequences_human.bed"] = BED
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_download_hg38_recipe_checks_md5_and_records_sha256(server, tmp_path):
    mirror = serve_hg38(server)
    paths = dl.run_recipe("hg38", tmp_path, mirror)
    assert [p.name for p in paths] == ["hg38.fa.gz", "sequences_human.bed"]
    assert paths[0].read_bytes() == GENOME and paths[1].read_bytes() == BED
    sums = (tmp_path / "SHA256SUMS").read_text().splitlines()
    assert sums == [
        f"{hashlib.sha256(GENOME).hexdigest()}  hg38.fa.gz",
        f"{hashlib.sha256(BED).hexdigest()}  sequences_human.bed",
    ]
    assert not list(tmp_path.glob("*.part"))


def test_download_resumes_a_partial_file(server, tmp_path):
    mirror = serve_hg38(server)
    (tmp_path / "hg38.fa.gz.part").write_bytes(GENOME[:1234])
    dl.download(dl.RECIPES["hg38"][0], tmp_path, mirror)
    assert (tmp_path / "hg38.fa.gz").read_bytes() == GENOME
    assert ("/goldenPath/hg38/bigZips/hg38.fa.gz", "bytes=1234-") in server.requests


def test_a_server_without_ranges_restarts_the_file(server, tmp_path):
    mirror = serve_hg38(server)
    server.ranges = False
    (tmp_path / "hg38.fa.gz.part").write_bytes(b"garbage that is not the start of the file")
    dl.download(dl.RECIPES["hg38"][0], tmp_path, mirror)
    assert (tmp_path / "hg38.fa.gz").read_bytes() == GENOME


def test_complete_part_file_is_finished(server, tmp_path):
    mirror = serve_hg38(server)
    (tmp_path / "hg38.fa.gz.part").write_bytes(GENOME)
    dl.download(dl.RECIPES["hg38"][0], tmp_path, mirror)
    assert (tmp_path / "hg38.fa.gz").read_bytes() == GENOME


def test_checksum_mismatch_removes_the_download(server, tmp_path):
    mirror = serve_hg38(server, md5="0" * 32)
    with pytest.raises(ValueError, match="MD5 .* differs from the published 0000"):
        dl.download(dl.RECIPES["hg38"][0], tmp_path, mirror)
    assert not (tmp_path / "hg38.fa.gz").exists() and not (tmp_path / "hg38.fa.gz.part").exists()


def test_existing_file_is_kept_and_verified(server, tmp_path, capsys):
    mirror = serve_hg38(server)
    (tmp_path / "hg38.fa.gz").write_bytes(GENOME)
    dl.download(dl.RECIPES["hg38"][0], tmp_path, mirror)
    assert "already there (checksum verified)" in capsys.readouterr().out
    (tmp_path / "hg38.fa.gz").write_bytes(b"my own file")
    with pytest.raises(ValueError, match="exists but its MD5 differs"):
        dl.download(dl.RECIPES["hg38"][0], tmp_path, mirror)
    assert (tmp_path / "hg38.fa.gz").read_bytes() == b"my own file"


def test_missing_file_on_the_server(server, tmp_path):
    mirror = serve_hg38(server)
    with pytest.raises(ConnectionError, match=r"panTro6/bigZips/md5sum.txt: HTTP 404"):
        dl.run_recipe("panTro6", tmp_path, mirror)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_is_one_clear_line(tmp_path, capsys):
    mirror = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["data", "download", "hg38", "--out", str(tmp_path), "--mirror", mirror]) == 1
    err = capsys.readouterr().err
    assert "cannot reach 127.0.0.1" in err and "offline?" in err and "Traceback" not in err


def test_recipes_point_at_ucsc_and_the_hyenadna_bed():
    assert dl.RECIPES["hg38"][0].url == "https://hgdownload.soe.ucsc.edu/goldenPath/hg38/bigZips/hg38.fa.gz"
    assert dl.RECIPES["hg38"][1].url == "https://storage.googleapis.com/basenji_barnyard2/sequences_human.bed"
    assert {f.name for f in dl.RECIPES["great-apes"]} == {
        "hg38.fa.gz",
        "panTro6.fa.gz",
        "panPan3.fa.gz",
        "gorGor6.fa.gz",
        "ponAbe3.fa.gz",
    }
    assert dl.with_mirror(dl.RECIPES["panTro6"][0].url, "http://127.0.0.1:8000") == (
        "http://127.0.0.1:8000/goldenPath/panTro6/bigZips/panTro6.fa.gz"
    )
    with pytest.raises(ValueError, match="no download recipe 'mm10'"):
        dl.run_recipe("mm10", Path("."))
