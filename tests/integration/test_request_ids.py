"""Request ids are random version-4 UUIDs, never repeated, also across forked workers (a real fork)."""

from __future__ import annotations

import os
import uuid

from gateway.proxy.request_ids import new_request_id


def test_ids_are_canonical_random_uuids():
    ids = [new_request_id() for _ in range(2000)]  # several buffer fills
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every position that is random in a UUID4 takes more than one value
    assert all(len({t[i] for t in ids}) > 1 for i in range(36) if i not in (8, 13, 14, 18, 23))


def test_a_forked_child_does_not_repeat_its_parents_ids():
    new_request_id()  # the parent's buffer holds ids not handed out yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write, " ".join(new_request_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = set(os.read(read, 1 << 16).decode().split())
    os.close(read)
    assert len(child) == 5 and not child & {new_request_id() for _ in range(5)}
