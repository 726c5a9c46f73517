"""The house task decorator's log context: a batch's keys are summed up, not repeated on every line."""

from __future__ import annotations

import pytest

from workers.base import log_argument


@pytest.mark.parametrize(
    ("argument", "logged"),
    [
        ("1.2/1.3/1.4.dcm", "1.2/1.3/1.4.dcm"),
        ("a/b/1.dcm\na/b/2.dcm", "a/b/1.dcm (+1 more)"),
        ("\n".join(f"a/b/{n}.dcm" for n in range(200)), "a/b/0.dcm (+199 more)"),
        ("a/b/1.dcm\n\na/b/2.dcm\n", "a/b/1.dcm (+1 more)"),
        ("1.2.840.1", "1.2.840.1"),
    ],
)
def test_a_batch_is_logged_as_its_first_key_and_a_count(argument: str, logged: str) -> None:
    assert log_argument(argument) == logged
