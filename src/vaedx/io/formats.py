"""Format detection by content, because medical files are often misnamed or have no extension at all.

The extension is only trusted for DICOM, whose files may legally lack the 128-byte preamble and the
'DICM' marker (and then have no magic number).
"""

from __future__ import annotations

import gzip
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Literal

from vaedx.errors import InputError
from vaedx.io._files import describe, existing_file, read_head

Format = Literal["png", "jpeg", "tiff", "dicom", "nifti", "npz"]

_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}
_KNOWN_SUFFIXES = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
    ".nii": "NIfTI", ".gz": "gzip/NIfTI", ".npz": "npz",
}
# Value representations that can follow the first tag of an explicit-VR DICOM stream.
_VRS = set(
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV"
    .split()
)


def detect_format(path: str | Path) -> Format:
    """Name the format of ``path`` from its first bytes; raise InputError when it is none of ours."""
    p = existing_file(path)
    head = read_head(p, 1024)
    fmt = _by_content(p, head)
    if fmt is not None:
        return fmt
    if p.suffix.lower() in _DICOM_SUFFIXES:
        return "dicom"  # read_dicom still checks that the content parses as DICOM
    suffix = "".join(p.suffixes[-2:]).lower() if p.name.lower().endswith(".nii.gz") else p.suffix.lower()
    if suffix in _KNOWN_SUFFIXES or suffix == ".nii.gz":
        kind = "NIfTI" if suffix == ".nii.gz" else _KNOWN_SUFFIXES[suffix]
        raise InputError(f"unsupported file type: the name says {kind} but the content is not (corrupt?)", p)
    kind = suffix or "without extension"
    raise InputError(f"unsupported file type '{kind}': expected PNG, JPEG, TIFF, DICOM, NIfTI or npz", p)


def _by_content(p: Path, head: bytes) -> Format | None:
    if head[128:132] == b"DICM":
        # First: a DICOM file's 128-byte preamble may legally hold a TIFF header ("dual personality"),
        # and the DICOM reading is the one the file exists for.
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):  # classic and BigTIFF
        return "tiff"
    if _is_nifti_header(head):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):
        return "nifti" if _is_nifti_header(_gunzip_head(p)) else None
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "npz" if _zip_holds_npy(p) else None
    if _is_bare_dicom(head, p):
        return "dicom"
    return None


def _is_nifti_header(h: bytes) -> bool:
    """NIfTI-1 (sizeof_hdr 348 + magic at 344) or NIfTI-2 (540 + magic at 4), either byte order."""
    if len(h) < 348:
        return False
    for order in "<>":
        size = struct.unpack(order + "i", h[:4])[0]
        if size == 348 and h[344:348] in (b"n+1\0", b"ni1\0"):
            return True
        if size == 540 and h[4:8] in (b"n+2\0", b"ni2\0"):
            return True
    return False


def _gunzip_head(p: Path) -> bytes:
    try:
        with gzip.open(p, "rb") as f:
            return f.read(544)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"corrupt gzip data ({describe(e)})", p) from e


def _zip_holds_npy(p: Path) -> bool:
    try:
        with zipfile.ZipFile(p) as z:
            return any(n.endswith(".npy") for n in z.namelist())
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"corrupt zip/npz archive ({describe(e)})", p) from e


def _is_bare_dicom(head: bytes, p: Path) -> bool:
    """A DICOM stream without preamble starts with a little-endian tag of group 0002 or 0008."""
    if len(head) < 8:
        return False
    group = struct.unpack("<H", head[:2])[0]
    if group not in (0x0002, 0x0008):
        return False
    if head[4:6].decode("ascii", "replace") in _VRS:
        return True
    length = struct.unpack("<I", head[4:8])[0]  # implicit VR: 4-byte value length, always even
    return group == 0x0008 and length % 2 == 0 and length < p.stat().st_size
