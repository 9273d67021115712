"""What each chunk of a rationale does: restate, reasoning, compute, verify, summary or answer.

Rules decide first, in this order (the first that fires names the kind, and ``rule`` says which):

- ``answer``: the chunk starts with a final-answer marker (``####``, "The answer is", ``\\boxed``,
  ``A:``), or is short and contains one.
- ``verify``: it opens with, or contains, a checking cue ("check", "verify", "plug back", "Wait,").
- ``compute``: it holds an arithmetic step (``filters.chunking.steps``) or a numeric equation.
- ``reasoning`` (derivation): it defines a variable or states an equation ("Let x be", "3x = 33").
- ``restate``: it computes nothing, has no number the question lacks, and either opens with a
  restating cue ("The problem asks", "We are given", "We need to find") or repeats the question (most
  of its words are the question's, or — in the first two chunks — its embedding is close to the
  question's).
- ``summary`` (transitions and summaries): it computes nothing and either opens with a summary or
  transition cue ("In summary", "Now let's", "Next,"), or concludes ("So", "Therefore") with only
  numbers stated before, or states only numbers found before, one of them an earlier result.
- otherwise ``reasoning`` — unless, with embeddings on, the chunk is clearly closer to the exemplars
  of another kind than to the reasoning exemplars (``rule: exemplar``).

The features behind each label (cue, steps, new numbers, question overlap, similarities) are kept
with the chunk as JSON. The existing ``train sft --chunk-kinds`` names (reasoning, compute, restate,
summary) keep their meaning; ``verify`` and ``answer`` are new. :data:`NON_REASONING` are the kinds
Skip-Thinking's skip variant leaves out.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import orjson

KINDS = ("restate", "reasoning", "compute", "verify", "summary", "answer")
NON_REASONING = ("restate", "summary")

ANSWER_CUE = re.compile(
    r"####|\\boxed|(?:^|\n)\s*A:\s|\b(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)|\bso the answer\b", re.IGNORECASE
)
VERIFY_CUE = re.compile(
    r"^\W*(?:wait\b|hmm\b|let me (?:re-?)?(?:check|verify|confirm|double[- ]check)|to (?:check|verify|confirm))"
    r"|\b(?:double[- ]check\w*|verif(?:y|ied|ies|ication)|sanity check|check(?:ing)? (?:this|that|the|our|my)"
    r"|plug(?:ging)? (?:\w+ )?back|substitut\w+ (?:\w+ )?back|which (?:matches|checks out)|is consistent)\b",
    re.IGNORECASE,
)
RESTATE_CUE = re.compile(
    r"^\W*(?:the (?:problem|question) (?:asks|says|states|tells|is asking|wants)|we (?:are|'re) (?:given|told|asked)"
    r"|we (?:need|want|have) to (?:find|figure out|determine|calculate|compute|know)|given (?:that|:)"
    r"|let(?:'s| us) (?:understand|restate|read)|i need to (?:find|figure out|determine))",
    re.IGNORECASE,
)
SUMMARY_CUE = re.compile(
    r"^\W*(?:in summary|to summari[sz]e|in conclusion|so far|putting (?:it|this|everything) (?:all )?together"
    r"|overall|let(?:'s| us| me) (?:solve|think|start|begin|break|work|go|now)|now,? (?:let(?:'s| us)|we)"
    r"|next,? (?:let(?:'s| us)|we)|first,? (?:let(?:'s| us)|we)|step by step)",
    re.IGNORECASE,
)
CONCLUDES = re.compile(r"^\W*(?:so|therefore|thus|hence|in total|altogether|all together|that means)\b", re.IGNORECASE)
NUMERIC_EQUATION = re.compile(
    r"\d%?\s*(?:[-+*/×÷x^]|\\times|\\cdot)\s*[\d($].*?(?:=|≈)|(?:=|≈)\s*[\d$(].*?[-+*/×÷^]\s*\d"
)
ALGEBRA = re.compile(r"(?<![\w'])[a-zA-Z](?![\w'])\s*[-+*/^]\s*[\d(]|\d\s*[-+*/^]\s*[a-zA-Z](?![\w'])")
DEFINES = re.compile(r"^\W*(?:let\s+\w+\s+(?:be|=|denote|represent)|suppose|assume|if we let)\b", re.IGNORECASE)
NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
WORDS = re.compile(r"[a-z]{3,}")

# Exemplars per kind, written for this purpose (not taken from any dataset), embedded once.
EXEMPLARS = {
    "restate": ["The problem asks how many apples are left.", "We are given the price and the number of items.",
                "We need to find the total cost."],
    "reasoning": ["Since each box holds the same amount, the total depends on the number of boxes.",
                  "This means the remaining part must be shared equally.", "Let x be the number of tickets sold."],
    "verify": ["Let me check this result by substituting it back.", "Verifying: the two parts add up to the total.",
               "Wait, that does not match; let me recompute."],
    "summary": ["So far we have found both amounts.", "Now let's find the total.", "Let's solve this step by step."],
}  # fmt: skip


@dataclass(frozen=True)
class ChunkFacts:
    text: str
    index: int  # position in the trace
    tokens: int
    steps: int  # checked arithmetic steps in the chunk
    question: str
    seen_numbers: frozenset[str]  # numbers of the question and of earlier chunks
    question_numbers: frozenset[str]
    prompt_similarity: float | None  # cosine similarity with the question's embedding
    exemplar_similarity: dict[str, float] | None  # best similarity with each kind's exemplars


def numbers(text: str) -> set[str]:
    return {
        n.replace(",", "").rstrip("0").rstrip(".") if "." in n else n.replace(",", "") for n in NUMBER.findall(text)
    }


def question_overlap(text: str, question: str) -> float:
    """The fraction of the chunk's words (3+ letters) that the question has."""
    words = WORDS.findall(text.lower())
    asked = set(WORDS.findall(question.lower()))
    return sum(w in asked for w in words) / len(words) if words else 0.0


def _restates(facts: ChunkFacts, new: int, overlap: float, restate_similarity: float) -> bool:
    if new or facts.steps or numbers(facts.text) - facts.question_numbers:  # an earlier result is no restatement
        return False
    if RESTATE_CUE.search(facts.text):
        return True
    close = facts.prompt_similarity is not None and facts.prompt_similarity >= restate_similarity
    return overlap >= 0.7 or (facts.index <= 1 and close)


def _rule(facts: ChunkFacts, new: int, overlap: float, restate_similarity: float) -> tuple[str, str]:
    text = facts.text.strip()
    if ANSWER_CUE.match(text) or (facts.tokens <= 30 and ANSWER_CUE.search(text)):
        return "answer", "answer_marker"
    if VERIFY_CUE.search(text):
        return "verify", "verify_cue"
    if facts.steps or NUMERIC_EQUATION.search(text):
        return "compute", "arithmetic"
    if DEFINES.search(text) or ALGEBRA.search(text) or "=" in text:  # "Let x be the price", "3x = 33"
        return "reasoning", "derivation"
    if _restates(facts, new, overlap, restate_similarity):
        return "restate", "restate_cue" if RESTATE_CUE.search(text) else "repeats_question"
    if SUMMARY_CUE.search(text):
        return "summary", "summary_cue"
    if CONCLUDES.search(text) and not new and facts.index > 0:
        return "summary", "concludes"
    if not new and numbers(text) - facts.question_numbers:  # "She makes $224 a day": an earlier result again
        return "summary", "states_result"
    return "reasoning", "default"


def label(facts: ChunkFacts, restate_similarity: float = 0.8, exemplar_margin: float = 0.1) -> tuple[str, str]:
    """(kind, features JSON) of one chunk."""
    new = len(numbers(facts.text) - facts.seen_numbers)
    overlap = question_overlap(facts.text, facts.question)
    kind, rule = _rule(facts, new, overlap, restate_similarity)
    sims = facts.exemplar_similarity
    if rule == "default" and sims:
        best = max(sims, key=lambda k: (sims[k], k))
        if (
            best != "reasoning"
            and sims[best] >= sims["reasoning"] + exemplar_margin
            and not (best == "restate" and new)
        ):
            kind, rule = best, "exemplar"
    features = {
        "rule": rule, "tokens": facts.tokens, "steps": facts.steps, "new_numbers": new,
        "question_overlap": round(overlap, 2),
        "prompt_similarity": None if facts.prompt_similarity is None else round(facts.prompt_similarity, 2),
        "exemplar_similarity": None if sims is None else {k: round(v, 2) for k, v in sorted(sims.items())},
    }  # fmt: skip
    return kind, orjson.dumps(features, option=orjson.OPT_SORT_KEYS).decode()


@functools.lru_cache(maxsize=4)
def exemplar_vectors(model: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(kinds, kind of each exemplar row, exemplar vectors) for ``model``, embedded once per process."""
    from tracebank.filters.diversity.embeddings import get_embedder

    kinds = tuple(EXEMPLARS)
    owners = np.array([i for i, kind in enumerate(kinds) for _ in EXEMPLARS[kind]])
    vectors = get_embedder(model).encode([text for kind in kinds for text in EXEMPLARS[kind]])
    return kinds, owners, vectors


def exemplar_similarities(vectors: np.ndarray, model: str) -> list[dict[str, float]]:
    """For each chunk vector, its best cosine similarity with each kind's exemplars."""
    kinds, owners, exemplars = exemplar_vectors(model)
    sims = vectors @ exemplars.T
    best = np.stack([sims[:, owners == i].max(axis=1) for i in range(len(kinds))], axis=1)
    best = np.round(best, 3)
    return [dict(zip(kinds, row.tolist(), strict=True)) for row in best]
