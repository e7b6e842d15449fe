"""What ``msad predict`` reads and writes: image files found, drawing names, output checks, COCO ids.

Drawings mirror each image's path relative to the deepest folder holding all the inputs (``d1/a.png``,
``d1/a_2.png`` and ``d2/a.png`` give three drawings), so names are unique and do not depend on the order of
the inputs. Folders are searched recursively (the output folder excepted) and quoted glob patterns are
expanded here (``'imgs/*.jpg'``, ``'**/*.png'``); files there that are not images are counted, not read.
Nothing is ever written over an input image, and an output directory holding files that ``msad predict``
would not write is refused unless forced.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from msad.errors import DataError, RunStateError, UsageError
from msad.outputs import check_outputs

__all__ = [
    "IMAGE_SUFFIXES", "PREDICTIONS", "FoundImages", "search_images", "find_images", "relative_names", "drawing_names", "check_output_dir",
    "coco_ids",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: The results file ``msad predict`` writes in its output directory.
PREDICTIONS = "predictions.json"
#: Prefix of the folder a run stages its drawings in (removed when it ends).
STAGING_PREFIX = ".msad-predict-"


@dataclass
class FoundImages:
    """What :func:`search_images` found.

    Attributes:
        images: the image files, each once, in the order found (folders sorted, searched recursively).
        skipped: the files met in folders or matched by patterns that are not images (by suffix).
    """

    images: list[Path]
    skipped: list[Path] = field(default_factory=list)


def search_images(inputs: Sequence[str | os.PathLike], *, exclude: str | os.PathLike | None = None) -> FoundImages:
    """Image files named directly, found in the folders given (recursively, sorted), or matched by glob patterns
    (``imgs/*.jpg``, ``**/*.png``; a matched folder is searched like a named one); each file once.

    Args:
        inputs: files, folders or patterns (a path that does not exist and holds ``*``, ``?`` or ``[`` is a pattern).
        exclude: a folder never searched nor matched (the output folder, when an input folder or pattern covers it).

    Raises:
        FileNotFoundError: an input does not exist, a pattern matches nothing, or no image was found.
    """
    found = FoundImages([])
    seen: set[str] = set()
    skip_dir = os.path.realpath(exclude) if exclude is not None else None
    for item in inputs:
        paths, pattern = _expand(str(item))
        if pattern and skip_dir is not None:
            paths = [path for path in paths if not _is_within(path, skip_dir)]
        for path in paths:
            if path.is_dir():
                images, skipped = _images_under(path, skip_dir)
            else:  # a file named is read whatever its suffix; one a pattern matched only if it is an image's
                images, skipped = ([path], []) if not pattern or _is_image(path) else ([], [path])
            found.skipped.extend(skipped)
            for image in images:
                key = os.path.realpath(image)
                if key not in seen:
                    seen.add(key)
                    found.images.append(image)
    if not found.images:
        what = f" ({len(found.skipped)} other file(s), e.g. {found.skipped[0]})" if found.skipped else ""
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}{what}")
    return found


def find_images(inputs: Sequence[str | os.PathLike], *, exclude: str | os.PathLike | None = None) -> list[Path]:
    """The image files of :func:`search_images` (without the files it skipped)."""
    return search_images(inputs, exclude=exclude).images


def _is_within(path: Path, folder: str) -> bool:
    real = os.path.realpath(path)
    return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _expand(item: str) -> tuple[list[Path], bool]:
    """``([item], False)`` for an existing path, ``(the paths its glob pattern matches, sorted; True)`` for a pattern."""
    path = Path(item)
    if path.exists():
        return [path], False
    if glob.has_magic(item):
        matches = sorted(glob.glob(item, recursive=True))
        if not matches:
            raise FileNotFoundError(f"no file matches the pattern {item!r}; check the pattern or the folder you run from")
        return [Path(match) for match in matches], True
    raise FileNotFoundError(f"no such image or directory: {item}")


def _images_under(folder: Path, skip_dir: str | None) -> tuple[list[Path], list[Path]]:
    """``(images, other files)`` under ``folder``, recursively, sorted; ``skip_dir`` is not entered."""
    images: list[Path] = []
    others: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(root, d)) != skip_dir)
        for name in sorted(files):
            path = Path(root) / name
            (images if _is_image(path) else others).append(path)
    return images, others


def relative_names(files: Sequence[Path]) -> list[PurePosixPath]:
    """Each file's path relative to the deepest folder that holds them all."""
    parents = [os.path.dirname(os.path.abspath(p)) for p in files]
    root = os.path.commonpath(parents)
    return [PurePosixPath(Path(os.path.relpath(os.path.abspath(p), root)).as_posix()) for p in files]


def drawing_names(relative: Sequence[PurePosixPath]) -> list[PurePosixPath]:
    """The drawing of each image: its relative path as a PNG (``a.jpg`` → ``a.png``; ``a.jpg.png`` when another
    input would also give ``a.png``).

    Raises:
        UsageError: two inputs still get the same name.
    """
    plain = [rel.with_suffix(".png") for rel in relative]
    counts = Counter(plain)
    names = [rel.with_name(rel.name + ".png") if counts[p] > 1 else p for rel, p in zip(relative, plain, strict=True)]
    twice = [name for name, n in Counter(names).items() if n > 1]
    if twice:
        raise UsageError(f"two input images would be drawn to the same file {twice[0]}; rename one of them")
    return names


def check_output_dir(
    output: Path, files: Sequence[Path], writes: Sequence[PurePosixPath], *, force: bool,
    inputs: Sequence[tuple[str, str | os.PathLike | None]] = (),
) -> None:
    """Refuse an output directory where the run would overwrite an input or mix with files it does not write.

    Args:
        output: the output directory.
        files: the input images.
        writes: the files the run writes, relative to ``output``.
        force: accept a directory that holds other files (inputs are protected even then).
        inputs: the command's other inputs (``(what, path)``: weights, annotations), protected like the images.

    Raises:
        UsageError: an input would be overwritten, or a write would leave ``output`` through a symbolic link.
        RunStateError: ``output`` is a file, or holds files the run would not write (without ``force``).
    """
    if output.exists() and not output.is_dir():
        raise RunStateError(f"--output {output} is a file, not a directory; choose another --output")
    resolved = check_outputs(
        [("--output", output / name) for name in writes], inputs=[*inputs, *(("image", path) for path in files)],
        within=output, fix="choose another --output",
    )
    targets = set(map(str, resolved))
    if force or not output.is_dir():
        return
    foreign = sorted(
        path for path in output.rglob("*")
        if path.is_file() and os.path.realpath(path) not in targets
        and not any(part.startswith(STAGING_PREFIX) for part in path.relative_to(output).parts)
    )
    if foreign:
        raise RunStateError(
            f"--output {output} holds {len(foreign)} file(s) msad predict would not write (e.g. "
            f"{foreign[0].relative_to(output)}); choose an empty or new --output, or pass --force to write beside them"
        )


def coco_ids(
    annotations: str | os.PathLike, relative: Sequence[PurePosixPath], class_names: Sequence[str]
) -> tuple[list[int], list[int]]:
    """``(image id of each input, category id of each label)`` from a COCO annotation file.

    An input matches the image whose ``file_name`` equals its relative path, else the only image of the same
    base name; a class matches the category of the same name.

    Raises:
        DataError: the file is not COCO annotations, an input is not among its images, or a class not among
            its categories.
    """
    path = Path(annotations)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images, categories = data["images"], data["categories"]
        by_path = {PurePosixPath(img["file_name"]).as_posix(): int(img["id"]) for img in images}
        by_category = {str(cat["name"]): int(cat["id"]) for cat in categories}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"--annotations {path}: not a readable COCO annotation file ({type(err).__name__}: {err})") from None
    by_base: dict[str, list[int]] = {}
    for name, image_id in by_path.items():
        by_base.setdefault(PurePosixPath(name).name, []).append(image_id)
    image_ids, missing = [], []
    for rel in relative:
        image_id = by_path.get(rel.as_posix())
        if image_id is None and len(by_base.get(rel.name, [])) == 1:
            image_id = by_base[rel.name][0]
        if image_id is None:
            missing.append(rel)
        image_ids.append(image_id)
    if missing:
        raise DataError(
            f"{len(missing)} of {len(relative)} images are not in --annotations {path} (matched by file_name), "
            f"e.g. {missing[0]}"
        )
    unknown = [name for name in class_names if name not in by_category]
    if unknown:
        raise DataError(f"classes {unknown[:5]} of the weights are not categories of --annotations {path}")
    return image_ids, [by_category[name] for name in class_names]
