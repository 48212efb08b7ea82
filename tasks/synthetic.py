"""Synthetic LaMP-format data with a planted, documented per-user signal.

The official LaMP files cannot be reached from every machine, so this generator writes
files with the official schema and input templates (``tasks/lamp.py``), realistic
profile sizes and dates, deterministic by seed. Each user has latent traits that shape
both their profile and their gold outputs, so a method that reads the profile can beat
one that does not — by how much is exactly what the benchmark measures:

* **lamp1** (citation): every author works on two favourite topics; the related
  reference is the candidate whose topic is one of them, the other candidate comes
  from an unrelated topic. Position [1]/[2] is random.
* **lamp2** (movie tagging): every user has a favourite and a second tag; ~60% of their
  profile tags are the favourite, ~25% the second; the gold tag follows the same
  distribution. Descriptions carry only a weak hint of the gold tag.
* **lamp3** (rating): every rater has a bias of -1, 0 or +1 stars; a score is the
  sentiment the review text expresses plus the bias, clipped to 1..5.
* **lamp4 / lamp5 / lamp6** (headline / title / subject): every writer has a title
  style (a signature prefix, suffix, case or question form) applied to the core phrase
  that the text is about; profile titles and gold titles share it.
* **lamp7** (tweets): every tweeter has style markers (a signature hashtag, an
  emoticon, lowercase, a catchphrase); the input is a neutral paraphrase, the gold the
  user's own-style tweet, and their profile tweets carry the same markers.

Time-based mode gives a user 1-3 questions with a shared ``user_id``, each with the
user's items dated before it; user-based mode gives every question its own profile.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.api import TaskSpec
from tasks.lamp import LAMP2_TAGS

GENERATOR_VERSION = "1"
DEFAULT_SIZES: dict[str, int] = {"train": 120, "dev": 60, "test": 20}

SIGNAL_DOC: dict[str, str] = {
    "lamp1": "authors cite the candidate on one of their two favourite topics",
    "lamp2": "users tag with a favourite (~60%) and a second (~25%) tag; descriptions hint weakly",
    "lamp3": "raters add a personal bias of -1, 0 or +1 stars to the review's sentiment",
    "lamp4": "writers apply a personal headline style (prefix/suffix/case/question)",
    "lamp5": "authors apply a personal title style (prefix/suffix/case/question)",
    "lamp6": "senders apply a personal subject style (prefix/suffix/case/question)",
    "lamp7": "tweeters add personal markers: a signature hashtag, emoticon, lowercase, catchphrase",
}

TOPICS: dict[str, list[str]] = {
    "climate": ["carbon", "emissions", "warming", "glaciers", "drought", "solar", "forests", "ocean", "policy"],
    "finance": ["markets", "inflation", "banks", "interest", "stocks", "bonds", "budget", "trade", "currency"],
    "health": ["vaccines", "hospitals", "diet", "sleep", "exercise", "nurses", "clinics", "virus", "therapy"],
    "sports": ["football", "coach", "league", "season", "stadium", "goal", "tennis", "playoffs", "athletes"],
    "tech": ["software", "chips", "startups", "robots", "privacy", "cloud", "phones", "networks", "data"],
    "education": ["schools", "teachers", "students", "exams", "campus", "tuition", "reading", "degrees", "classes"],
    "travel": ["flights", "hotels", "beaches", "passports", "trains", "tourists", "islands", "museums", "maps"],
    "food": ["recipes", "bakery", "coffee", "farmers", "markets", "spices", "noodles", "wine", "kitchens"],
    "space": ["rockets", "orbit", "telescope", "planets", "astronauts", "moon", "satellites", "comets", "mars"],
    "music": ["concert", "album", "guitar", "festival", "singers", "orchestra", "lyrics", "charts", "drums"],
}
ADJECTIVES = ["new", "major", "surprising", "local", "global", "quiet", "bold", "rapid", "rare", "early",
              "modern", "simple", "hidden", "recent", "steady", "careful", "open", "small", "large", "strange"]
VERBS = ["reshapes", "boosts", "challenges", "transforms", "slows", "drives", "reveals", "limits", "improves",
         "shifts", "tests", "explains", "rethinks", "measures", "connects"]
METHOD_WORDS = ["framework", "model", "study", "benchmark", "method", "survey", "theory", "toolkit"]
FILLER = ["officials said on monday", "according to a new report", "experts remain divided",
          "the effect was larger than expected", "critics raised concerns", "details are still emerging",
          "the plan takes effect next year", "residents welcomed the change", "numbers rose sharply",
          "the debate continues"]

TAG_HINTS: dict[str, list[str]] = {
    "sci-fi": ["a distant galaxy", "an android"], "based on a book": ["a bestselling novel", "an author's memoir"],
    "comedy": ["a hapless roommate", "a wedding gone wrong"], "action": ["a car chase", "an explosive heist"],
    "twist ending": ["a secret identity", "a shocking reveal"], "dystopia": ["a totalitarian state", "a ruined city"],
    "dark comedy": ["a funeral mix-up", "a botched crime"], "classic": ["old hollywood", "a timeless romance"],
    "psychology": ["a troubled mind", "a therapist"], "fantasy": ["a dragon", "a wizard"],
    "romance": ["two strangers", "a love letter"], "thought-provoking": ["a moral dilemma", "the meaning of life"],
    "social commentary": ["class divides", "a broken system"], "violence": ["a gang war", "a brutal revenge"],
    "true story": ["real events", "a historic trial"],
}
MOVIE_SUBJECTS = ["a young detective", "a retired teacher", "two siblings", "a small-town mayor", "a chef",
                  "a pilot", "a street musician", "a scientist", "a lonely farmer", "a journalist", "a nurse",
                  "an old sailor", "a chess prodigy", "a thief", "a family"]
MOVIE_ACTIONS = ["searches for", "runs from", "falls for", "uncovers", "fights", "protects", "returns to",
                 "tries to escape", "learns about", "competes against"]

SENTIMENT_PHRASES: dict[int, list[str]] = {
    1: ["broke after one day", "a complete waste of money", "terrible quality", "do not buy this"],
    2: ["disappointing overall", "works but feels cheap", "below my expectations", "not worth the price"],
    3: ["it is okay", "does the job, nothing special", "average quality", "mixed feelings about it"],
    4: ["works well", "good value for the price", "pretty happy with it", "solid and reliable"],
    5: ["absolutely love it", "best purchase this year", "exceeded every expectation", "outstanding quality"],
}
PRODUCTS = ["guitar strings", "headphones", "cable", "tuner", "microphone stand", "capo", "amplifier", "pedal",
            "strap", "keyboard stand", "drumsticks", "music stand"]

TITLE_STYLES: list[tuple[str, Callable[[str], str]]] = [
    ("prefix-breaking", lambda s: f"Breaking: {s}"),
    ("suffix-report", lambda s: f"{s} - a report"),
    ("question", lambda s: f"Why {s}?"),
    ("lowercase", lambda s: s.lower()),
    ("upper-first-words", lambda s: s.upper()),
    ("colon-explained", lambda s: f"{s}: explained"),
    ("towards", lambda s: f"Towards {s}"),
    ("exclaim", lambda s: f"{s}!"),
]
HASHTAGS = ["#blessed", "#mondaymood", "#truth", "#nofilter", "#goals", "#justsaying", "#lifehack", "#vibes"]
EMOTICONS = [":)", ":D", ";)", "<3", ":P", "xD"]
CATCHPHRASES = ["honestly", "no kidding", "for real", "big mood", "just saying", "trust me"]
TWEET_TEMPLATES = ["just tried {a} {n} and it {v} everything", "thinking about {a} {n} today",
                   "cannot believe how {a} the {n} looks", "anyone else into {a} {n} lately",
                   "my take on {a} {n}: it {v} the game", "finally saw the {a} {n} everyone talks about"]


@dataclass
class User:
    """Latent traits of one synthetic user (only some are used by each task)."""

    uid: str
    rng: random.Random
    topics: list[str]
    tags: list[str]
    bias: int
    style: int
    markers: dict[str, Any] = field(default_factory=dict)


def _new_user(uid: str, rng: random.Random) -> User:
    markers = {
        "hashtag": rng.choice(HASHTAGS) if rng.random() < 0.8 else None,
        "emoticon": rng.choice(EMOTICONS) if rng.random() < 0.7 else None,
        "lower": rng.random() < 0.5,
        "catchphrase": rng.choice(CATCHPHRASES) if rng.random() < 0.6 else None,
    }
    return User(uid, rng, rng.sample(sorted(TOPICS), 2), rng.sample(LAMP2_TAGS, 2), rng.choice([-1, 0, 1]),
                rng.randrange(len(TITLE_STYLES)), markers)


# -- per-task item and question makers ----------------------------------------------------------
def _phrase(rng: random.Random, topic: str) -> str:
    words = TOPICS[topic]
    return f"{rng.choice(ADJECTIVES).capitalize()} {rng.choice(words)} {rng.choice(VERBS)} {rng.choice(words)}"


def _body(rng: random.Random, topic: str, core: str, n: int) -> str:
    words = TOPICS[topic]
    sentences = [f"{core.lower()}."]
    for _ in range(n):
        sentences.append(f"the {rng.choice(ADJECTIVES)} {rng.choice(words)} {rng.choice(VERBS)} "
                         f"{rng.choice(words)}, {rng.choice(FILLER)}.")
    return " ".join(sentences).capitalize()


def _paper(rng: random.Random, topic: str) -> dict[str, str]:
    core = _phrase(rng, topic)
    return {"title": f"A {rng.choice(METHOD_WORDS)} of {core.lower()}",
            "abstract": _body(rng, topic, f"we present a {rng.choice(METHOD_WORDS)} where {core}", 3)}


def _styled(user: User, core: str) -> str:
    return TITLE_STYLES[user.style][1](core)


def _user_tag(user: User) -> str:
    roll = user.rng.random()
    return user.tags[0] if roll < 0.6 else user.tags[1] if roll < 0.85 else user.rng.choice(LAMP2_TAGS)


def _movie(rng: random.Random, tag: str, hint: float) -> str:
    text = f"{rng.choice(MOVIE_SUBJECTS).capitalize()} {rng.choice(MOVIE_ACTIONS)} {rng.choice(MOVIE_SUBJECTS)}"
    other = rng.choice(LAMP2_TAGS)
    clue = rng.choice(TAG_HINTS[tag if rng.random() < hint else other])
    return f"{text}, in a story involving {clue}."


def _review(user: User) -> tuple[str, str]:
    rng = user.rng
    sentiment = rng.randint(1, 5)
    score = min(5, max(1, sentiment + user.bias))
    text = f"Bought this {rng.choice(PRODUCTS)} last month. {rng.choice(SENTIMENT_PHRASES[sentiment]).capitalize()}."
    return text, str(score)


def _tweet(user: User) -> tuple[str, str]:
    """(neutral paraphrase, the user's own-style tweet) about the same content."""
    rng = user.rng
    topic = rng.choice(user.topics)
    content = rng.choice(TWEET_TEMPLATES).format(a=rng.choice(ADJECTIVES), n=rng.choice(TOPICS[topic]),
                                                 v=rng.choice(VERBS))
    m = user.markers
    styled = f"{m['catchphrase']}, {content}" if m["catchphrase"] else content
    styled = styled if m["lower"] else styled.capitalize()
    styled += "".join(f" {x}" for x in (m["emoticon"], m["hashtag"]) if x)
    neutral = f"Someone says that {content}."
    return neutral, styled


def _item(task: str, user: User) -> dict[str, str]:
    """One profile item in the user's own voice (without id/date)."""
    rng = user.rng
    topic = rng.choice(user.topics)
    if task == "lamp1" or task == "lamp5":
        paper = _paper(rng, topic)
        return {"title": _styled(user, paper["title"]) if task == "lamp5" else paper["title"],
                "abstract": paper["abstract"]}
    if task == "lamp2":
        tag = _user_tag(user)
        return {"description": _movie(rng, tag, hint=0.3), "tag": tag}
    if task == "lamp3":
        text, score = _review(user)
        return {"text": text, "score": score}
    if task in ("lamp4", "lamp6"):
        core = _phrase(rng, topic)
        return {"text": _body(rng, topic, core, 4), "title": _styled(user, core)}
    if task == "lamp7":
        return {"text": _tweet(user)[1]}
    raise ValueError(f"no synthetic generator for task {task!r}")


def _question(task: TaskSpec, user: User) -> tuple[str, str]:
    """(input rendered with the official template, gold output)."""
    rng = user.rng
    name = task.name
    topic = rng.choice(user.topics)
    if name == "lamp1":
        own = _paper(rng, topic)
        related = _paper(rng, rng.choice(user.topics))["title"]
        foreign = _paper(rng, rng.choice([t for t in sorted(TOPICS) if t not in user.topics]))["title"]
        first = rng.random() < 0.5
        refs = (related, foreign) if first else (foreign, related)
        return task.input_template.format(title=own["title"], ref1=refs[0], ref2=refs[1]), "[1]" if first else "[2]"
    if name == "lamp2":
        tag = _user_tag(user)
        return task.input_template.format(description=_movie(rng, tag, hint=0.3)), tag
    if name == "lamp3":
        text, score = _review(user)
        return task.input_template.format(text=text), score
    if name in ("lamp4", "lamp6"):
        core = _phrase(rng, topic)
        return task.input_template.format(text=_body(rng, topic, core, 4)), _styled(user, core)
    if name == "lamp5":
        paper = _paper(rng, topic)
        return task.input_template.format(abstract=paper["abstract"]), _styled(user, paper["title"])
    if name == "lamp7":
        neutral, styled = _tweet(user)
        return task.input_template.format(text=neutral), styled
    raise ValueError(f"no synthetic generator for task {name!r}")


def _date(day: int) -> str:
    year, rest = divmod(day, 336)
    return f"{2005 + year:04d}-{rest // 28 + 1:02d}-{rest % 28 + 1:02d}"


def _questions(task: TaskSpec, split: str, count: int, seed: int, profile_size: tuple[int, int],
               time_based: bool) -> Iterator[tuple[dict[str, Any], str]]:
    """Yield ``(question record, gold)`` pairs, users one after another."""
    split_rng = random.Random(f"{seed}:{task.name}:{split}")
    made, u = 0, 0
    while made < count:
        uid = f"{task.name[-1]}{'tdx'[['train', 'dev', 'test'].index(split)]}{u:05d}"
        user = _new_user(uid, random.Random(f"{seed}:{task.name}:{split}:{u}"))
        u += 1
        n_questions = min(count - made, split_rng.randint(1, 3) if time_based else 1)
        n_items = user.rng.randint(*profile_size)
        days = sorted(user.rng.sample(range(0, 336 * 15), n_items + n_questions))
        items = [{"id": f"{uid}{j:04d}", "date": _date(days[j]), **_item(task.name, user)}
                 for j in range(n_items)]
        for q in range(n_questions):
            # Later questions of a time-based user see the history up to their own date.
            cutoff = n_items - (n_questions - 1 - q) * max(1, n_items // 10) if time_based else n_items
            text, gold = _question(task, user)
            record: dict[str, Any] = {"id": f"{uid}q{q}", "input": text, "profile": items[: max(1, cutoff)]}
            if time_based:
                record["user_id"] = uid
            yield record, gold
            made += 1


def _write_json_list(path: Path, records: Iterator[Any]) -> None:
    """Stream a JSON list to disk: LaMP-scale files never sit in memory twice."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[")
        for i, rec in enumerate(records):
            fh.write(("," if i else "") + "\n" + json.dumps(rec, ensure_ascii=False))
        fh.write("\n]\n")


def generate(task: TaskSpec, out_dir: Path, *, seed: int = 0, n_users: dict[str, int] | None = None,
             profile_size: tuple[int, int] = (20, 80), time_based: bool = True) -> Path:
    """Write official-format train/dev/test files for ``task`` into ``out_dir``.

    ``n_users`` gives the number of questions per split (default :data:`DEFAULT_SIZES`).
    Same arguments, byte-identical files.
    """
    if task.name not in SIGNAL_DOC:
        raise ValueError(f"no synthetic generator for task {task.name!r}")
    lo, hi = profile_size
    if not 1 <= lo <= hi:
        raise ValueError(f"profile_size must satisfy 1 <= min <= max, got {profile_size}")
    sizes = {**DEFAULT_SIZES, **(n_users or {})}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, count in sizes.items():
        golds: list[dict[str, str]] = []

        def records() -> Iterator[dict[str, Any]]:
            for record, gold in _questions(task, split, count, seed, profile_size, time_based):
                golds.append({"id": record["id"], "output": gold})
                yield record

        _write_json_list(out_dir / f"{split}_questions.json", records())
        if split != "test":
            (out_dir / f"{split}_outputs.json").write_text(
                json.dumps({"task": task.lamp_name, "golds": golds}, ensure_ascii=False, indent=1) + "\n",
                encoding="utf-8")
    return out_dir
