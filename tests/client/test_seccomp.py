"""The podman runtime's seccomp profile: podman's default without the syscalls that make namespaces.

Its effect inside a real podman container is checked by the hostile-payload canary
(tests/client/test_podman_runtime.py::test_a_hostile_payload_is_contained)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hposteer.client.pilot.runtimes.seccomp import NAMESPACE_FLAGS, SeccompProfileError, profile_path, restricted

BASE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "syscalls": [
        {"names": ["read", "unshare", "clone", "clone3", "mount", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["setns"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
    ],
}


def allowed(profile: dict[str, object], name: str) -> list[dict[str, object]]:
    rules = profile["syscalls"]
    assert isinstance(rules, list)
    return [r for r in rules if name in r["names"] and r["action"] == "SCMP_ACT_ALLOW"]


def test_namespace_syscalls_fall_to_the_default_and_clone_keeps_dockers_rule() -> None:
    profile = restricted(BASE)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert allowed(profile, "read") and allowed(profile, "write"), "everything else is kept"
    for name in ("unshare", "setns", "mount", "clone3"):
        assert allowed(profile, name) == [], name
    [clone] = allowed(profile, "clone")
    assert clone["args"] == [{"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in profile["syscalls"]
    assert BASE["syscalls"][0]["names"][1] == "unshare", "the input is not modified"


def test_the_profile_file_is_named_by_its_content(tmp_path: Path) -> None:
    source = tmp_path / "seccomp.json"
    source.write_text(json.dumps(BASE))
    first = profile_path((tmp_path / "missing.json", source), tmp_path)
    assert profile_path((source,), tmp_path) == first
    assert json.loads(first.read_text()) == restricted(BASE)
    source.write_text(json.dumps({**BASE, "defaultAction": "SCMP_ACT_KILL"}))
    assert profile_path((source,), tmp_path) != first


def test_no_default_profile_is_an_error_saying_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(SeccompProfileError, match="install containers-common"):
        profile_path((tmp_path / "none.json",), tmp_path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SeccompProfileError, match="cannot be read"):
        profile_path((tmp_path / "bad.json",), tmp_path)
