"""Synthetic LaMP-format data with a planted, documented per-user signal.

Why this exists: the official LaMP files cannot be reached from our machines, yet tests,
offline demos and benchmarks need data of exactly the official shape. :func:`generate`
writes the official files for any of lamp1..lamp7 into a folder, and everything
downstream (loader, retrievers, methods, metrics) treats them like real LaMP data. The
loader marks them synthetic through the ``synthetic.json`` marker that the callers write
(``tasks.sources.write_synthetic_marker``), so tables never mix them with real numbers.

Files
-----
``{train,dev,test}_questions.json``: a JSON list of ``{"id", "input", "profile"}``
records (plus ``"user_id"`` in time-based mode); ``{train,dev}_outputs.json``:
``{"task": "LaMP_k", "golds": [{"id", "output"}]}``; test has no outputs, as in LaMP.
Inputs are rendered with the task's official ``input_template``. Every profile item has
an ``id``, a ``date`` (``YYYY-MM-DD``) and the task's ``item_fields``; LaMP-3 scores are
strings ``"1"``..``"5"``. Profile items are listed in no particular order, so a method
that wants recency must read the dates. All ids (questions and items) are unique digit
strings within a folder; the first digit names the split.

Sizes: ``n_users`` gives the number of *questions* per split (default
:data:`DEFAULT_SIZES`: 2,000 train and 300 dev questions, LaMP-like for a trained method
and enough dev questions to tell methods apart). In time-based mode a user asks 1-3
questions at increasing points of one timeline, so the later questions' profiles contain
the earlier ones' items (and share a ``user_id``); in user-based mode every question has
its own user and no ``user_id``. Each profile holds ``profile_size = (min, max)`` items
(default :data:`DEFAULT_PROFILE_SIZE`). The word lists live in
:mod:`tasks.synthetic_words`; this module is the engine. Files are written record by record, each item
serialized once per user, so LaMP-scale sets (thousands of questions x hundreds of items)
take seconds and little memory.

Determinism: one ``random.Random`` per user, seeded from (version, seed, task, split,
user number); no clocks, no hash-order dependence. The same arguments give
byte-identical files; another seed gives other data. :data:`GENERATOR_VERSION` changes
whenever the output for a given seed changes, and is recorded with results.

Planted signals
---------------
Every user gets latent traits once. The traits shape both the user's profile items and
the gold of the user's questions, so a method that reads the profile can recover them;
the input alone carries the task's generic content only, so a non-personal model is above
chance and below a personal one. Noise keeps every signal short of deterministic.

* **lamp1** (citation): an author works in a home field (90% of papers) and favours one
  method family (75%) and a second one (15%); the family is named in every abstract but
  only in half of the titles. Both candidate references study the question paper's
  problem; the related one uses the author's family (80% favourite, 20% second), the
  other a family the author does not favour; its position is random. Title alone: about
  65% accuracy; the profile's method words: above 90%.
* **lamp2** (movie tagging): each user has 1-2 ranked favourite tags. A description
  describes three tags equally well (one cue sentence each); 80% of the time one of them
  is a favourite. The user tags the movie with their highest-ranked favourite among the
  three (90%), else with a random one of the three. Description alone: about 1/3; the
  user's most frequent profile tag: about 2/3; both together: about 0.8.
* **lamp3** (rating): each rater is harsh (-1, 35%), neutral (0, 30%) or generous
  (+1, 35%). The review text expresses a sentiment of 1..5 stars; the score is
  sentiment + bias (10% of the time one more step of noise), clipped to 1..5. The
  profile shows the offset between what a rater writes and the score they give.
* **lamp4** (news headlines): each writer has a kicker used in every headline, before or
  after it ("Analysis: ..." / "... | Analysis"), a favourite adverb (85% of headlines),
  Title Case or sentence case, and 1-2 news beats (80% of articles). The headline's facts
  come from the article; the style comes only from the profile.
* **lamp5** (paper titles): each author has a title pattern ("Towards ...",
  "...: A Closer Look"), a favourite adjective (85%), a home field and method families as
  in lamp1. The abstract names the problem and method; pattern and adjective are
  personal.
* **lamp6** (email subjects): each sender has a bracket tag ("[FYI] ...") on every
  subject; half of them sign subjects with their initials ("(DK)"), some write all
  lowercase; they mostly mail about 1-2 projects. The email names the facts only.
* **lamp7** (tweet paraphrase): each tweeter has a signature hashtag on every tweet, and
  often a catchphrase ("ngl", "just saying") at a fixed end, an emoticon, all-lowercase
  writing and favourite things to tweet about. The gold is the user's styled tweet, the
  input a neutral paraphrase without any of the markers.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from harness.api import SPLITS, TaskSpec
from tasks import synthetic_words as vocab
from tasks.lamp import LAMP2_TAGS

T = TypeVar("T")

# "4": LaMP-like default sizes (issue 14.1) and the word lists moved to tasks.synthetic_words
# (the text for a given seed is unchanged by the move; the version also seeds every user).
GENERATOR_VERSION = "4"
#: Questions per split: enough train questions to learn from, enough dev questions for
#: confidence intervals that can separate methods (issue 14: >= 2,000 and >= 300).
DEFAULT_SIZES: Mapping[str, int] = MappingProxyType({"train": 2000, "dev": 300, "test": 20})
#: Items per profile. With 1-3 questions per user this makes about 30,000 distinct history
#: items per task (train + dev + test), which a MiniLM-sized encoder reads once in minutes
#: on two cores; LaMP's own profiles are longer, the planted signal needs about 10.
DEFAULT_PROFILE_SIZE: tuple[int, int] = (10, 30)

SIGNAL_DOC: dict[str, str] = {
    "lamp1": "authors favour 1-2 method families (named in their profile abstracts); the related reference "
             "uses the author's family, the other one does not; the title names a method only half the time",
    "lamp2": "users have 1-2 favourite tags; a description fits 3 tags equally well and the user picks "
             "their favourite among them, so the profile's tag counts decide",
    "lamp3": "raters are harsh (-1), neutral or generous (+1): score = review sentiment + bias, clipped to 1..5; "
             "the profile shows each rater's offset",
    "lamp4": "writers have a kicker ('Analysis: ...' or '... | Analysis'), a favourite adverb, a casing habit "
             "and 1-2 news beats, visible in profile headlines and present in the gold",
    "lamp5": "authors have a title pattern ('Towards ...', '...: A Closer Look'), a favourite adjective, "
             "a home field and favourite methods, visible in profile titles and present in the gold",
    "lamp6": "senders put a bracket tag on every subject ('[FYI] ...'), half add their initials, some write "
             "lowercase, and they mail about 1-2 projects",
    "lamp7": "tweeters have a signature hashtag, often a catchphrase, an emoticon and all-lowercase writing; "
             "the gold is their styled tweet, the input a neutral paraphrase",
}

_SPLIT_CODE = {"train": "1", "dev": "2", "test": "3"}
_QUESTIONS_PER_USER = ((1, 2, 3), (0.5, 0.3, 0.2))  # time-based: how many questions a user asks
_FIRST_DAY = date(2008, 1, 1).toordinal()
_START_SPAN_DAYS = 8 * 365  # users start somewhere in 2008-2015 ...
_MAX_STEP_DAYS = 10  # ... and add an item every 1-10 days


@dataclass(frozen=True)
class _Entry:
    """One point of a user's timeline.

    ``item`` is the profile-item form (fields only; id and date are added by the
    writer), ``fields`` fill the task's input template when the entry is a question, and
    ``gold`` is the question's expected output.
    """

    item: dict[str, str]
    fields: Mapping[str, str]
    gold: str


class _Persona(ABC):
    """How one task's users behave: the latent traits drawn per user and what they write."""

    @abstractmethod
    def user(self, rng: random.Random) -> Any:
        """Draw one user's latent traits."""

    @abstractmethod
    def entry(self, rng: random.Random, user: Any, question: bool) -> _Entry:
        """One timeline entry of ``user``; ``question`` asks for the input fields too."""


# -- small text helpers --------------------------------------------------------------------
_SMALL_WORDS = frozenset("a an and as at by for from in of on or the to via with".split())


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _title_case(text: str) -> str:
    """Headline/paper Title Case: every word capitalized except short function words."""
    words = text.split(" ")
    return " ".join(w if i and w in _SMALL_WORDS else "-".join(_cap(p) for p in w.split("-"))
                    for i, w in enumerate(words))


def _drop_article(phrase: str) -> str:
    """Headline-ese: "the city council" -> "city council"."""
    for article in ("the ", "a ", "an "):
        if phrase.startswith(article):
            return phrase[len(article):]
    return phrase


def _third_person(verb: str) -> str:
    """The verb after a singular subject: "study" -> "studies", "warn about" -> "warns about"."""
    head, _, rest = verb.partition(" ")
    head = head[:-1] + "ies" if head.endswith("y") and head[-2:-1] not in "aeiou" else head + "s"
    return f"{head} {rest}".rstrip()


def _pick(rng: random.Random, options: Sequence[T]) -> T:
    """``rng.choice`` without its per-call overhead: picks dominate generation time."""
    return options[int(rng.random() * len(options))]


def _between(rng: random.Random, low: int, high: int) -> int:
    """A uniform integer in ``low..high`` (inclusive), cheaply."""
    return low + int(rng.random() * (high - low + 1))


def _distinct(rng: random.Random, options: Sequence[T], k: int, exclude: Sequence[T] = ()) -> list[T]:
    """``k`` different options not in ``exclude``, in random order (a cheap ``rng.sample``)."""
    out: list[T] = []
    while len(out) < k:
        option = _pick(rng, options)
        if option not in out and option not in exclude:
            out.append(option)
    return out


def _one_of(rng: random.Random, favourites: Sequence[str], everything: Sequence[str], p: float) -> str:
    """A favourite with probability ``p``, else anything: how habits show with noise."""
    return _pick(rng, favourites) if rng.random() < p else _pick(rng, everything)


# -- lamp1 and lamp5: scientific papers ----------------------------------------------------
@dataclass(frozen=True)
class _Author:
    field: str
    families: tuple[str, str]  # favourite, second
    adjective: str
    pattern: str


class _Papers(_Persona):
    """Authors of papers (lamp1 and lamp5 share them); see the module docstring."""

    def user(self, rng: random.Random) -> _Author:
        favourite, second = rng.sample(vocab.FAMILIES, 2)
        return _Author(field=_pick(rng, vocab.FIELD_NAMES), families=(favourite, second),
                       adjective=_pick(rng, vocab.PAPER_ADJECTIVES), pattern=_pick(rng, vocab.TITLE_PATTERNS))

    def family(self, rng: random.Random, author: _Author) -> str:
        roll = rng.random()
        return author.families[0] if roll < 0.75 else author.families[1] if roll < 0.9 else _pick(rng, vocab.FAMILIES)

    def paper(self, rng: random.Random, author: _Author) -> tuple[dict[str, str], str]:
        """An author's paper as a profile item, and its problem."""
        field = author.field if rng.random() < 0.9 else _pick(rng, vocab.FIELD_NAMES)
        problems, data = vocab.FIELDS[field]
        problem = _pick(rng, problems)
        method = _pick(rng, vocab.METHODS[self.family(rng, author)])
        adjective = author.adjective if rng.random() < 0.85 else _pick(rng, vocab.PAPER_ADJECTIVES)
        cores = vocab.CORES_WITH_METHOD if rng.random() < 0.5 else vocab.CORES_PROBLEM_ONLY
        core = _pick(rng, cores).format(adj=adjective, problem=problem, method=method)
        title = _title_case(author.pattern.format(core))
        abstract = " ".join((
            _cap(_pick(rng, vocab.ABSTRACT_OPENINGS).format(problem=problem, kind=_pick(rng, vocab.PROBLEM_KINDS),
                                                            field=field)),
            f"Existing approaches rely on {_pick(rng, vocab.BASELINES)}, which {_pick(rng, vocab.WEAKNESSES)}.",
            f"We propose a new approach to {problem} based on {method} that {_pick(rng, vocab.CONTRIBUTIONS)}.",
            f"Experiments on {data} show that it {_pick(rng, vocab.RESULTS).format(n=_between(rng, 2, 30))}.",
            *((_pick(rng, vocab.EXTRAS),) if rng.random() < 0.5 else ()),
        ))
        return {"title": title, "abstract": abstract}, problem

    def entry(self, rng: random.Random, user: _Author, question: bool) -> _Entry:
        item, _ = self.paper(rng, user)
        return _Entry(item=item, fields=item, gold=item["title"])


class _Citations(_Papers):
    """lamp1: the related reference uses the author's method family."""

    def entry(self, rng: random.Random, user: _Author, question: bool) -> _Entry:
        item, problem = self.paper(rng, user)
        if not question:
            return _Entry(item=item, fields=item, gold="")
        related = user.families[0] if rng.random() < 0.8 else user.families[1]
        other = _pick(rng, [f for f in vocab.FAMILIES if f not in user.families])
        template = _pick(rng, vocab.REFERENCE_TITLES)  # one template for both, so wording does not give it away
        refs = [_title_case(_cap(template.format(method=_pick(rng, vocab.METHODS[f]), problem=problem)))
                for f in (related, other)]
        first = rng.random() < 0.5
        ref1, ref2 = refs if first else refs[::-1]
        return _Entry(item=item, fields={"title": item["title"], "ref1": ref1, "ref2": ref2},
                      gold="[1]" if first else "[2]")


# -- lamp2: movie tagging ------------------------------------------------------------------
@dataclass(frozen=True)
class _Tagger:
    favourites: tuple[str, ...]  # ranked, 1 or 2
    first_share: float  # how often the first (vs the second) favourite is the one a movie fits


class _Movies(_Persona):
    """lamp2: the user's highest-ranked favourite among the tags a description fits."""

    def user(self, rng: random.Random) -> _Tagger:
        if rng.random() < 0.5:
            return _Tagger(favourites=(_pick(rng, LAMP2_TAGS),), first_share=1.0)
        return _Tagger(favourites=tuple(rng.sample(LAMP2_TAGS, 2)), first_share=0.65)

    def entry(self, rng: random.Random, user: _Tagger, question: bool) -> _Entry:
        if rng.random() < 0.8:
            favourite = user.favourites[0] if rng.random() < user.first_share else user.favourites[1]
            fitting = _distinct(rng, LAMP2_TAGS, 2, exclude=(favourite,))
            fitting.insert(_between(rng, 0, 2), favourite)
        else:
            fitting = _distinct(rng, LAMP2_TAGS, 3)
        liked = [t for t in user.favourites if t in fitting]
        tag = liked[0] if liked and rng.random() < 0.9 else _pick(rng, fitting)
        description = " ".join((
            f"{_pick(rng, vocab.NAMES)}, {_pick(rng, vocab.HEROES)}, {_pick(rng, vocab.GOALS)}.",
            *(_pick(rng, vocab.TAG_CUES[t]) for t in fitting),
        ))
        item = {"description": description, "tag": tag}
        return _Entry(item=item, fields=item, gold=tag)


# -- lamp3: product ratings ----------------------------------------------------------------
@dataclass(frozen=True)
class _Rater:
    bias: int  # -1 harsh, 0 neutral, +1 generous
    products: tuple[str, ...]  # what they tend to buy


class _Reviews(_Persona):
    """lamp3: score = sentiment of the text + the rater's bias, clipped to 1..5."""

    def user(self, rng: random.Random) -> _Rater:
        return _Rater(bias=rng.choices((-1, 0, 1), weights=(0.35, 0.3, 0.35))[0],
                      products=tuple(rng.sample(vocab.PRODUCTS, 4)))

    def entry(self, rng: random.Random, user: _Rater, question: bool) -> _Entry:
        stars = _pick(rng, vocab.STARS)
        openings, adjectives, closings = vocab.SENTIMENT[stars]
        product = _one_of(rng, user.products, vocab.PRODUCTS, 0.7)
        sentences = [_pick(rng, openings).format(product=product),
                     f"The {_pick(rng, vocab.ASPECTS)} is {_pick(rng, adjectives)}."]
        if rng.random() < 0.5:
            sentences.append(_pick(rng, vocab.FILLERS).format(relative=_pick(rng, vocab.RELATIVES)))
        sentences.append(_pick(rng, closings))
        noise = _pick(rng, (-1, 1)) if rng.random() < 0.1 else 0
        score = str(min(5, max(1, stars + user.bias + noise)))
        item = {"text": " ".join(sentences), "score": score}
        return _Entry(item=item, fields=item, gold=score)


# -- lamp4: news headlines -----------------------------------------------------------------
@dataclass(frozen=True)
class _Writer:
    beats: tuple[str, ...]
    kicker: str
    kicker_first: bool
    title_case: bool
    adverb: str


class _News(_Persona):
    """lamp4: the headline states the article's fact in the writer's house style."""

    def user(self, rng: random.Random) -> _Writer:
        return _Writer(beats=tuple(rng.sample(vocab.BEATS, _between(rng, 1, 2))), kicker=_pick(rng, vocab.KICKERS),
                       kicker_first=rng.random() < 0.6, title_case=rng.random() < 0.5, adverb=_pick(rng, vocab.ADVERBS))

    def entry(self, rng: random.Random, user: _Writer, question: bool) -> _Entry:
        actors, actions, objects = vocab.NEWS[_one_of(rng, user.beats, vocab.BEATS, 0.8)]
        actor, (base, past), obj = _pick(rng, actors), _pick(rng, actions), _pick(rng, objects)
        present = base if actor.endswith("s") else _third_person(base)
        place = _pick(rng, vocab.PLACES)
        sentences = [
            f"{_cap(actor)} {past} {obj} {place} on {_pick(rng, vocab.DAYS)}, {_pick(rng, vocab.WHY)}.",
            f'"{_pick(rng, vocab.QUOTES)}," said {_pick(rng, vocab.SPEAKERS)}.',
            f"The change is expected to affect about {_between(rng, 2, 90) * 100:,} {_pick(rng, vocab.AFFECTED)} "
            f"{_pick(rng, vocab.WHEN)}.",
        ]
        if rng.random() < 0.5:
            sentences.append(f"Critics say {_pick(rng, vocab.CRITICISMS)}.")
        verb = f"{user.adverb} {present}" if rng.random() < 0.85 else present
        core = f"{_drop_article(actor)} {verb} {_drop_article(obj)}" + (f" {place}" if rng.random() < 0.3 else "")
        core = _title_case(core) if user.title_case else _cap(core)
        title = f"{user.kicker}: {core}" if user.kicker_first else f"{core} | {user.kicker}"
        item = {"text": " ".join(sentences), "title": title}
        return _Entry(item=item, fields=item, gold=title)


# -- lamp6: email subjects -----------------------------------------------------------------
@dataclass(frozen=True)
class _Sender:
    name: str
    initials: str | None
    projects: tuple[str, ...]
    tag: str
    lowercase: bool
    sign_off: str


class _Emails(_Persona):
    """lamp6: the subject states the email's topic with the sender's tag and habits."""

    def user(self, rng: random.Random) -> _Sender:
        first, last = _pick(rng, vocab.NAMES), _pick(rng, vocab.SURNAMES)
        return _Sender(name=first, initials=f"{first[0]}{last[0]}" if rng.random() < 0.5 else None,
                       projects=tuple(rng.sample(vocab.PROJECTS, _between(rng, 1, 2))), tag=_pick(rng, vocab.TAGS),
                       lowercase=rng.random() < 0.3, sign_off=_pick(rng, vocab.SIGN_OFFS))

    def entry(self, rng: random.Random, user: _Sender, question: bool) -> _Entry:
        subject, body = _pick(rng, vocab.EMAILS)
        slots = {"project": _one_of(rng, user.projects, vocab.PROJECTS, 0.8), "day": _pick(rng, vocab.DAYS),
                 "time": _pick(rng, vocab.TIMES), "city": _pick(rng, vocab.CITIES), "n": str(_between(rng, 3, 25))}
        recipient = _distinct(rng, vocab.NAMES, 1, exclude=(user.name,))[0]
        text = f"Hi {recipient},\n\n{body.format(**slots)}\n\n{user.sign_off},\n{user.name}"
        title = f"{user.tag} {subject.format(**slots)}" + (f" ({user.initials})" if user.initials else "")
        if user.lowercase:
            title = title.lower()
        item = {"text": text, "title": title}
        return _Entry(item=item, fields=item, gold=title)


# -- lamp7: tweets -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tweeter:
    hashtag: str
    catchphrase: str | None
    catchphrase_first: bool
    emoticon: str | None
    lowercase: bool
    things: tuple[str, ...]
    activities: tuple[str, ...]
    events: tuple[str, ...]


class _Tweets(_Persona):
    """lamp7: the gold is the user's styled tweet; the input paraphrases its content neutrally."""

    def user(self, rng: random.Random) -> _Tweeter:
        return _Tweeter(hashtag=_pick(rng, vocab.HASHTAGS),
                        catchphrase=_pick(rng, vocab.CATCHPHRASES) if rng.random() < 0.7 else None,
                        catchphrase_first=rng.random() < 0.5,
                        emoticon=_pick(rng, vocab.EMOTICONS) if rng.random() < 0.5 else None,
                        lowercase=rng.random() < 0.5, things=tuple(rng.sample(vocab.THINGS, 3)),
                        activities=tuple(rng.sample(vocab.ACTIVITIES, 2)), events=tuple(rng.sample(vocab.EVENTS, 2)))

    def entry(self, rng: random.Random, user: _Tweeter, question: bool) -> _Entry:
        casual, neutral = _pick(rng, vocab.TWEETS)
        slots = {"thing": _one_of(rng, user.things, vocab.THINGS, 0.6),
                 "activity": _one_of(rng, user.activities, vocab.ACTIVITIES, 0.6),
                 "event": _one_of(rng, user.events, vocab.EVENTS, 0.6),
                 "daypart": _pick(rng, vocab.DAYPARTS), "day": _pick(rng, vocab.DAYS)}
        words = [casual.format(**slots)]
        if user.catchphrase and rng.random() < 0.9:
            words.insert(0 if user.catchphrase_first else 1, user.catchphrase)
        if user.emoticon:
            words.append(user.emoticon)
        words.append(user.hashtag)
        tweet = " ".join(words)
        tweet = tweet.lower() if user.lowercase else _cap(tweet)
        item = {"text": tweet}
        fields = {"text": _cap(neutral.format(**slots))} if question else item
        return _Entry(item=item, fields=fields, gold=tweet)


_PERSONAS: dict[str, _Persona] = {
    "lamp1": _Citations(), "lamp2": _Movies(), "lamp3": _Reviews(), "lamp4": _News(),
    "lamp5": _Papers(), "lamp6": _Emails(), "lamp7": _Tweets(),
}


# -- writing -------------------------------------------------------------------------------
def generate(task: TaskSpec, out_dir: Path, *, seed: int = 0, n_users: Mapping[str, int] | None = None,
             profile_size: tuple[int, int] = DEFAULT_PROFILE_SIZE, time_based: bool = True) -> Path:
    """Write official-format LaMP files for ``task`` into ``out_dir``; return ``out_dir``.

    ``n_users`` maps split -> number of questions (missing splits take
    :data:`DEFAULT_SIZES`; 0 writes an empty split); ``profile_size`` is the (min, max)
    number of items per profile; ``time_based`` gives users several questions and a
    ``user_id`` (see the module docstring).
    """
    persona = _PERSONAS.get(task.name)
    if persona is None:
        raise ValueError(f"no synthetic generator for task {task.name!r} (known: {', '.join(_PERSONAS)})")
    sizes = {**DEFAULT_SIZES, **(n_users or {})}
    unknown = sorted(set(sizes) - set(SPLITS))
    if unknown or any(n < 0 for n in sizes.values()):
        raise ValueError(f"n_users must map {', '.join(SPLITS)} to counts >= 0, got {dict(n_users or {})}")
    low, high = profile_size
    if not 1 <= low <= high:
        raise ValueError(f"profile_size must be (min, max) with 1 <= min <= max, got {profile_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        golds: list[tuple[str, str]] = []
        records = _questions(task, persona, split, sizes[split], seed, low, high, time_based)
        _write_atomic(out / f"{split}_questions.json", _json_list(records, golds))
        if split != "test":  # LaMP withholds test golds
            outputs = {"task": task.lamp_name, "golds": [{"id": i, "output": g} for i, g in golds]}
            _write_atomic(out / f"{split}_outputs.json", (json.dumps(outputs, indent=1), "\n"))
    return out


def _questions(task: TaskSpec, persona: _Persona, split: str, count: int, seed: int, low: int, high: int,
               time_based: bool) -> Iterator[tuple[str, str, str]]:
    """Yield ``(id, record JSON, gold)`` per question, one user's timeline at a time.

    Each item is serialized once and spliced into every profile that holds it, so a
    user's later questions cost no re-encoding of the shared history.
    """
    code = _SPLIT_CODE[split]
    ids = (f"{code}{n}" for n in itertools.count())
    asked = 0
    for user_number in itertools.count():
        if asked >= count:
            return
        rng = random.Random(f"persona-bench/{GENERATOR_VERSION}/{seed}/{task.name}/{split}/{user_number}")
        traits = persona.user(rng)
        n_questions = 1
        if time_based:
            n_questions = min(rng.choices(*_QUESTIONS_PER_USER)[0], count - asked, high - low + 1)
        positions = sorted(rng.sample(range(low, high + 1), n_questions))
        user_id = f', "user_id": {json.dumps(f"{code}{user_number}")}' if time_based else ""
        day = _FIRST_DAY + rng.randrange(_START_SPAN_DAYS)
        items: list[str] = []
        for position in range(positions[-1] + 1):
            is_question = position in positions
            entry = persona.entry(rng, traits, is_question)
            if is_question:
                order = list(range(position))
                rng.shuffle(order)
                qid = next(ids)
                head = json.dumps({"id": qid, "input": task.input_template.format(**entry.fields)})
                profile = ", ".join(items[i] for i in order)
                yield qid, f'{head[:-1]}, "profile": [{profile}]{user_id}}}', entry.gold
            day += _between(rng, 1, _MAX_STEP_DAYS)
            items.append(json.dumps({"id": next(ids), "date": date.fromordinal(day).isoformat(), **entry.item}))
        asked += n_questions


def _json_list(records: Iterator[tuple[str, str, str]], golds: list[tuple[str, str]]) -> Iterator[str]:
    """The text of a JSON list of question records, one per line; collects ``(id, gold)``."""
    yield "["
    for n, (qid, record, gold) in enumerate(records):
        golds.append((qid, gold))
        yield f"{',' if n else ''}\n{record}"
    yield "\n]\n"


def _write_atomic(path: Path, chunks: Iterable[str]) -> None:
    """Stream ``chunks`` into ``path`` through a temp file and a rename.

    Streaming keeps memory flat for LaMP-scale files; the rename means an interrupted
    run never leaves a truncated file that looks like data.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.writelines(chunks)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
