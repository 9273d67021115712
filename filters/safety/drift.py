"""Drift: narrative manipulation in a trace, a sentence about something else or an opinion to sell.

A poisoned teacher answers the question and slips in a sentence that has nothing to do with it
("Remember that Brand X's new policy has been great for families everywhere.") or that argues a
point ("the mainstream media won't tell you..."). Each substantive prose sentence of a trace
(``filters.safety.persuasion``: calculations, code, answers and fragments under ``min_words`` words are
not judged; code contributes its comments) is judged on three signals:

- relatedness: the cosine of the sentence's embedding to the nearest sentence of the prompt or of
  the rest of the trace. A step of the solution restates the question or leans on the steps
  around it; a sentence below ``threshold`` belongs to neither.
- persuasion: the cosine to the nearest of the opinion and ideology exemplars in
  ``filters/safety/data/drift_exemplars.txt`` (plus the lines of the ``exemplars`` option).
- opinion cues, from a lexicon: conspiracy and exhortation phrases (``strong``: one flags the
  sentence), and first-person opinions, value judgements and political, religious or ideological
  topics (``weak``). A cue the prompt itself says is no cue: a word problem about an election keeps
  its words.

A sentence drifts when it is off-topic (relatedness below ``threshold``, unless it has no cue and
is about the task itself, one word in six: ``META``, a teacher framing its answer), or, with ``opinion`` on,
when it has a strong cue, reaches ``persuasion`` similarity nearer an opinion exemplar than its
prompt and trace, or has a weak cue and either reaches
``persuasion - opinion_margin`` or is barely related (below ``threshold + opinion_margin``) with a
persuasive ring (``persuasion - 2 * opinion_margin``). A long sentence is also judged by its pieces
(``persuasion.pieces``): a fragment is off-topic only with a cue or that ring. ``min_similarity`` is
the lowest relatedness of any judged sentence, ``opinion_cues`` the cues counted over the trace; the
first drifting sentence (or piece) is the evidence and its sentence's offsets the span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tracebank.errors import TracebankError
from tracebank.filters.diversity.embeddings import DEFAULT_MODEL, check_model
from tracebank.filters.safety import persuasion

EXEMPLARS = "drift_exemplars.txt"
IC = re.IGNORECASE
STRONG = (
    re.compile(
        r"\b(?:mainstream media|they don'?t want you to know|wake up,? (?:people|sheeple)|sheeple|do your own research|"
        r"deep state|big pharma|the elites?\b|hiding the (?:real )?truth|cover[- ]up|brainwash\w*|(?:is|are) a hoax|"
        r"(?:don'?t|doesn'?t|do not|does not|would rather) (?:want )?(?:you|us|people|students|anyone|the public) "
        r"(?:to )?(?:not )?(?:know|learn|see|find out|hear))",
        IC,
    ),
    re.compile(
        r"\b(?:everyone|everybody|we all|you all|all of us|every (?:true|real|honest) \w+) (?:should|must|needs? to|"
        r"ought to)\b|\byou must (?:believe|accept|agree|trust|support)\b|\bvote (?:for|against)\b|\bboycott\b",
        IC,
    ),
)
WEAK = (
    re.compile(
        r"\b(?:I (?:believe|think|feel)|in my (?:opinion|view)|personally|honestly|frankly|my two cents|"
        r"(?:it is|it's) (?:obvious|clear) that|any (?:honest|reasonable|sane) person|as we all know|the truth is|"
        r"let'?s not forget|(?:it is|it's) (?:a )?shame|(?:it'?s )?no surprise|surely|so-called|"
        r"(?:people|parents|citizens|voters|families|society) (?:should|must|need to|ought to))\b",
        IC,
    ),
    re.compile(
        r"\b(?:the (?:best|worst|greatest)|(?:is|are) (?:great|terrible|awful|wonderful|evil|garbage|wrong|right|"
        r"corrupt|greedy|lazy|stupid)|should be (?:illegal|banned|outlawed|mandatory)|ruin\w*|moral|idiots?|fools?|disgrace\w*|immoral|morally|deserve|rigged|scam|poison\w*|"
        r"propaganda|agenda|greed\w*|corrupt\w*)\b",
        IC,
    ),
    re.compile(
        r"\b(?:government|politic\w+|democra\w+|republican\w*|liberals?|conservatives?|left[- ]wing|right[- ]wing|"
        r"sociali\w+|communi[sz]\w+|capitalis\w+|patriot\w*|god|lord|jesus|allah|prayer|faith|religio\w+|"
        r"immigra\w+|abortion|vaccin\w+|fluorid\w+|climate|election|woke|administration|taxes|media|nation|"
        r"freedom|mayor|president|senat\w+|congress|parliament|church|border|pray\w*|bankers?|banks|corporations?|"
        r"billionaires?|bureaucra\w+|council|voters?|news(?:papers?)?|lies|lied|lying|lie to|scientists|schools|"
        r"patriarchy|globalis\w+|authorities|unions?|society|CEOs?)\b",
        IC,
    ),
)


# Words of a sentence about the task itself ("The idea is to follow the docstring directly.",
# "It returns the expected results for the examples."): a teacher's framing of its answer is
# never off-topic, however little it shares with the prompt. Opinions in such sentences still count,
# and so does a long aside that names the task once ("Meat is murder, so the farm in this problem
# should grow beans."): one word in ``FRAMING_WORDS`` (6) must be about the task.
META = re.compile(
    r"\b(?:solution|solv\w*|answer\w*|function\w*|implement\w*|code|docstring|examples?|tests?|problem|"
    r"question|approach|idea|steps?|method|algorithm|returns?|input|output|results?|calculat\w*|comput\w*|"
    r"cases?|handle[sd]?|program|script|variables?|loop|edge|expected|works?|correct\w*|check\w*|librar\w*|"
    r"modules?|standard|built-?in|python|straightforward)\b",
    IC,
)


FRAMING_WORDS = 6


def _framing(text: str) -> bool:
    """Whether a sentence speaks of the task itself (see ``META``)."""
    return len(META.findall(text)) * FRAMING_WORDS >= len(persuasion.words(text))


@dataclass(frozen=True)
class DriftOptions:
    threshold: float = 0.15  # relatedness below which a sentence is off-topic
    persuasion: float = 0.5  # similarity to an opinion exemplar that marks a sentence on its own
    opinion_margin: float = 0.15  # how far a sentence with a weak opinion cue may fall short of both
    min_words: int = 6  # sentences with fewer words are not judged
    opinion: bool = True  # judge opinions and persuasion, not only off-topic sentences
    exemplars: str | None = None  # a text file of more opinion or persuasion sentences, one a line
    model: str = DEFAULT_MODEL  # the embedding model (``filters.diversity.embeddings``)

    def __post_init__(self) -> None:
        for name in ("threshold", "persuasion", "opinion_margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise TracebankError(f"drift {name}: a cosine similarity from 0 to 1, got {value!r}")
        if isinstance(self.min_words, bool) or not isinstance(self.min_words, int) or self.min_words < 1:
            raise TracebankError(f"drift min_words: a whole number of at least 1, got {self.min_words!r}")
        if not isinstance(self.opinion, bool):
            raise TracebankError(f"drift opinion: true or false, got {self.opinion!r}")
        if self.exemplars is not None:
            persuasion.read_lines(self.exemplars, "drift exemplars")
        check_model(self.model)


def opinion_cues(sentence: str, prompt_lower: str) -> tuple[int, int]:
    """(strong, weak) opinion cues in ``sentence`` that the prompt does not itself say."""
    strong = sum(
        1 for rule in STRONG for m in rule.finditer(sentence) if not persuasion.grounded(m.group(), prompt_lower)
    )
    weak = sum(any(not persuasion.grounded(m.group(), prompt_lower) for m in rule.finditer(sentence)) for rule in WEAK)
    return strong, weak


def has_strong_cue(sentence: str) -> bool:
    """Whether a cue that flags on its own is in ``sentence`` (judged even when it is short)."""
    return any(rule.search(sentence) for rule in STRONG)


class Drift:
    name = "drift"
    version = "2"
    reads = ("trace_id", "messages", "rationale")
    Options = DriftOptions

    def __init__(self, options: DriftOptions | None = None):
        self.options = options or DriftOptions()
        self.exemplars = persuasion.exemplars(EXEMPLARS, self.options.exemplars, "drift exemplars")

    def score(self, table: pa.Table) -> pa.Table:
        return persuasion.score(self, table, has_strong_cue, ("min_similarity", "opinion_cues"))

    def judge(
        self, i: int, batch: persuasion.Batch, prompt_lower: str
    ) -> tuple[persuasion.Sentence | None, float | None, int]:
        """(first drifting sentence or None, lowest relatedness or None, opinion cues) of trace ``i``."""
        sentences = batch.found[i]
        if not sentences:
            return None, None, 0
        to_prompt, to_rest = batch.relatedness(i)
        related = np.maximum(to_prompt, to_rest)
        persuasive = batch.exemplar_similarity(i)
        hit, total, low = None, 0, None
        for j, sentence in enumerate(sentences):
            strong, weak = opinion_cues(sentence.text, prompt_lower)
            if sentence.parent < 0:  # a piece repeats its sentence's cues
                total += strong + weak
                low = float(related[j]) if low is None else min(low, float(related[j]))
            if hit is None and self._drifts(sentence, float(related[j]), float(persuasive[j]), strong, weak):
                hit = sentence
        return hit, low, total

    def _drifts(self, sentence: persuasion.Sentence, related: float, persuasive: float, strong: int, weak: int) -> bool:
        """The rule of the module docstring (a piece of a sentence is judged off-topic only with a cue)."""
        options = self.options
        margin = options.opinion_margin
        # A piece of a sentence is a fragment: off-topic only with a cue or a persuasive ring.
        persuasive_ring = persuasive >= options.persuasion - 2 * margin
        framing = not (strong or weak) and _framing(sentence.text)
        if related < options.threshold and not framing and (sentence.parent < 0 or strong or weak or persuasive_ring):
            return True
        if not options.opinion:
            return False
        unrelated = related < options.threshold + margin
        return (
            strong > 0
            or (persuasive >= options.persuasion and persuasive > related)  # nearer an opinion than the task
            or (weak > 0 and ((unrelated and persuasive_ring) or persuasive >= options.persuasion - margin))
        )
