"""The vocabulary of the synthetic generator: names, phrases and templates per task.

Kept apart from :mod:`tasks.synthetic` (the engine: personas, timelines, writing files)
so the engine reads as behaviour and the word lists can grow or be reworded without
touching it. Changing anything here changes the generated text for a given seed, so it
must come with a bump of ``tasks.synthetic.GENERATOR_VERSION`` (the cache key).

Structure matters where a comment says so: every method variant contains its family
word, an actor is plural iff it ends in "s", each tag has cue sentences that make it
plausible. ``LAMP2_TAGS`` (the label set) lives with the task in :mod:`tasks.lamp`.
"""

from __future__ import annotations

# -- people and days (every task) ----------------------------------------------------------
NAMES = ("Ada", "Ben", "Clara", "Dev", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonah", "Kira", "Leo",
         "Maya", "Nico", "Olga", "Pablo", "Rosa", "Sam", "Tara", "Victor")
SURNAMES = ("Kim", "Lopez", "Novak", "Okafor", "Patel", "Quinn", "Rossi", "Schmidt", "Tanaka", "Walsh",
            "Yilmaz", "Berg", "Costa", "Duval", "Evans", "Fischer")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# -- lamp1 and lamp5: scientific papers ----------------------------------------------------
# field -> (problems, evaluation data)
FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "natural language processing": (("machine translation", "question answering", "text summarization",
                                     "named entity recognition", "sentiment analysis"), "several text corpora"),
    "computer vision": (("object detection", "image segmentation", "pose estimation", "visual tracking",
                         "scene understanding"), "standard image benchmarks"),
    "robotics": (("robot grasping", "motion planning", "legged locomotion", "multi-robot coordination",
                  "visual navigation"), "simulated and real robots"),
    "databases": (("query optimization", "index selection", "transaction processing", "data cleaning",
                   "schema matching"), "TPC-H and production workloads"),
    "computer security": (("malware detection", "intrusion detection", "phishing detection",
                           "vulnerability discovery", "access control"), "real-world attack traces"),
    "bioinformatics": (("protein structure prediction", "gene expression analysis", "sequence alignment",
                        "drug discovery", "variant calling"), "public genomic datasets"),
    "computer networks": (("congestion control", "traffic classification", "packet routing",
                           "wireless scheduling", "network anomaly detection"), "testbed deployments"),
    "recommender systems": (("collaborative filtering", "session-based recommendation",
                             "click-through rate prediction", "playlist generation",
                             "cold-start recommendation"), "large e-commerce logs"),
}
# Method families; every variant contains the family word, so a family is recognisable.
METHODS: dict[str, tuple[str, ...]] = {
    "bayesian": ("Bayesian inference", "hierarchical Bayesian priors", "variational Bayesian models"),
    "graph": ("graph neural networks", "message passing on graphs", "graph convolutions"),
    "reinforcement": ("reinforcement learning", "deep reinforcement learning",
                      "reinforcement learning with shaped rewards"),
    "evolutionary": ("evolutionary search", "evolutionary algorithms", "evolutionary strategies"),
    "kernel": ("kernel methods", "kernel machines", "Gaussian kernel regression"),
    "attention": ("attention mechanisms", "self-attention", "attention-based transformers"),
    "contrastive": ("contrastive learning", "contrastive pretraining", "contrastive objectives"),
    "causal": ("causal inference", "causal models", "causal discovery"),
    "sparse": ("sparse coding", "sparse dictionaries", "sparse recovery"),
    "federated": ("federated learning", "federated optimization", "federated averaging"),
    "distillation": ("knowledge distillation", "distillation from large teachers", "self-distillation"),
    "diffusion": ("diffusion models", "latent diffusion", "diffusion-based denoising"),
}
FIELD_NAMES = tuple(FIELDS)
FAMILIES = tuple(METHODS)
PAPER_ADJECTIVES = ("efficient", "robust", "scalable", "interpretable", "adaptive", "lightweight", "principled",
                    "practical", "unified", "fast")
TITLE_PATTERNS = ("Towards {}", "Rethinking {}", "Revisiting {}", "On {}", "{}: A Closer Look",
                  "{}: Lessons Learned", "{} Made Simple", "Beyond Baselines: {}")
CORES_PROBLEM_ONLY = ("{adj} {problem}", "{adj} {problem} at scale", "{adj} {problem} from limited data",
                      "{adj} {problem} in the wild")
CORES_WITH_METHOD = ("{adj} {problem} with {method}", "{adj} {problem} via {method}",
                     "{method} for {adj} {problem}")
REFERENCE_TITLES = ("{method} for {problem}", "{problem} with {method}", "improving {problem} via {method}",
                    "{problem} using {method}", "a study of {method} for {problem}")
ABSTRACT_OPENINGS = ("{problem} is a {kind} problem in {field}.", "Many applications in {field} depend on {problem}.",
                     "Despite years of work, {problem} remains hard in practice.")
PROBLEM_KINDS = ("central", "long-standing", "fundamental", "challenging", "practical")
BASELINES = ("hand-crafted features", "simple heuristics", "large labeled datasets", "expensive manual tuning",
             "brute-force search")
WEAKNESSES = ("scales poorly to large inputs", "ignores structure in the data", "is brittle under distribution shift",
              "requires costly supervision")
CONTRIBUTIONS = ("learns compact representations", "adapts to new domains with little data",
                 "exploits the structure of the problem", "reduces the cost of inference")
RESULTS = ("improves accuracy by {n} percent", "reduces the error by {n} percent",
           "matches strong baselines at a fraction of the cost", "runs {n} times faster than prior work")
EXTRAS = ("We also release our code and data.", "We also analyse when the approach fails.",
          "We also give a theoretical analysis of its convergence.")

# -- lamp2: movie tagging ------------------------------------------------------------------
HEROES = ("a retired detective", "a young nurse", "a small-town teacher", "an ambitious lawyer", "a shy teenager",
          "a war veteran", "a struggling musician", "a single mother", "an old fisherman", "a rookie journalist",
          "a brilliant scientist", "a disgraced chef")
GOALS = ("sets out to find a missing sister", "returns home after twenty years away",
         "takes a night job at a remote hotel", "inherits a crumbling house by the sea",
         "joins a crew of strangers on a long voyage", "tries to save the family restaurant",
         "agrees to help a stranger on the run", "moves to a new city to start over")
# One sentence per tag that makes the tag plausible; a description holds three of them.
TAG_CUES: dict[str, tuple[str, ...]] = {
    "sci-fi": ("The journey leads to a distant planet ruled by machines.",
               "An experiment with time travel goes badly wrong.",
               "Aliens make contact through a broken radio telescope."),
    "based on a book": ("The film is adapted from a bestselling novel.",
                        "It follows the beloved book closely, chapter by chapter.",
                        "The screenplay brings a famous novel to the screen."),
    "comedy": ("Hilarious misunderstandings pile up at every turn.",
               "A series of silly mishaps keeps the laughs coming.",
               "Slapstick chaos follows wherever they go."),
    "action": ("Explosive car chases and fistfights fill the second half.",
               "A daring heist ends in a rooftop shootout.",
               "Every scene builds to a high-speed chase."),
    "twist ending": ("Nothing is what it seems until the final scene.",
                     "A shocking revelation in the last minutes changes everything.",
                     "The ending turns the whole story upside down."),
    "dystopia": ("It is set in a grim future where the state watches everyone.",
                 "Citizens live under a cruel regime that controls every choice.",
                 "The world has collapsed into rationed, walled cities."),
    "dark comedy": ("Death and disaster are played for bleak, morbid laughs.",
                    "A funeral goes wrong in the most awkward way possible.",
                    "Grim jokes about murder run through the plot."),
    "classic": ("This black-and-white masterpiece from the golden age of cinema still holds up.",
                "It is a timeless film that critics have praised for decades.",
                "An old studio picture with legendary performances."),
    "psychology": ("The film explores obsession, memory and the fragile mind.",
                   "A therapist slowly uncovers a buried trauma.",
                   "Paranoia creeps in as reality becomes hard to trust."),
    "fantasy": ("A wizard, a dragon and an enchanted sword stand in the way.",
                "A magical kingdom hides behind an ancient door.",
                "Spells and prophecies shape the quest."),
    "romance": ("Along the way, two strangers slowly fall in love.",
                "A tender love story blossoms against all odds.",
                "Old lovers meet again and must follow their hearts."),
    "thought-provoking": ("It raises hard questions about what makes us human.",
                          "The film leaves the audience pondering free will and fate.",
                          "Its quiet ideas linger long after the credits."),
    "social commentary": ("It offers a sharp critique of inequality and greed.",
                          "The story exposes racism and corruption in everyday institutions.",
                          "Class divisions are laid bare with biting satire."),
    "violence": ("Brutal, bloody fights leave few survivors.",
                 "The gang war is shown in graphic, gory detail.",
                 "Revenge is carried out with merciless brutality."),
    "true story": ("It is based on real events that shocked the nation.",
                   "The film recounts the true story of an unlikely survivor.",
                   "Drawn from court records, it retells a famous trial."),
}

# -- lamp3: product ratings ----------------------------------------------------------------
PRODUCTS = ("blender", "coffee grinder", "phone case", "desk lamp", "backpack", "yoga mat", "electric kettle",
            "wireless mouse", "garden hose", "board game", "water bottle", "bluetooth speaker", "cookbook",
            "hair dryer", "camping tent", "office chair")
ASPECTS = ("build quality", "price", "design", "packaging", "size", "durability", "color", "delivery")
# stars -> (openings with {product}, aspect adjectives, closings)
SENTIMENT: dict[int, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    1: (("This {product} is a complete waste of money.", "Terrible {product}, it broke within a week.",
         "The worst {product} I have ever bought."),
        ("awful", "cheap and flimsy", "useless"),
        ("Avoid it.", "I returned it immediately.", "Do not buy this.")),
    2: (("I was disappointed with this {product}.", "This {product} did not live up to the description.",
         "Not a great {product}, sadly."),
        ("mediocre", "below average", "poor"),
        ("I would not buy it again.", "Look elsewhere.", "Maybe fine if it is on sale.")),
    3: (("This {product} is okay for the price.", "An average {product} that does the job.",
         "The {product} is fine, nothing special."),
        ("acceptable", "so-so", "decent but not great"),
        ("It works, I guess.", "Neither good nor bad.", "You get what you pay for.")),
    4: (("I am happy with this {product}.", "A good {product} that works well.",
         "Solid {product}, I use it every day."),
        ("good", "nice", "better than expected"),
        ("I would recommend it.", "Worth the money.", "A few small flaws, but overall good.")),
    5: (("I absolutely love this {product}!", "An excellent {product} that exceeded my expectations.",
         "This is the best {product} I have owned."),
        ("excellent", "fantastic", "superb"),
        ("Highly recommended!", "Worth every penny.", "Buy it, you will not regret it.")),
}
STARS = (1,) * 5 + (2,) * 15 + (3,) * 30 + (4,) * 30 + (5,) * 20  # sentiment frequencies, in percent
FILLERS = ("I bought it as a gift for my {relative}.", "It arrived two days early.",
           "I have used it for about a month now.", "The box was a bit damaged but the contents were fine.",
           "I compared several options before choosing this one.")
RELATIVES = ("sister", "dad", "grandmother", "roommate", "son", "best friend")

# -- lamp4: news headlines -----------------------------------------------------------------
# beat -> (actors, (base form, past tense) actions, objects); an actor is plural iff it ends in "s".
NEWS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    "politics": (("the city council", "the prime minister", "state lawmakers", "the opposition party"),
                 (("approve", "approved"), ("reject", "rejected"), ("delay", "delayed"), ("back", "backed")),
                 ("a new housing plan", "the annual budget", "a tax on sugary drinks", "voting reforms")),
    "business": (("a major retailer", "the central bank", "a local startup", "the largest airline"),
                 (("raise", "raised"), ("cut", "cut"), ("announce", "announced"), ("freeze", "froze")),
                 ("its prices", "hundreds of jobs", "a same-day delivery service", "spending on ads")),
    "technology": (("a leading chip maker", "a social media company", "university researchers",
                    "the telecom regulator"),
                   (("unveil", "unveiled"), ("test", "tested"), ("ban", "banned"), ("release", "released")),
                   ("a faster smartphone", "an AI assistant", "facial recognition cameras", "a new privacy policy")),
    "sports": (("the home team", "an Olympic sprinter", "the national coach", "the football league"),
               (("win", "won"), ("lose", "lost"), ("celebrate", "celebrated"), ("postpone", "postponed")),
               ("the championship final", "a key match", "the league title", "the season opener")),
    "health": (("hospital officials", "the health ministry", "family doctors", "a medical research team"),
               (("warn about", "warned about"), ("recommend", "recommended"), ("expand", "expanded"),
                ("study", "studied")),
               ("a winter flu outbreak", "free vaccines for children", "mental health services",
                "the effects of poor sleep")),
    "environment": (("climate scientists", "the water authority", "volunteer groups", "the forest service"),
                    (("monitor", "monitored"), ("report on", "reported on"), ("respond to", "responded to"),
                     ("study", "studied")),
                    ("record summer heat", "river pollution", "plastic on the beaches", "endangered wolves")),
    "education": (("the school board", "teachers' unions", "the state university", "parent groups"),
                  (("extend", "extended"), ("protest", "protested"), ("debate", "debated"), ("review", "reviewed")),
                  ("the school day", "new exam rules", "plans for a science campus", "reading programs")),
    "culture": (("the city museum", "a famous director", "local artists", "festival organizers"),
                (("reveal", "revealed"), ("cancel", "canceled"), ("honor", "honored"), ("restore", "restored")),
                ("a long-lost painting", "the summer music festival", "a century of jazz", "a historic theater")),
}
BEATS = tuple(NEWS)
PLACES = ("in Springfield", "in the capital", "across the region", "in Riverside", "downtown",
          "in the northern provinces", "on the coast")
WHY = ("after months of debate", "following public pressure", "in a surprise move", "despite strong opposition",
       "ahead of the holiday season")
QUOTES = ("This is a big step forward", "It is a difficult moment for everyone", "Frankly, this is long overdue",
          "This is only the beginning", "We need to see the details first")
SPEAKERS = ("a spokesperson", "one analyst", "a local resident", "a senior official", "an independent expert")
AFFECTED = ("residents", "families", "workers", "students", "fans", "customers")
WHEN = ("over the next year", "by the end of the month", "starting next week", "within the coming months")
CRITICISMS = ("the plan goes too far", "the decision came too late", "more details are needed",
              "the costs have been underestimated")
KICKERS = ("Breaking", "Exclusive", "Analysis", "Explainer", "Update", "Opinion", "Watch", "Report", "Live",
           "Insight", "Fact check", "Big picture")
ADVERBS = ("finally", "quietly", "officially", "suddenly", "reportedly", "formally", "narrowly", "again")

# -- lamp6: email subjects -----------------------------------------------------------------
PROJECTS = ("Apollo", "Falcon", "Orion", "Atlas", "Phoenix", "Nova", "Titan", "Zephyr", "Cobalt", "Harbor")
CITIES = ("Boston", "Denver", "Lisbon", "Osaka", "Toronto", "Nairobi", "Berlin", "Austin")
TIMES = ("9 am", "10:30", "noon", "2 pm", "4 pm")
# (subject, body) with {project}, {day}, {time}, {city}, {n}
EMAILS: tuple[tuple[str, str], ...] = (
    ("{project} sync moved to {day}", "The weekly {project} sync is moving to {day} at {time}. Please update your "
     "calendar. We will go through the open action items and next steps."),
    ("{project} deadline on {day}", "A reminder that the {project} deliverables are due on {day}. Send me your "
     "sections by {time} so I can merge them. Let me know if anything is blocked."),
    ("Updated budget for {project}", "I have attached the updated budget for {project}. Spending is about {n} percent "
     "over plan this quarter. Please review the travel and software lines before {day}."),
    ("{project} server outage", "The {project} servers went down this morning at {time}. The on-call team restored "
     "most services and is still investigating. We will share a full report by {day}."),
    ("Interview for the {project} team", "We have a strong candidate for the {project} team. Could you join the "
     "interview on {day} at {time}? I will forward the resume shortly."),
    ("{project} release delayed to {day}", "The {project} release is delayed to {day} because of a last-minute bug. "
     "QA needs another pass on the payment flow. Please let our customers know."),
    ("Trip to {city} next week", "I will be in {city} next week to meet the {project} partners. I am free on {day} if "
     "you want to catch up. Hotel and flights are already booked."),
    ("Customer feedback on {project}", "A major customer sent feedback about {project}. They like the new dashboard "
     "but find the setup too slow. Can we discuss fixes on {day}?"),
)
TAGS = ("[FYI]", "[Action needed]", "[Urgent]", "[Team]", "[Update]", "[Heads up]", "[Review]", "[Info]")
SIGN_OFFS = ("Thanks", "Best", "Cheers", "Regards", "Talk soon")

# -- lamp7: tweets -------------------------------------------------------------------------
# (the user's casual wording, a neutral paraphrase) with {thing}, {activity}, {event}, {daypart}, {day}
TWEETS: tuple[tuple[str, str], ...] = (
    ("{thing} is honestly the best part of my day", "The best part of my day is {thing}."),
    ("cant stop thinking about {thing}", "I keep thinking about {thing}."),
    ("{thing} again?? not ready for this", "I am not ready for {thing} again."),
    ("finally got around to {activity}", "I have finally made time for {activity}."),
    ("who else is hyped for {event}", "Is anyone else excited about {event}?"),
    ("{thing} hits different on a {day}", "{thing} feels special on a {day}."),
    ("spent the whole {daypart} {activity}", "I spent the entire {daypart} {activity}."),
    ("nothing beats {thing} after a long week", "After a long week, nothing is better than {thing}."),
    ("{event} was so worth it", "{event} was definitely worth it."),
    ("why is {thing} so hard to find", "Why is it so difficult to find {thing}?"),
    ("ok {event} just made my whole week", "{event} made my week much better."),
    ("me vs {activity}: round two", "This is my second round of {activity}."),
)
THINGS = ("a hot cup of coffee", "fresh pizza", "my cat", "the new album", "rainy mornings", "this weather",
          "cold brew", "pancakes", "my playlist", "a quiet bookstore", "street tacos", "my old sneakers")
ACTIVITIES = ("cleaning my room", "reading that book", "training for the marathon", "fixing my bike",
              "learning guitar", "baking bread", "planting tomatoes", "binge watching old sitcoms")
EVENTS = ("the concert tonight", "the season finale", "the big game", "summer break", "the weekend",
          "the new movie", "the food festival", "our road trip")
DAYPARTS = ("morning", "afternoon", "evening", "weekend")
HASHTAGS = ("#blessed", "#mondaymood", "#nofilter", "#goals", "#foodie", "#gymlife", "#bookworm",
            "#catsoftwitter", "#musiclover", "#weekendvibes", "#coffeeaddict", "#teamnosleep", "#grateful",
            "#nerdlife", "#wanderlust", "#smalljoys")
CATCHPHRASES = ("ngl", "tbh", "lol", "just saying", "no cap", "for real", "honestly", "smh", "omg", "big mood")
EMOTICONS = (":)", ":D", "<3", ";)", "xD", ":P", "^_^")
