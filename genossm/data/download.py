"""Download recipes for reference genomes: resumable HTTP downloads with checksums.

``hg38`` is UCSC's hg38 FASTA and the HyenaDNA / Basenji BED of train / valid / test intervals;
``panTro6``, ``panPan3``, ``gorGor6``, ``ponAbe3`` are UCSC's chimpanzee, bonobo, gorilla and orangutan
assemblies; ``great-apes`` is all five FASTA files. UCSC publishes an ``md5sum.txt`` beside each genome: it is
fetched and checked. Every finished file's SHA-256 is appended to ``SHA256SUMS`` in the output folder.

An interrupted download leaves ``<file>.part``; running the same command again resumes it (HTTP range request).
An existing file is never overwritten: it is checked against the published checksum and kept.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

UCSC = "https://hgdownload.soe.ucsc.edu/goldenPath"
TIMEOUT_S = 60
BLOCK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file to download; ``md5_list`` is the URL of an ``md5sum.txt`` that lists it."""

    url: str
    md5_list: str | None = None

    @property
    def name(self) -> str:
        return Path(urllib.parse.urlparse(self.url).path).name


def _ucsc(assembly: str) -> RemoteFile:
    return RemoteFile(f"{UCSC}/{assembly}/bigZips/{assembly}.fa.gz", f"{UCSC}/{assembly}/bigZips/md5sum.txt")


APES = ("panTro6", "panPan3", "gorGor6", "ponAbe3")
RECIPES: dict[str, list[RemoteFile]] = {
    "hg38": [_ucsc("hg38"), RemoteFile("https://storage.googleapis.com/basenji_barnyard2/sequences_human.bed")],
    **{assembly: [_ucsc(assembly)] for assembly in APES},
    "great-apes": [_ucsc("hg38"), *(_ucsc(a) for a in APES)],
}


def with_mirror(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host replaced by ``mirror``'s (same path), e.g. a local copy of UCSC."""
    if not mirror:
        return url
    base = urllib.parse.urlparse(mirror)
    return urllib.parse.urlparse(url)._replace(scheme=base.scheme, netloc=base.netloc).geturl()


class _AlreadyComplete(Exception):
    """The server says the requested range starts at the end of the file."""


def _open(url: str, offset: int = 0) -> http.client.HTTPResponse:
    """GET ``url`` from byte ``offset`` on; network failures become one clear ``ConnectionError``."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            raise _AlreadyComplete from None
        raise ConnectionError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        host = urllib.parse.urlparse(url).netloc
        raise ConnectionError(f"cannot reach {host} ({reason}); check the network connection (offline?)") from None


def published_md5(file: RemoteFile, mirror: str | None) -> str | None:
    """The MD5 that ``file.md5_list`` gives for the file, or None when there is no list."""
    if file.md5_list is None:
        return None
    with _open(with_mirror(file.md5_list, mirror)) as response:
        listing = response.read().decode("utf-8", "replace")
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("*") == file.name:
            return fields[0].lower()
    raise ValueError(f"{file.md5_list} does not list {file.name}")


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def download(file: RemoteFile, out_dir: Path, mirror: str | None = None) -> Path:
    """Download ``file`` into ``out_dir`` (resuming a ``.part``), check it, and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dest, part = out_dir / file.name, out_dir / (file.name + ".part")
    md5 = published_md5(file, mirror)
    if dest.exists():
        if md5 is not None and file_digest(dest, "md5") != md5:
            raise ValueError(f"{dest} exists but its MD5 differs from the published {md5}; move it away to download")
        print(f"{dest} is already there" + (" (checksum verified)" if md5 else ""))
        return dest
    url = with_mirror(file.url, mirror)
    try:
        _fetch_into(url, part)
    except ConnectionError as err:
        kept = part.stat().st_size if part.exists() else 0
        if kept:
            raise ConnectionError(f"{err}; {kept:,} bytes kept in {part}: run the command again to resume") from None
        raise
    if md5 is not None and (got := file_digest(part, "md5")) != md5:
        part.unlink()
        raise ValueError(f"{url}: MD5 {got} differs from the published {md5}; the download was removed, try again")
    os.replace(part, dest)
    with open(out_dir / "SHA256SUMS", "a") as sums:
        sums.write(f"{file_digest(dest, 'sha256')}  {dest.name}\n")
    return dest


def _fetch_into(url: str, part: Path) -> None:
    """Download ``url`` into ``part``, continuing from its current size when the server allows ranges."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset)
    except _AlreadyComplete:
        return
    resumed = response.status == 206
    length = response.headers.get("Content-Length")
    total = (offset if resumed else 0) + int(length) if length else None
    with (
        response,
        open(part, "ab" if resumed else "wb") as out,
        tqdm(
            total=total, initial=offset if resumed else 0, unit="B", unit_scale=True, desc=part.stem, disable=None
        ) as bar,
    ):
        try:
            while block := response.read(BLOCK):
                out.write(block)
                bar.update(len(block))
        except OSError as err:
            raise ConnectionError(f"{url}: the download broke off ({err})") from None
    if total is not None and part.stat().st_size != total:
        raise ConnectionError(f"{url}: the download stopped early")


def run_recipe(name: str, out_dir: str | Path, mirror: str | None = None) -> list[Path]:
    """Download every file of recipe ``name`` into ``out_dir``."""
    if name not in RECIPES:
        raise ValueError(f"no download recipe {name!r}; available: {', '.join(RECIPES)}")
    return [download(file, Path(out_dir), mirror) for file in RECIPES[name]]
