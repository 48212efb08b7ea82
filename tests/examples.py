"""Hand-made LaMP-2-shaped questions shared by the tests of methods that read histories."""

from __future__ import annotations

import random

from harness.api import Example

TAGS = ("comedy", "romance", "action", "classic")


def tagged_examples(n_users: int = 4, per_user: int = 4, history: int = 6, seed: int = 0, *, prefix: str = "",
                    topics: tuple[str, ...] = ("love", "war", "time"), gold: str | None = None) -> list[Example]:
    """Users whose history is mostly tagged with their favourite tag, which is the gold
    (unless ``gold`` fixes one answer for everyone)."""
    rng = random.Random(seed)
    out = []
    for u in range(n_users):
        fav = TAGS[u % len(TAGS)]
        profile = tuple(
            {"id": f"{prefix}{u}-{j}", "description": f"film {rng.randint(0, 99)} about {rng.choice(topics)}",
             "tag": fav if j % 3 else rng.choice(TAGS), "date": f"2010-01-{j + 1:02d}"}
            for j in range(history)
        )
        for q in range(per_user):
            out.append(Example(id=f"{prefix}{u}-{q}", input=f"description: movie {rng.randint(0, 999)} plot",
                               profile=profile, output=gold or fav, user_id=f"{prefix}{u}"))
    return out
