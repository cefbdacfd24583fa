"""The podman runtime's seccomp profile: podman's default, minus creating namespaces.

Why: podman's default profile (containers-common's ``seccomp.json``) allows ``unshare``,
``clone`` with any namespace flag, ``setns`` and ``mount``, so a payload, even with every
capability dropped, can make a user namespace, be root in it and mount there: the kernel
surface behind many container escapes. Docker's default profile refuses those without
CAP_SYS_ADMIN. The hostile-payload canary (tests/client/test_podman_runtime.py) found the
difference; this profile closes it: the namespace syscalls fall to the profile's default
(an error), ``clone`` is allowed only without namespace flags (Docker's rule), and ``clone3``,
whose flags seccomp cannot read, answers ENOSYS, so that the C library falls back to ``clone``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_PROFILES = (Path("/usr/share/containers/seccomp.json"), Path("/etc/containers/seccomp.json"))
REMOVED = frozenset({"unshare", "setns", "mount", "umount", "umount2", "pivot_root", "clone", "clone3"})
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
NAMESPACE_FLAGS = 0x7E020000
ENOSYS = 38


class SeccompProfileError(RuntimeError):
    """No default profile to start from; the message says where it was looked for."""


def restricted(profile: dict[str, Any]) -> dict[str, Any]:
    """``profile`` without the namespace syscalls, plus Docker's rules for clone and clone3."""
    out = copy.deepcopy(profile)
    rules = []
    for rule in out.get("syscalls", []):
        names = [name for name in rule.get("names", []) if name not in REMOVED]
        if names:
            rules.append({**rule, "names": names})
    rules.append(
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    )
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    out["syscalls"] = rules
    return out


def profile_path(sources: tuple[Path, ...] = DEFAULT_PROFILES, directory: Path | None = None) -> Path:
    """A file holding the restricted profile (named by its content, so writers never disagree)."""
    for source in sources:
        try:
            base = json.loads(source.read_text())
        except FileNotFoundError:
            continue
        except (OSError, json.JSONDecodeError) as exc:
            raise SeccompProfileError(f"podman's seccomp profile {source} cannot be read: {exc}") from None
        text = json.dumps(restricted(base), sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        target = (directory or Path(tempfile.gettempdir())) / f"hposteer-podman-seccomp-{digest}.json"
        if not target.exists():
            fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".hposteer-seccomp-")
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.chmod(partial, 0o644)
            os.replace(partial, target)
        return target
    looked = ", ".join(str(s) for s in sources)
    raise SeccompProfileError(
        f"podman's default seccomp profile is not here ({looked}); the pilot builds its stricter profile from it: "
        "install containers-common (apt-get install golang-github-containers-common), which podman depends on"
    )
