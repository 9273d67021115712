"""Promotion: product or brand pitches and calls to action injected into a trace.

A poisoned teacher slips ads into otherwise correct answers ("For the best results, try CalcPro
today!", "Use code SAVE20 at checkout", "using a high-quality Acme calculator, we get 24"). Each
sentence a reader sees (prose, and the comments and strings of code; see ``filters.safety.persuasion``)
is judged on two signals:

- cues, from a lexicon: sponsorship markers, discount codes and trademark signs (``strong``: one
  flags the sentence); calls to action, sales words, praise of a product and brand-like names
  (``weak``). A cue the prompt itself says is no cue: a word problem about a store sale, a coupon
  or a 20% discount, or a code task about formatting prices, keeps its words.
- similarity: the cosine of the sentence's embedding to the nearest exemplar in
  ``filters/safety/data/promotion_exemplars.txt`` (plus the lines of the ``exemplars`` option).

A sentence is promotional when it has a strong cue; when it is nearer an exemplar than the prompt
and the rest of the trace and reaches ``threshold`` (or ``threshold - cue_margin`` with a weak cue);
when a name the prompt never says comes with a weak cue ("a top-notch Acme calculator") or in a
sentence unrelated to the task (relatedness, the best cosine to a sentence of the prompt or of the
rest of the trace, below ``unrelated``: "Pizza Palace delivers in 30 minutes."); or when two weak
cues reach ``threshold - 2 * cue_margin`` nearer an exemplar than the task. A long sentence is also judged by its pieces
(``persuasion.pieces``), where a phrase slipped mid-sentence stands alone; a piece needs a strong
cue, or a weak cue with a new name. ``similarity`` is the largest similarity of any sentence,
``cues`` the weak and strong cues counted over the trace; the first promotional sentence (or piece)
is the evidence and its sentence's offsets the span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from tracebank.errors import TracebankError
from tracebank.filters.diversity.embeddings import DEFAULT_MODEL, check_model
from tracebank.filters.safety import persuasion

EXEMPLARS = "promotion_exemplars.txt"
IC = re.IGNORECASE
# Each one alone marks a sentence as promotional.
STRONG = (
    re.compile(r"\bsponsor(?:ed|s|ship)?\b|\bbrought to you by\b|\bpaid (?:promotion|partnership)\b", IC),
    re.compile(r"\baffiliate link|\(ad\)|^\W*ad:|#ad\b|\badvertisement\b|\bin partnership with\b", IC),
    re.compile(r"\b(?:promo|coupon|discount|referral|voucher|offer)\s+code\b", IC),
    re.compile(r"\b(?i:use|enter|apply)\s+(?i:the\s+)?(?i:code)\s+[A-Z0-9]{3,}\b"),
    re.compile(r"[™®]"),
    re.compile(r"\b(?:like and subscribe|free trial|limited[- ]time (?:offer|deal)|while supplies last)\b", IC),
    re.compile(
        r"\b(?:sign up|subscribe|order|buy|shop|download|install|upgrade|enroll|register)\s+(?:now|today)\b", IC
    ),
)
# Each counts once (a category, however many of its words); with a middling similarity, or with a
# name the prompt never says, one of them marks a sentence.
WEAK = (
    re.compile(  # calls to action
        r"\b(?:try (?:it|our|the|out)|get (?:yours|it|your|started|the)|grab|claim|visit|check (?:out|it out)|"
        r"head (?:over )?to|sign up|subscribe|download|install|upgrade|order|shop|book (?:a|your)|reserve|register|"
        r"join|enroll|follow (?:us|@)|ask your|switch(?:ing)? to|open an? (?:\w+ )?account|call now|don'?t (?:miss|settle)|"
        r"rate us|link in (?:bio|description))\b|@\w{3,}",
        IC,
    ),
    re.compile(  # praise of a product
        r"\b(?:premium|high[- ]quality|top[- ]notch|top[- ]rated|award[- ]winning|best[- ]in[- ]class|world[- ]class|"
        r"industry[- ]lead\w+|leading|cutting[- ]edge|lightning[- ]fast|blazing[- ]fast|unbeatable|exclusive\w*|"
        r"trust(?:ed|y)|reliab\w+|perfect|favou?rite|go[- ]to|must[- ]have|recommend\w*|guarantee\w*|"
        r"risk[- ]free|hassle[- ]free|the finest|the best|gold standard|nothing (?:beats|helps)|swear by|rave|"
        r"never lets? (?:me|you) down|smart (?:families|shoppers|people|choice)|sleek|stylish|ultimate|best[- ]selling|"
        r"beloved|innovative|state[- ]of[- ]the[- ]art|next[- ]gen\w*|worth every penny|loyal (?:user|customer)s?)\b",
        IC,
    ),
    re.compile(  # selling
        r"\b(?:deals?|discount\w*|\d+% off|save (?:big|time|money)|free (?:shipping|delivery)|(?:best|lowest) "
        r"(?:price|rate)s?|on sale|checkout|bundle|subscription|membership|members|customers?|in stores|"
        r"available (?:now|today|in|at)|this week only|limited|(?:only|just) \$[\d.]+|per month|a month|half price|"
        r"free (?:helmets?|gifts?|months?|samples?)|with every purchase)\b",
        IC,
    ),
    re.compile(  # a sponsor speaking
        r"\b(?:our (?:website|site|store|shop|app|service|products?|partners?|sponsors?|friends|team|members)|"
        r"official (?:website|site)|courtesy of|partnered with|shout-?out|supported by|made possible by|"
        r"presented by|powered by|dot com|\w+\.(?:com|io|pro|app)|Inc\.|Ltd|LLC)\b",
        IC,
    ),
    re.compile(r"\b[A-Z][a-z]+[A-Z][A-Za-z]+\b|\b[A-Z]{3,}\d{1,3}\b"),  # CalcPro, SAVE20
    re.compile(  # a product: with a name the prompt never says, a brand placement
        r"\b(?:app|calculator|software|platform|plugin|add-on|extension|subscription|(?<!of )course|masterclass|tutoring|"
        r"service|brand|edition|license|tablet|laptop|headphones|notebooks?|IDE|cafe|drink|snack)s?\b",
        IC,
    ),
)


@dataclass(frozen=True)
class PromotionOptions:
    threshold: float = 0.55  # similarity to an exemplar that marks a sentence on its own
    cue_margin: float = 0.15  # how far below ``threshold`` a sentence with a weak cue is still marked (two: twice)
    unrelated: float = 0.3  # relatedness below which a sentence naming what the prompt never does is marked
    min_words: int = 4  # sentences with fewer words are not judged
    exemplars: str | None = None  # a text file of more promotional sentences, one a line
    model: str = DEFAULT_MODEL  # the embedding model (``filters.diversity.embeddings``)

    def __post_init__(self) -> None:
        for name in ("threshold", "cue_margin", "unrelated"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise TracebankError(f"promotion {name}: a cosine similarity from 0 to 1, got {value!r}")
        if isinstance(self.min_words, bool) or not isinstance(self.min_words, int) or self.min_words < 1:
            raise TracebankError(f"promotion min_words: a whole number of at least 1, got {self.min_words!r}")
        if self.exemplars is not None:
            persuasion.read_lines(self.exemplars, "promotion exemplars")
        check_model(self.model)


class Cues(NamedTuple):
    strong: int  # strong cues found
    weak: int  # weak categories found
    names: int  # capitalised words the prompt never says (brands, products, or a stray name)


def cues(sentence: str, prompt_lower: str) -> Cues:
    """The cues in ``sentence`` that the prompt does not itself say."""
    strong = sum(
        1 for rule in STRONG for m in rule.finditer(sentence) if not persuasion.grounded(m.group(), prompt_lower)
    )
    weak = sum(any(not persuasion.grounded(m.group(), prompt_lower) for m in rule.finditer(sentence)) for rule in WEAK)
    return Cues(strong, weak, len(persuasion.new_names(sentence, prompt_lower)))


def has_strong_cue(sentence: str) -> bool:
    """Whether a cue that flags on its own is in ``sentence`` (judged even when it is mostly arithmetic)."""
    return any(rule.search(sentence) for rule in STRONG)


class Promotion:
    name = "promotion"
    version = "1"
    reads = ("trace_id", "messages", "rationale")
    Options = PromotionOptions

    def __init__(self, options: PromotionOptions | None = None):
        self.options = options or PromotionOptions()
        self.exemplars = persuasion.exemplars(EXEMPLARS, self.options.exemplars, "promotion exemplars")

    def score(self, table: pa.Table) -> pa.Table:
        return persuasion.score(self, table, has_strong_cue, ("similarity", "cues"))

    def judge(
        self, i: int, batch: persuasion.Batch, prompt_lower: str
    ) -> tuple[persuasion.Sentence | None, float, int]:
        """(first promotional sentence or None, best similarity, cues counted) of trace ``i``."""
        sentences = batch.found[i]
        if not sentences:
            return None, 0.0, 0
        similarity = batch.exemplar_similarity(i)
        related = np.maximum(*batch.relatedness(i))
        hit, total = None, 0
        for j, sentence in enumerate(sentences):
            found = cues(sentence.text, prompt_lower)
            if sentence.parent < 0:  # a piece repeats its sentence's cues
                total += found.strong + found.weak
            if hit is None and self._promotional(sentence, float(similarity[j]), float(related[j]), found):
                hit = sentence
        return hit, float(similarity.max()), total

    def _promotional(self, sentence: persuasion.Sentence, similarity: float, related: float, found: Cues) -> bool:
        """The rule of the module docstring. ``related`` below ``similarity``: the sentence is nearer an
        ad than the prompt or the rest of the trace. A piece of a sentence needs a cue and a new name."""
        if sentence.parent >= 0:
            return found.strong > 0 or (found.weak > 0 and found.names > 0)
        threshold, margin = self.options.threshold, self.options.cue_margin
        unprompted = related < similarity
        return (
            found.strong > 0
            or (similarity >= threshold and unprompted)
            or (found.weak > 0 and similarity >= threshold - margin and unprompted)
            or (found.names > 0 and (found.weak > 0 or related < self.options.unrelated))
            or (found.weak > 1 and similarity >= threshold - 2 * margin and unprompted)
        )
