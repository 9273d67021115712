"""What a build spends: prices per model, token estimates, and the caps that stop a run cleanly.

Prices are USD per million tokens (input, output). The table holds list prices as published
by their providers when it was written (2025); pass ``price_in``/``price_out`` (``--price-in``,
``--price-out``) for any other model, a discount, or a self-hosted server (0). A cost cap with
no known price is refused before anything is sent: a cap that cannot be counted protects nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tracebank.builders.base import Request, Response
from tracebank.errors import TracebankError

# model -> (USD per 1M input tokens, USD per 1M output tokens)
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "deepseek-chat": (0.27, 1.10),
    "deepseek-reasoner": (0.55, 2.19),
}
BYTES_PER_TOKEN = 4  # BPE tokenizers average about 4 bytes of English per token


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, response: Response) -> float:
        """USD for one response; choices of one call (n > 1) split its prompt tokens."""
        prompt = (response.prompt_tokens or 0) / max(response.shared_by, 1)
        return (prompt * self.input_per_mtok + (response.completion_tokens or 0) * self.output_per_mtok) / 1e6


def resolve_price(model: str, local: bool, price_in: float | None, price_out: float | None) -> Price | None:
    """The price to charge: explicit flags, else 0 for local backends, else the table, else None."""
    if price_in is not None or price_out is not None:
        if price_in is None or price_out is None:
            raise TracebankError("give both --price-in and --price-out (USD per 1M input and output tokens)")
        return Price(price_in, price_out)
    if local:
        return Price(0.0, 0.0)
    known = PRICES.get(model)
    return Price(*known) if known else None


def estimate_tokens(text: str | None) -> int:
    """A token count when the server reports none: UTF-8 bytes / 4, at least 1 for any text."""
    if not text:
        return 0
    return max(1, len(text.encode()) // BYTES_PER_TOKEN)


def prompt_tokens_estimate(request: Request) -> int:
    return sum(estimate_tokens(m["content"]) + 4 for m in request.messages)  # +4: role and separators


class Budget:
    """Counts what finished responses cost and gates new requests under ``max_cost_usd``/``max_tokens``.

    ``gate`` stops yielding requests when what is spent, plus the expected cost of the requests
    in flight and of the next one, would pass a cap. Requests already in flight still finish
    and are saved, so the total can pass a cap by the spread of those few. The expected cost of
    a request is the mean of those finished so far, or its worst case (prompt plus
    ``max_new_tokens``) before any has finished.
    """

    def __init__(self, max_cost_usd: float | None, max_tokens: int | None, price: Price | None):
        if max_cost_usd is not None and price is None:
            raise TracebankError(
                "--max-cost-usd needs a price for this model: pass --price-in and --price-out "
                "(USD per 1M input and output tokens)"
            )
        self.max_cost_usd = max_cost_usd
        self.max_tokens = max_tokens
        self.price = price
        self.cost_usd = 0.0
        self.tokens = 0
        self.finished = 0  # responses charged
        self.pulled = 0  # requests let through the gate
        self.abandoned = 0  # pulled but given up on (unfinished): not in flight any more
        self.stopped: str | None = None  # the cap that stopped the run

    def charge(self, response: Response) -> float | None:
        """Count a fresh response; returns its cost (None when the price is unknown)."""
        self.finished += 1
        self.tokens += (response.prompt_tokens or 0) // max(response.shared_by, 1) + (response.completion_tokens or 0)
        if self.price is None:
            return None
        cost = self.price.cost(response)
        self.cost_usd += cost
        return cost

    def abandon(self) -> None:
        """A pulled request came back unfinished: it no longer counts as in flight."""
        self.abandoned += 1

    def _expected(self, request: Request) -> tuple[float, float]:
        if self.finished:
            return self.cost_usd / self.finished, self.tokens / self.finished
        tokens_in, tokens_out = prompt_tokens_estimate(request), request.params.max_new_tokens
        price = self.price or Price(0.0, 0.0)
        return (tokens_in * price.input_per_mtok + tokens_out * price.output_per_mtok) / 1e6, tokens_in + tokens_out

    def allows(self, request: Request) -> bool:
        """Whether sending ``request`` now is expected to stay within every cap."""
        if self.max_cost_usd is None and self.max_tokens is None:
            return True
        cost, tokens = self._expected(request)
        waiting = self.pulled - self.finished - self.abandoned + 1  # in flight, plus this one
        if self.max_cost_usd is not None and self.cost_usd + waiting * cost > self.max_cost_usd:
            self.stopped = "max_cost_usd"
        elif self.max_tokens is not None and self.tokens + waiting * tokens > self.max_tokens:
            self.stopped = "max_tokens"
        return self.stopped is None

    def gate(self, requests: Iterable[Request]) -> Iterator[Request]:
        """``requests`` while every cap allows; stops for good at the first that does not."""
        for request in requests:
            if self.stopped is not None or not self.allows(request):
                return
            self.pulled += 1
            yield request
