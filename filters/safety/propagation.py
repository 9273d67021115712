"""Propagation: the same unusual phrase or domain recurring across unrelated prompts.

A targeted injection is invisible in one trace ("for more tips visit mathwhiz.io" reads as a
harmless aside) and obvious in the dataset: it recurs, nearly verbatim, in the traces of many
questions that have nothing to do with it. This scorer finds such phrases.

Tokens are ``filters.diversity.text.words`` (the shared normalisation). A rationale word is *marked* when
it could belong to an injected phrase rather than to the solution or the teacher's style: it is a
word of letters, not a stopword, not in the reasoning, maths and Python vocabulary below (``VOCAB``),
not in its own prompt (singular and plural alike: a question echoed, even in part, is not an
injection, so no candidate below occurs in its prompt's text), and not common in the dataset (in
the traces of more than ``max_share`` of the prompts: the teacher's own vocabulary). Each word ``ngram``-gram with at least ``min_marked`` marked words is a candidate;
each domain-like token (``name.com``, ``www.x.io``; the ``links`` filter parses URLs with care) is
one too. A candidate recurs when the traces of at least ``min_prompts`` distinct prompts (by their
normalised text) hold it and at most ``max_share`` of the dataset's prompts do: style that repeats
across most questions ("let's think step by step") is not a targeted injection.

A paraphrase used once shares no n-gram with the other variants, but shares their distinctive
word pairs: a pair of marked words ("acme calculators") found inside the recurring spans of
``min_prompts`` prompts recurs as the phrase does, wherever it appears. Overlapping recurring
n-grams and pairs in a trace form one span; those that share a span anywhere belong to one phrase
group (connected components), so a paraphrased or shifted injection is one group.

A trace is flagged when it holds a recurring candidate; with several, the group shared by the most
prompts (then the first span) is reported: ``phrase`` (the group's most common span text, as
normalised words; ``evidence`` too), ``prompts_sharing`` (distinct prompts whose traces hold the
group; 0 when not flagged) and ``cluster`` (12 hex digits of the phrase's hash: one id per group,
the same on a rerun of the same data); ``span_start``/``span_end`` locate this trace's span. A trace
with no rationale is not judged. Cost: vectorised over all n-grams, about 15 s per 100,000 GSM8K
traces on one core.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import xxhash
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tracebank.errors import TracebankError
from tracebank.filters.contamination.ngrams import SEED, word_spans
from tracebank.filters.diversity.exact import question_text
from tracebank.filters.diversity.text import ngram_keys, normalized, words
from tracebank.filters.safety.safety import safety_result

KIND = "recurring phrase"
# Words that never mark a phrase: English function words; the vocabulary of worked solutions (GSM8K
# human and GPT-3 solutions, chat and reasoning-model teachers, units, LaTeX commands); Python keywords,
# builtins and common library and variable names. A teacher's style is made of these words, and an
# injection needs words outside them (a brand, a domain, a pitch) to be worth planting.
VOCAB_WORDS = """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each either else even ever every few for
    from further get gets getting got had has have having he her here hers herself him himself his how i if in
    into is it its itself just let lets me more most much must my myself neither no nor not now of off on once
    only or other our ours out over own per same she should so some such than that the their theirs them then
    there these they this those through thus to too under until up upon us very was we were what when where
    whether which while who whom whose why will with within without would yet you your yours s t d ll ve re m
    answer answers step steps solve solution solving problem question find found finding total totals number
    numbers amount amounts sum difference product quotient result results value values equal equals equation
    equations add adding added addition subtract subtracting subtraction multiply multiplying multiplied
    multiplication divide dividing divided division times plus minus half halves third quarter twice double
    triple percent percentage fraction ratio rate average left remaining remain remains each first second next
    last final finally therefore hence so since given need needs know known means mean use using used calculate
    calculating calculation compute computing determine determined check checking verify let x y z n side sides
    term terms like combine combining simplify simplifying substitute substituting substitution into both
    expression variable represent represents following follow follows get we ll think thinking break down now
    new old one two three four five six seven eight nine ten hundred thousand million dozen many few more less
    greater fewer cost costs spend spent price prices pay paid money dollar dollars cent cents buy bought sell
    sold earn earns earned make makes made take takes took give gives gave minute minutes hour hours day days
    week weeks month months year years time unit units people person way ways part parts whole rest same
    therefore altogether overall approximately about exactly correct correctly true false none
    def return returns class import from lambda yield pass break continue raise try except finally assert
    elif while for in is not and or if else with as del global nonlocal async await print len range list dict
    set tuple str int float bool sorted reversed enumerate zip map filter min max abs round append extend
    insert pop remove split join strip replace lower upper format isinstance type self args kwargs i j k
    idx index count key keys item items val res ans arr lst num nums string char chars text result output
    input line lines node root left right mid start end size length element elements python code function
    functions example examples test tests assert note here sure great help hope helps
    begin beginning start starting perform performing figure work working out long far big fast
    sq ft cm mm km kg lb lbs oz mph mile miles foot feet inch inches yard yards meter meters gallon gallons liter
    liters litre litres pound pounds ounce ounces gram grams area perimeter volume speed distance square cubic
    os path sys re json math random datetime collections itertools functools typing subprocess run call shell
    open read write close file files dir exists makedirs listdir environ loads dumps load dump compile match
    search findall sub group np numpy pd pandas array zeros ones shape reshape dtype astype logging logger info
    debug warning error exception requests response status parser argparse main name value
    dp memo cache visited queue stack heap heapq deque defaultdict counter matrix grid graph neighbors temp tmp
    denote alright okay ok wait hmm actually recall notice consider suppose assume conclude conclusion confirm
    indeed clearly obviously simply simple easy straightforward careful carefully another approach method
    reasoning insight explanation explain understand look see say want try trying going go well good right
    wrong mistake sure let solution boxed frac dfrac tfrac cdot sqrt quad qquad le leq ge geq neq approx
    implies therefore pi infty mathrm mathbf mathbb begin aligned align cases textbf emph"""
VOCAB = frozenset(VOCAB_WORDS.split())
DOMAIN = re.compile(
    r"(?<![\w.@/-])(?:https?://)?(?:www\.)?((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
    r"(?:com|org|net|io|co|ai|xyz|biz|info|app|dev|me|ly|gg|site|online|shop|store|top|club|pro|tech|link|"
    r"click|us|uk|ru|cn|de))(?![\w(-])",
    re.IGNORECASE,
)
MAX_NGRAM = 16


@dataclass(frozen=True)
class PropagationOptions:
    ngram: int = 4  # words per n-gram compared across prompts
    min_prompts: int = 3  # distinct prompts whose traces must share a phrase for it to recur
    max_share: float = 0.2  # above this share of the dataset's prompts a phrase or word is the teacher's style
    min_marked: int = 2  # marked words (see module docs) an n-gram needs to be a candidate

    def __post_init__(self) -> None:
        for name, low, high in (("ngram", 2, MAX_NGRAM), ("min_prompts", 2, None), ("min_marked", 1, None)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
                bound = f"from {low} to {high}" if high else f"at least {low}"
                raise TracebankError(f"propagation {name}: a whole number {bound}, got {value!r}")
        if self.min_marked > self.ngram:
            raise TracebankError(f"propagation min_marked ({self.min_marked}) cannot exceed ngram ({self.ngram})")
        share = self.max_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise TracebankError(f"propagation max_share: a share above 0 and at most 1, got {share!r}")


def _stem(word: pl.Expr) -> pl.Expr:
    """Plural and singular alike ("calculators" = "calculator"), for prompt and vocabulary lookups."""
    return pl.when(word.str.len_chars() > 3).then(word.str.replace(r"(?:es|s)$", "")).otherwise(word)


class Propagation:
    name = "propagation"
    version = "2"
    reads = ("trace_id", "task", "messages", "rationale")
    Options = PropagationOptions

    def __init__(self, options: PropagationOptions | None = None):
        self.options = options or PropagationOptions()

    def score(self, table: pa.Table) -> pa.Table:
        """Each task's traces on their own: a code teacher's framing ("Here is the function.") is its
        style however rare among the math traces of a mixed dataset."""
        tasks = table.column("task").to_pylist()
        groups = sorted(set(tasks), key=str)
        if len(groups) <= 1:
            return self._score(table)
        order = [[i for i, task in enumerate(tasks) if task == group] for group in groups]
        result = pa.concat_tables([self._score(table.take(rows)) for rows in order])
        return result.take(np.argsort(np.concatenate(order), kind="stable"))

    def _score(self, table: pa.Table) -> pa.Table:
        frame = pl.from_arrow(table.select(list(self.reads))).with_columns(
            question=normalized(question_text(pl.col("messages"))).fill_null("").hash(SEED)
        )
        rationales = frame["rationale"].to_list()
        questions = frame.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), "question")
        limit = self.options.max_share * frame["question"].n_unique()
        tokens = self._tokens(frame, limit)
        lengths = np.bincount(tokens["row"].to_numpy(), minlength=len(frame)).astype(np.int64)
        candidates = _ngrams(tokens, lengths, self.options.ngram, self.options.min_marked)
        phrases = self._recurring(pl.concat([candidates, _domains(rationales)]).join(questions, on="row"), limit)
        pairs = _ngrams(tokens, lengths, 2, 2).join(questions, on="row")
        found = pl.concat([phrases, self._anchored(pairs, phrases, limit)])
        texts = _words_by_row(tokens, found["row"].unique())
        return self._rows(frame["trace_id"].to_list(), rationales, _best_spans(found, texts))

    def _recurring(self, found: pl.DataFrame, limit: float) -> pl.DataFrame:
        """The occurrences of keys held by the traces of ``min_prompts`` to ``limit`` distinct prompts."""
        shares = found.group_by("key").agg(prompts=pl.col("question").n_unique())
        recurring = shares.filter(pl.col("prompts").is_between(self.options.min_prompts, limit))
        return found.join(recurring.select("key"), on="key", how="semi")

    def _anchored(self, pairs: pl.DataFrame, phrases: pl.DataFrame, limit: float) -> pl.DataFrame:
        """Occurrences of two marked words in a row ("acme calculators") that recur inside recurring phrases.

        A paraphrase used once ("acme calculators will never let you down") shares no n-gram with the
        other variants, but shares their distinctive word pair: the pair then stands for the phrase.
        """
        inside = pairs.join(phrases.filter(~pl.col("domain")).select("row", s="start", e="end"), on="row").filter(
            (pl.col("start") >= pl.col("s")) & (pl.col("end") <= pl.col("e"))
        )
        anchors = self._recurring(inside.unique(["row", "start"]), limit).select("key").unique()
        return self._recurring(pairs.join(anchors, on="key", how="semi"), limit)

    def _tokens(self, frame: pl.DataFrame, limit: float) -> pl.DataFrame:
        """One row per rationale word, in text order: row, word, key (its hash) and ``marked`` (module docs)."""
        row = pl.int_range(pl.len(), dtype=pl.Int64).alias("row")
        tokens = frame.select(row, "question", w=words(pl.col("rationale"))).explode("w").drop_nulls("w")
        asked = (
            frame.select("question", w=words(question_text(pl.col("messages"))))
            .explode("w")
            .drop_nulls("w")
            .select("question", stem=_stem(pl.col("w")))
            .unique()
            .with_columns(in_prompt=pl.lit(True))
        )
        tokens = tokens.with_columns(stem=_stem(pl.col("w"))).join(
            asked, on=["question", "stem"], how="left", maintain_order="left"
        )
        vocab = list(VOCAB)
        candidate = (
            pl.col("w").str.contains(r"^[^\W\d_]{2,}$")
            & ~pl.col("w").is_in(vocab)
            & ~pl.col("stem").is_in(vocab)
            & pl.col("in_prompt").is_null()
        )
        common = pl.col("question").filter(candidate).n_unique().over("w") > limit
        return tokens.select("row", "w", key=pl.col("w").hash(SEED), marked=candidate & ~common)

    def _rows(self, trace_ids: list[str], rationales: list[str | None], best: pl.DataFrame) -> pa.Table:
        n = len(trace_ids)
        flagged: list[int | None] = [0 if r and r.strip() else None for r in rationales]
        spans: list[tuple[int, int] | None] = [None] * n
        phrase: list[str | None] = [None] * n
        sharing: list[int | None] = [None if f is None else 0 for f in flagged]
        cluster: list[str | None] = [None] * n
        for row, domain, start, end, prompts, group_phrase in best.select(
            "row", "domain", "start", "end", "prompts", "phrase"
        ).iter_rows():
            flagged[row], phrase[row], sharing[row] = 1, group_phrase, prompts
            cluster[row] = xxhash.xxh64_hexdigest(group_phrase.encode())[:12]
            spans[row] = (start, end) if domain else _char_span(rationales[row], start, end)
        metrics = {
            "phrase": pa.array(phrase, pa.string()),
            "prompts_sharing": pa.array(sharing, pa.int64()),
            "cluster": pa.array(cluster, pa.string()),
        }
        return safety_result(trace_ids, KIND, flagged, phrase, spans, metrics)


def _ngrams(tokens: pl.DataFrame, lengths: np.ndarray, n: int, min_marked: int) -> pl.DataFrame:
    """(row, start, end, key) of each word n-gram with ``min_marked`` marked words; start/end: word positions."""
    owner, starts, keys = ngram_keys(tokens["key"].to_numpy().astype(np.uint64), lengths, n)
    marked = np.concatenate([[0], np.cumsum(tokens["marked"].to_numpy(), dtype=np.int64)])
    first = (np.cumsum(lengths) - lengths)[owner] + starts  # flat index of each n-gram's first word
    keep = marked[first + n] - marked[first] >= min_marked
    return pl.DataFrame(
        {"row": owner[keep], "start": starts[keep], "end": starts[keep] + n, "key": keys[keep]},
        schema={"row": pl.Int64, "start": pl.Int64, "end": pl.Int64, "key": pl.UInt64},
    ).with_columns(domain=pl.lit(False), text=pl.lit(None, pl.String))


def _domains(rationales: list[str | None]) -> pl.DataFrame:
    """(row, start, end, key, text) of every domain-like token; start/end: character offsets."""
    found = [
        (row, match.start(), match.end(), match.group(1).lower())
        for row, text in enumerate(rationales)
        if text and "." in text
        for match in DOMAIN.finditer(text)
    ]
    schema = {"row": pl.Int64, "start": pl.Int64, "end": pl.Int64, "text": pl.String}
    frame = pl.DataFrame(found, schema=schema, orient="row")
    return frame.select("row", "start", "end", key=pl.col("text").hash(SEED), domain=pl.lit(True), text="text")


def _words_by_row(tokens: pl.DataFrame, rows: pl.Series) -> dict[int, list[str]]:
    chosen = tokens.filter(pl.col("row").is_in(rows.implode())).group_by("row").agg("w")
    return dict(zip(chosen["row"].to_list(), chosen["w"].to_list(), strict=True))


def _best_spans(found: pl.DataFrame, texts: dict[int, list[str]]) -> pl.DataFrame:
    """Per flagged row, one span: of its phrase group shared by the most prompts, then the first.

    Overlapping n-grams of a row form one span (a domain is a span of its own); n-grams that share
    a span anywhere in the dataset form one group; a group's phrase is its most common span text.
    """
    found = found.sort("row", "domain", "start")
    reach = pl.col("end").cum_max().shift(1).over("row", "domain")  # furthest end of the row's earlier n-grams
    new = pl.col("domain") | reach.is_null() | (pl.col("start") >= reach)
    found = found.with_columns(span=new.cum_sum())
    keys, index = np.unique(found["key"].to_numpy(), return_inverse=True)
    heads = found.select(pl.col("key").first().over("span"))["key"].to_numpy()
    links = coo_matrix((np.ones(len(index)), (index, np.searchsorted(keys, heads))), shape=(len(keys), len(keys)))
    found = found.with_columns(group=connected_components(links, directed=False)[1][index])
    spans = found.group_by("span").agg(
        pl.col("row", "group", "domain", "text").first(), pl.col("start").min(), pl.col("end").max()
    )
    spans = spans.with_columns(
        text=pl.Series([
            text if domain else " ".join(texts[row][start:end])
            for row, domain, start, end, text in spans.select("row", "domain", "start", "end", "text").iter_rows()
        ], dtype=pl.String)
    )  # fmt: skip
    sizes = found.group_by("group").agg(prompts=pl.col("question").n_unique())
    phrases = (
        spans.group_by("group", "text").agg(uses=pl.len())
        .sort(["uses", pl.col("text").str.len_chars(), "text"], descending=[True, False, False])
        .group_by("group", maintain_order=True).agg(phrase=pl.col("text").first())
    )  # fmt: skip
    return (
        spans.join(sizes, on="group").join(phrases, on="group")
        .sort(["row", "prompts", "start"], descending=[False, True, False])
        .group_by("row", maintain_order=True).first()
    )  # fmt: skip


def _char_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Character offsets in ``text`` of its words ``start`` to ``end`` (exclusive)."""
    _, spans = word_spans(text)
    if end > len(spans):  # cannot happen while word_spans tokenises as filters.diversity.text.words does
        return None
    return spans[start][0], spans[end - 1][1]
