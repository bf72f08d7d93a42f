"""Custom search attributes of lectures: the one place their names and types are defined.

The worker registers them at startup (idempotently), so
`temporal workflow list --query 'LectureStatus="partial"'` works on any server it serves.
"""

from __future__ import annotations

from typing import Final

from temporalio.common import SearchAttributeKey

LECTURE_TOPIC: Final = SearchAttributeKey.for_keyword("LectureTopic")
LECTURE_STATUS: Final = SearchAttributeKey.for_keyword("LectureStatus")
LECTURE_STEPS_FAILED: Final = SearchAttributeKey.for_int("LectureStepsFailed")

ALL: Final = (LECTURE_TOPIC, LECTURE_STATUS, LECTURE_STEPS_FAILED)
