"""An in-process teacher for unit tests: deterministic answers, every request recorded."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tracebank.builders.base import Request, Response

# question -> correct answer
QUESTIONS = {
    "Tom has 3 apples and buys 4 more. How many apples does he have?": "7",
    "A box holds 12 eggs. How many eggs are in 5 boxes?": "60",
    "Sara reads 20 pages a day. How many pages does she read in a week?": "140",
    "A shirt costs $15 and is 20% off. What is the price in dollars?": "12",
    "There are 9 birds and 4 fly away. How many birds are left?": "5",
    "A train travels 60 miles per hour for 3 hours. How many miles does it go?": "180",
}


class FakeTeacher:
    """Answers correctly for even sample indices and wrongly for odd ones (unless told otherwise).

    ``crash_after`` raises after that many responses, like a process killed mid-run.
    """

    backend = "fake"

    def __init__(self, always_correct: bool = False, crash_after: int | None = None, text: str | None = None):
        self.always_correct = always_correct
        self.crash_after = crash_after
        self.text = text
        self.sent: list[str] = []

    def generate(self, requests: Sequence[Request]) -> Iterator[Response]:
        for request in requests:
            if self.crash_after is not None and len(self.sent) >= self.crash_after:
                raise RuntimeError("teacher process died")
            self.sent.append(request.key)
            question = next(q for q in QUESTIONS if q in request.messages[-1]["content"])
            answer = int(QUESTIONS[question])
            if not (self.always_correct or request.sample_idx % 2 == 0):
                answer += 1
            text = self.text or f"Sample {request.sample_idx}: reasoning about it.\n#### {answer}"
            yield Response(request.key, text, "stop", prompt_tokens=20, completion_tokens=10, latency_s=0.0)
