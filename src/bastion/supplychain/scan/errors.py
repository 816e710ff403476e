"""The one exception the scanner raises: it could not scan at all.

A hostile or malformed artifact is *not* an exception: it is a `Finding` in the report, so a
caller always gets a complete, storable answer for content it could read. `ScanError` is kept
for conditions where no honest report exists: the path is missing or unreadable, an I/O error
interrupted a read, the path is neither a regular file nor a directory, or a bound the scanner
itself must respect (number of files) was exceeded. Codes are stable (`scan.not_found`,
`scan.unreadable`, `scan.io_error`, `scan.unsupported_path`, `scan.too_many_files`,
`scan.allowlist_invalid`).
"""

from __future__ import annotations

from bastion.core.errors import BastionError, ErrorKind


class ScanError(BastionError):
    """The scanner could not produce a report (as opposed to producing one with findings)."""

    default_code = "scan.error"
    default_kind = ErrorKind.INVALID
