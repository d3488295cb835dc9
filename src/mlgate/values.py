"""Values a user passes on the command line, checked where they enter (argparse `type=`):
a bad one is a one-line usage error naming the argument, before any work or remote call."""

from __future__ import annotations

import argparse
import re

from mlgate.errors import shown

# registry[:port]/path@sha256:<64 hex>: what `deploy` runs and the deployment records keep
IMAGE_BY_DIGEST = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+"
    r"@sha256:[0-9a-f]{64}"
)
# a git ref name or a required check's name: not empty, no control characters, no `..`
NAME = re.compile(r"[^\x00-\x1f\x7f]+")


def _refuse_unless(ok: bool, value: str, expected: str) -> None:
    if not ok:
        raise argparse.ArgumentTypeError(f"{shown(value)} is not {expected}")


def image_by_digest(value: str) -> str:
    _refuse_unless(
        bool(IMAGE_BY_DIGEST.fullmatch(value)),
        value,
        "an image by digest: REGISTRY/REPO@sha256:<64 hex digits>",
    )
    return value


def optional_image_by_digest(value: str) -> str:
    """An image by digest, or empty where the command records none."""
    return value if value == "" else image_by_digest(value)


def version(value: str) -> str:
    """A registered model version: ASCII digits only (`str.isdigit` takes ' 1', '١', '²')."""
    ok = value.isascii() and value.isdigit() and int(value) >= 1
    _refuse_unless(ok, value, "a model version: a number such as 3 (ASCII digits)")
    return value


def optional_version(value: str) -> str:
    """A model version, or empty where the command takes it from elsewhere."""
    return value if value == "" else version(value)


# the alias history keeps 30 entries in one MLflow tag (at most 100,000 characters): 30 notes
# of this length fit with room to spare; a longer note failed after the alias had moved
MAX_NOTE = 2_000


def note(value: str) -> str:
    _refuse_unless(len(value) <= MAX_NOTE, value, f"a note of at most {MAX_NOTE:,} characters")
    return value


def port(value: str) -> int:
    ok = value.isascii() and value.isdigit() and 1 <= int(value) <= 65535
    _refuse_unless(ok, value, "a TCP port: 1 to 65535")
    return int(value)


def name(value: str) -> str:
    """A branch or check name: not empty or blank, no control characters, no `..`."""
    ok = bool(value.strip()) and bool(NAME.fullmatch(value)) and ".." not in value
    _refuse_unless(ok, value, "a usable name: not empty, no control characters or '..'")
    return value
