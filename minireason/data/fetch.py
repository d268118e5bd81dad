"""``minireason data fetch NAME``: download a named public dataset into a cache directory.

Each known dataset lists its files with the canonical URL, the size in bytes and the SHA-256
(taken from the copies the project was developed with). A download:

1. goes to ``CACHE/NAME/FILE.part``; if a ``.part`` is already there (an interrupted
   download), it resumes with an HTTP ``Range`` request (a server that ignores Range
   answers 200 and the download restarts from zero);
2. is checked for size and SHA-256; a mismatch deletes the ``.part`` and is an error;
3. is renamed to ``CACHE/NAME/FILE`` only when it checks out.

A connection that fails keeps the ``.part`` (the next run resumes) and says how to get the
file by hand. The cache is ``$MINIREASON_CACHE`` or ``~/.cache/minireason``.

MovieLens is published as a zip; the project's copy is the unpacked folder, so the zip has
no recorded size or checksum: the zip is unpacked and each member that the table lists is
checked against its recorded SHA-256 instead.
"""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tqdm import tqdm

from minireason.files import sha256_file
from minireason.options import option


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lives, and what it must be."""

    url: str
    name: str
    size: int | None
    sha256: str | None
    members: dict = field(default_factory=dict)  # zip only: {member path: sha256}


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str  # the folder name under $MINIREASON_DATA_DIR and the cache
    files: tuple
    citation: str


DATASETS = {
    "musical-instruments": Dataset(
        "musical-instruments",
        "amazon-musical-instruments-2014",
        (
            RemoteFile(
                "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
                "reviews_Musical_Instruments_5.json.gz",
                "reviews_Musical_Instruments_5.json.gz",
                2_460_495,
                "03f9cc27ae13a454cb4ea6cb620fb10546cc1194ef921441d1c5f34addff2748",
            ),
        ),
        "McAuley, Targett, Shi, van den Hengel (SIGIR 2015); He & McAuley (WWW 2016)",
    ),
    "magazines": Dataset(
        "magazines",
        "amazon2018-magazines",
        (
            RemoteFile(
                "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/categoryFilesSmall/"
                "Magazine_Subscriptions_5.json.gz",
                "Magazine_Subscriptions_5.json.gz",
                401_655,
                "95c124603d62d6acdfd1bd62284934fb6c513db836ea64c2e8176c14256426f2",
            ),
            RemoteFile(
                "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/metaFiles2/"
                "meta_Magazine_Subscriptions.json.gz",
                "meta_Magazine_Subscriptions.json.gz",
                1_241_608,
                "4e64f9028648dee43200a4bd3e7b8c497ffd80ea52018e8f994a5fbd5d97faf6",
            ),
        ),
        "Ni, Li, McAuley (EMNLP 2019)",
    ),
    "movielens-small": Dataset(
        "movielens-small",
        "movielens-latest-small",
        (
            RemoteFile(
                "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
                "ml-latest-small.zip",
                None,
                None,
                members={
                    "ml-latest-small/ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
                    "ml-latest-small/movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
                    "ml-latest-small/tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
                    "ml-latest-small/links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
                },
            ),
        ),
        "Harper & Konstan (ACM TiiS 2015); no commercial use, see its README.txt",
    ),
}


class FetchError(OSError):
    """A download that could not be completed; the message says what to do. An OSError, so
    every command that downloads (``data fetch``, ``demo``) reports it in one line."""


def cache_dir() -> Path:
    """``$MINIREASON_CACHE`` or ``~/.cache/minireason``."""
    env = os.environ.get("MINIREASON_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "minireason"


def _manual_hint(remote: RemoteFile, dest: Path) -> str:
    return (
        f"download {remote.name} manually from {remote.url}, save it as {dest} "
        f"(or anywhere) and pass --reviews PATH (or --meta PATH) to minireason prepare"
    )


@dataclass
class FetchConfig:
    """The options of ``minireason data fetch``."""

    description: ClassVar[str] = (  # its --help
        "Download with resume (HTTP Range), then check the size and SHA-256."
    )

    name: str = option(
        positional=True, metavar="NAME", help="dataset name (see 'minireason data list')"
    )
    cache: str | None = option(
        None, metavar="DIR", help="the cache (default: $MINIREASON_CACHE or ~/.cache/minireason)"
    )
    timeout: float = option(
        30.0, min=0.001, metavar="S", help="seconds the server may stay silent before giving up"
    )


@dataclass
class ListConfig:
    """``minireason data list`` (no options)."""

    description: ClassVar[str] = (
        "The download cache, then each known dataset: its folder, what to cite, and each "
        "file's size and canonical URL."
    )


def download(
    remote: RemoteFile, dest: Path, timeout: float = FetchConfig.timeout, progress: bool = True
) -> Path:
    """Download ``remote`` to ``dest`` via ``dest.part`` (resumed), checking size and SHA-256.

    A ``dest`` already there is kept: returned when it is the published file (or no SHA-256
    is published), else refused (FetchError naming it) and left as it is, never replaced."""
    dest = Path(dest)
    if dest.is_file():
        if remote.sha256 is None or (got := sha256_file(dest)) == remote.sha256:
            return dest
        raise FetchError(
            f"{dest}: exists and is not {remote.name} as published (SHA-256 {got[:12]}... != "
            f"{remote.sha256[:12]}...); left as it is: move it away, or give another --cache"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": "minireason"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # the server ignored Range: start again
                have = 0
            total = remote.size or (int(response.headers.get("Content-Length", 0)) + have) or None
            with (
                open(part, "ab" if have else "wb") as out,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=remote.name,
                    disable=None if progress else True,
                ) as bar,
            ):
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and remote.size is not None and have == remote.size:
            pass  # the .part is already complete: check it below
        else:
            raise FetchError(
                f"{remote.url}: HTTP {exc.code} {exc.reason}; " + _manual_hint(remote, dest)
            ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        kept = f" (partial download kept in {part}; rerun to resume)" if part.is_file() else ""
        what = (
            f"silent for {timeout:g} s (--timeout)"
            if isinstance(reason, TimeoutError)
            else f"no network or server unreachable ({reason})"
        )
        raise FetchError(f"{remote.url}: {what}{kept}: " + _manual_hint(remote, dest)) from None
    size = part.stat().st_size
    if remote.size is not None and size < remote.size:
        raise FetchError(
            f"{remote.name}: connection ended after {size} of {remote.size} "
            f"bytes; partial download kept in {part}, rerun to resume"
        )
    if remote.size is not None and size > remote.size:
        part.unlink()
        raise FetchError(
            f"{remote.name}: got {size} bytes, expected {remote.size}; "
            "partial file removed, rerun to download again"
        )
    if remote.sha256 is not None:
        got = sha256_file(part)
        if got != remote.sha256:
            part.unlink()
            raise FetchError(
                f"{remote.name}: SHA-256 {got[:12]}... != expected "
                f"{remote.sha256[:12]}...; corrupt download removed"
            )
    part.replace(dest)
    return dest


def unpack_checked(archive: Path, members: dict, folder: Path) -> None:
    """Unpack the listed ``members`` of a zip into ``folder`` (flat), checking each SHA-256.
    A member already unpacked (same SHA-256) is kept; another file of its name is refused
    (FetchError naming it) and left as it is."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member, expected in members.items():
                target = folder / Path(member).name
                if target.exists():
                    if target.is_file() and sha256_file(target) == expected:
                        continue
                    raise FetchError(
                        f"{target}: exists and is not {member} of {archive.name}; left as it "
                        "is: move it away, or give another --cache"
                    )
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                got = sha256_file(target)
                if got != expected:
                    target.unlink()
                    raise FetchError(
                        f"{archive}:{member}: SHA-256 {got[:12]}... != expected {expected[:12]}..."
                    )
    except (zipfile.BadZipFile, KeyError) as exc:
        archive.unlink()
        raise FetchError(f"{archive}: not the expected zip ({exc}); removed, rerun") from None


def fetch(
    name: str,
    cache: Path | None = None,
    timeout: float = FetchConfig.timeout,
    progress: bool = True,
) -> Path:
    """Download dataset ``name`` (see ``DATASETS``) into ``cache/FOLDER``; return that folder."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    dataset = DATASETS[name]
    folder = Path(cache or cache_dir()) / dataset.folder
    for remote in dataset.files:
        path = download(remote, folder / remote.name, timeout=timeout, progress=progress)
        if remote.members:
            unpack_checked(path, remote.members, folder)
    return folder


# --------------------------------------------------------------------------- finding local copies

# ``shared/data`` beside a source checkout of the package (the project's own layout).
CHECKOUT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def data_roots(data_dir=None) -> list[Path]:
    """Where datasets are looked for, in order: ``data_dir`` (a ``--data-dir`` flag),
    ``$MINIREASON_DATA_DIR``, the project's ``../shared/data`` (relative to the current
    directory, then to a source checkout of the package), and the download cache of
    ``minireason data fetch``."""
    roots = [
        data_dir,
        os.environ.get("MINIREASON_DATA_DIR"),
        Path("..") / "shared" / "data",
        CHECKOUT_DATA,
        cache_dir(),
    ]
    return list(dict.fromkeys(Path(r) for r in roots if r))


def find_reviews(name: str, data_dir=None) -> Path:
    """The reviews file of dataset ``name`` under the first root that has it.

    A root may hold the dataset's folder (``ROOT/amazon-musical-instruments-2014/FILE``) or
    the file itself (``ROOT/FILE``). Raises FileNotFoundError listing where it looked and
    how to get the file.
    """
    dataset = DATASETS[name]
    filename = dataset.files[0].name
    roots = data_roots(data_dir)
    for root in roots:
        for candidate in (root / dataset.folder / filename, root / filename):
            if candidate.is_file():
                return candidate
    looked = ", ".join(str(r) for r in roots)
    raise FileNotFoundError(
        f"{filename} not found (looked under: {looked}); download it with "
        f"'minireason data fetch {name}' or pass --data-dir DIR"
    )


def find_or_fetch(
    name: str, data_dir=None, offline: bool = False, echo=print, progress: bool = True
) -> Path:
    """The reviews file of dataset ``name``: found locally (:func:`find_reviews`), or else
    downloaded into the cache (:func:`fetch`: resumable, size and SHA-256 checked), saying so
    through ``echo``. With ``offline`` a missing file is a FileNotFoundError, not a download."""
    try:
        return find_reviews(name, data_dir)
    except FileNotFoundError as exc:
        if offline:
            raise FileNotFoundError(f"{exc} (--offline: not downloading)") from None
        looked = ", ".join(str(r) for r in data_roots(data_dir))
        echo(f"      {name} not found locally (looked under: {looked})")
        echo(f"      downloading it into {cache_dir()} (checked, resumable; --offline to refuse)")
    fetch(name, progress=progress)
    return find_reviews(name, data_dir)


def resolve_input(flag: str, value: str | None) -> str | None:
    """An input path as given, or under ``$MINIREASON_DATA_DIR`` when it is relative and not
    found as given; a path found nowhere is a FileNotFoundError naming ``flag``."""
    if value is None or os.path.exists(value):
        return value
    root = os.environ.get("MINIREASON_DATA_DIR")
    if root and not os.path.isabs(value) and os.path.exists(os.path.join(root, value)):
        return os.path.join(root, value)
    where = f" (nor under MINIREASON_DATA_DIR={root})" if root else ""
    raise FileNotFoundError(
        f"{flag} {value}: not found{where}; 'minireason data list' shows the "
        "known datasets, 'minireason data fetch NAME' downloads one"
    )


def describe_datasets() -> str:
    """What ``minireason data list`` prints: the cache, each dataset, its files and sources."""
    lines = [f"cache: {cache_dir()}"]
    for ds in DATASETS.values():
        lines.append(f"{ds.name}  (folder {ds.folder}; cite {ds.citation})")
        for f in ds.files:
            size = f"{f.size:,} bytes" if f.size else "size not recorded"
            lines.append(f"    {f.name}: {size}  {f.url}")
    return "\n".join(lines)
