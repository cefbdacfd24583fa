"""Why a sandbox archive was refused: one exception class (and one ``code``) per rule.

Every class derives from :class:`UnsafeArchive`; when one is raised nothing of the archive
has been written (src/hposteer/client/pilot/extract.py checks every member before writing any).
"""

from __future__ import annotations


class UnsafeArchive(ValueError):
    """The archive was refused; nothing was extracted. ``code`` names the rule it broke."""

    code = "unsafe_archive"

    def __init__(self, message: str):
        super().__init__(f"{message} [{self.code}]")


class NotGzip(UnsafeArchive):
    """The file does not start with gzip's magic bytes (plain tar, xz, bzip2, zip, empty...)."""

    code = "not_gzip"


class CorruptArchive(UnsafeArchive):
    """The gzip stream or the tar headers cannot be read, or a member's data is cut short."""

    code = "corrupt_archive"


class AbsolutePath(UnsafeArchive):
    code = "absolute_path"


class PathTraversal(UnsafeArchive):
    """A name with a ``..`` component."""

    code = "path_traversal"


class NulInName(UnsafeArchive):
    code = "nul_in_name"


class NameTooLong(UnsafeArchive):
    """A name longer than 4096 bytes, or one of its components longer than 255 bytes."""

    code = "name_too_long"


class LinkOutside(UnsafeArchive):
    """A symlink resolving outside the directory, or a hard link to anything but an earlier file."""

    code = "link_outside"


class LinkNotAllowed(UnsafeArchive):
    """A symbolic or hard link in an archive that may hold none (checkpoints)."""

    code = "link_not_allowed"


class ThroughSymlink(UnsafeArchive):
    """A member whose path goes through a symlink of the same archive."""

    code = "through_symlink"


class SpecialFile(UnsafeArchive):
    """A character or block device, a FIFO, or another member type that is not file, dir or link."""

    code = "special_file"


class SparseMember(UnsafeArchive):
    code = "sparse_member"


class SetuidBit(UnsafeArchive):
    """A member with the setuid or setgid bit."""

    code = "setuid_bit"


class TooManyMembers(UnsafeArchive):
    code = "too_many_members"


class TooLarge(UnsafeArchive):
    """More expanded bytes than allowed (member sizes, or headers that keep growing)."""

    code = "too_large"


class NameConflict(UnsafeArchive):
    """A name given twice (other than a directory repeated), or a file used as a directory."""

    code = "name_conflict"


class DestinationNotEmpty(UnsafeArchive):
    """Extraction goes only into a fresh, empty directory (two-archive attacks need a populated one)."""

    code = "destination_not_empty"
