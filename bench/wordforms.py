"""Which function gives every word its base form (query language v2, section 1 "Word forms").

Candidates, each applied to the words cut by `questions.search.words.words`:

- simplemma: `simplemma.lemmatize(word, lang="en")`, casefolded;
- lemminflect: `getAllLemmas(word)` (its dictionary only, no out-of-vocabulary rules), the AUX lemma of an
  auxiliary verb that is not a noun as it stands, else the first lemma of NOUN, else VERB, else ADJ, else ADV;
  a word it does not know is its own base form;
- lemminflect+s: the same, and a word it does not know that ends in "s" takes the noun lemma of the word
  without the final "s" when that is a known noun (`intelligences` -> `intelligence`);
- lemminflect+s/es: as lemminflect+s, and failing that the noun lemma of the word without a final "es";
- spacy-lookup: spaCy's English lookup table (spacy-lookups-data, `en_lemma_lookup`), unknown -> itself;
- for reference, not candidates: exact (the word itself) and snowball (Snowball English stemmer).

A base form must itself be one word of the tokeniser; where a candidate gives anything else the word keeps
its own form.

Measured on a sample of real written questions (heading, question and answer text; member and department
names for section 3):

1. recall of inflections: the 2,000 commonest heading words, each searched alone; the questions that contain
   the word in singular or plural (the other number from the `inflect` package, kept when it is itself a
   word of the sample) are the ground truth; and verb forms of 45 common verbs;
2. wrong matches: hand-labelled pairs that must stay apart and pairs that must merge; over the vocabulary
   (words seen at least 5 times), the words each method merges with another, the merges no inflection rule
   explains, and the extra questions a one-word search returns beyond the ground truth;
3. members' and departments' names changed;
4. speed and size on disk.

    python3 -m venv .venv-wordforms && .venv-wordforms/bin/pip install -r bench/requirements-wordforms.txt
    .venv-wordforms/bin/python bench/wordforms.py [path/to/written_questions_sample.jsonl.gz]
"""

from __future__ import annotations

import functools
import gzip
import json
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from questions.search.words import words  # noqa: E402

DEFAULT_SAMPLE = ROOT / "questions" / "fixtures" / "written_questions_sample.jsonl.gz"
TEXT_FIELDS = ("heading", "question", "answer")
NAME_FIELDS = ("asking_member", "answering_member", "department")
HEADING_WORDS = 2000
MIN_COUNT = 5
RUNS = 3
POS_ORDER = ("NOUN", "VERB", "ADJ", "ADV")

INSTALL = "pip install -r bench/requirements-wordforms.txt (into a separate virtualenv)"

# --- hand-labelled pairs ----------------------------------------------------------------------

# Words of another meaning: a base-form function must keep each pair apart.
MUST_STAY_APART: list[tuple[str, str]] = [
    ("governance", "government"), ("publicity", "public"), ("accountancy", "account"), ("police", "policy"),
    ("university", "universe"), ("community", "communication"), ("new", "news"), ("national", "nation"),
    ("general", "generally"), ("operate", "operation"), ("organ", "organisation"), ("provide", "provision"),
    ("international", "internal"), ("department", "depart"), ("education", "educate"),
    ("relation", "relative"), ("effective", "effect"), ("environment", "environmental"),
    ("secure", "security"), ("energy", "energetic"), ("immigrant", "immigration"), ("industry", "industrial"),
    ("person", "personal"), ("local", "locally"), ("office", "officer"), ("officer", "official"),
    ("minister", "ministry"), ("state", "statement"), ("regulate", "regulation"),
    ("commission", "commissioner"), ("agriculture", "agricultural"), ("victim", "victimisation"),
    ("develop", "development"), ("employ", "employment"), ("employ", "employer"), ("pay", "payment"),
    ("tax", "taxation"), ("build", "builder"), ("deliver", "delivery"), ("invest", "investment"),
    ("treat", "treatment"), ("arm", "army"), ("assist", "assistance"), ("access", "accessible"),
    ("consult", "consultation"), ("constitution", "constituency"), ("constituent", "constituency"),
    ("medical", "medicine"), ("prevent", "prevention"), ("protect", "protection"), ("disable", "disability"),
    ("support", "supporter"), ("fish", "fishery"), ("house", "housing"), ("universal", "universe"),
    ("probation", "probate"), ("business", "busy"), ("author", "authority"), ("inform", "information"),
    ("investigate", "investigation"), ("compete", "competition"), ("crime", "criminal"),
    ("migrant", "migration"), ("transport", "transportation"), ("electric", "electricity"),
    ("nature", "natural"), ("political", "politics"), ("ration", "rational"), ("civil", "civilian"),
    ("condition", "conditional"), ("care", "careful"), ("critic", "critical"), ("academy", "academic"),
    ("hospital", "hospitality"), ("defence", "defensive"), ("commons", "common"),
]

# Inflections of one word: a base-form function must give each group one base form.
MUST_MERGE: list[tuple[str, ...]] = [
    ("prison", "prisons"), ("policy", "policies"), ("child", "children"), ("woman", "women"),
    ("fund", "funds", "funded"), ("assess", "assessed"), ("ban", "banned"), ("apply", "applied"),
    ("police", "polices"), ("intelligence", "intelligences"), ("meeting", "meetings"),
    ("building", "buildings"), ("school", "schools"), ("farmer", "farmers"), ("hospital", "hospitals"),
    ("man", "men"), ("country", "countries"), ("family", "families"), ("company", "companies"),
    ("service", "services"), ("analysis", "analyses"), ("crisis", "crises"), ("criterion", "criteria"),
    ("tax", "taxes"), ("process", "processes"), ("business", "businesses"), ("bus", "buses"),
    ("life", "lives"), ("wife", "wives"), ("knife", "knives"), ("fund", "funding"),
    ("apply", "applies", "applying"), ("plan", "planned", "planning"), ("make", "made", "makes"),
    ("take", "took", "taken"), ("pay", "paid"), ("meet", "met"), ("build", "built"), ("hold", "held"),
    ("tackle", "tackled", "tackling"), ("closure", "closures"), ("veteran", "veterans"),
]

# Common verbs of the sample with their forms (base, -s, past, -ing, and the past participle where it
# differs); forms absent from the sample are skipped.
VERBS: dict[str, tuple[str, ...]] = {
    "fund": ("funds", "funded", "funding"), "assess": ("assesses", "assessed", "assessing"),
    "ban": ("bans", "banned", "banning"), "apply": ("applies", "applied", "applying"),
    "publish": ("publishes", "published", "publishing"), "support": ("supports", "supported", "supporting"),
    "provide": ("provides", "provided", "providing"), "increase": ("increases", "increased", "increasing"),
    "reduce": ("reduces", "reduced", "reducing"), "ensure": ("ensures", "ensured", "ensuring"),
    "improve": ("improves", "improved", "improving"), "consider": ("considers", "considered", "considering"),
    "introduce": ("introduces", "introduced", "introducing"), "protect": ("protects", "protected", "protecting"),
    "deliver": ("delivers", "delivered", "delivering"), "review": ("reviews", "reviewed", "reviewing"),
    "plan": ("plans", "planned", "planning"), "meet": ("meets", "met", "meeting"),
    "make": ("makes", "made", "making"), "take": ("takes", "took", "taking", "taken"),
    "receive": ("receives", "received", "receiving"), "allocate": ("allocates", "allocated", "allocating"),
    "invest": ("invests", "invested", "investing"), "tackle": ("tackles", "tackled", "tackling"),
    "monitor": ("monitors", "monitored", "monitoring"), "report": ("reports", "reported", "reporting"),
    "prevent": ("prevents", "prevented", "preventing"), "close": ("closes", "closed", "closing"),
    "recruit": ("recruits", "recruited", "recruiting"), "train": ("trains", "trained", "training"),
    "build": ("builds", "built", "building"), "help": ("helps", "helped", "helping"),
    "require": ("requires", "required", "requiring"), "use": ("uses", "used", "using"),
    "pay": ("pays", "paid", "paying"), "record": ("records", "recorded", "recording"),
    "develop": ("develops", "developed", "developing"), "commission": ("commissions", "commissioned",
                                                                      "commissioning"),
    "extend": ("extends", "extended", "extending"), "hold": ("holds", "held", "holding"),
    "expect": ("expects", "expected", "expecting"), "estimate": ("estimates", "estimated", "estimating"),
    "affect": ("affects", "affected", "affecting"), "prioritise": ("prioritises", "prioritised", "prioritising"),
    "employ": ("employs", "employed", "employing"), "process": ("processes", "processed", "processing"),
}

NAME_EXAMPLES = ("jones", "williams", "davies", "phillips", "evans", "hughes", "roberts", "edwards", "james",
                 "thomas", "commons", "nhs", "hmrc", "affairs", "services", "works", "pensions")


# --- the candidates ---------------------------------------------------------------------------------


def as_word(raw: Callable[[str], str | None]) -> Callable[[str], str]:
    """`raw` casefolded, or the word itself where `raw` gives nothing or not a single tokeniser word."""

    def base(word: str) -> str:
        lemma = raw(word)
        if not lemma:
            return word
        lemma = lemma.casefold()
        return lemma if words(lemma) == [lemma] else word

    return base


def make_simplemma() -> Callable[[str], str]:
    import simplemma

    return as_word(lambda w: simplemma.lemmatize(w, lang="en"))


def make_lemminflect(plural_fallback: str = "") -> Callable[[str], str]:
    from lemminflect import getAllLemmas

    def raw(word: str) -> str | None:
        lemmas = getAllLemmas(word)
        if "AUX" in lemmas and word not in lemmas.get("NOUN", ()):
            return lemmas["AUX"][0]
        for pos in POS_ORDER:
            if pos in lemmas:
                return lemmas[pos][0]
        if plural_fallback and word.endswith("s"):
            stems = [word[:-1]] + ([word[:-2]] if plural_fallback == "s/es" and word.endswith("es") else [])
            for stem in stems:
                nouns = getAllLemmas(stem, upos="NOUN") if stem else {}
                if "NOUN" in nouns:
                    return nouns["NOUN"][0]
        return None

    return as_word(raw)


def make_spacy_lookup() -> Callable[[str], str]:
    import spacy_lookups_data

    path = Path(spacy_lookups_data.__file__).parent / "data" / "en_lemma_lookup.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        table: dict[str, str] = json.load(fh)
    return as_word(table.get)


def make_snowball() -> Callable[[str], str]:
    import snowballstemmer

    stemmer = snowballstemmer.stemmer("english")
    return as_word(stemmer.stemWord)


FACTORIES: dict[str, tuple[Callable[[], Callable[[str], str]], tuple[str, ...], str]] = {
    # name: (factory, distributions it needs, statement that loads it and makes one call)
    "exact": (lambda: (lambda w: w), (), "pass"),
    "snowball": (make_snowball, ("snowballstemmer",),
                 "import snowballstemmer; snowballstemmer.stemmer('english').stemWord('prisons')"),
    "simplemma": (make_simplemma, ("simplemma",), "import simplemma; simplemma.lemmatize('prisons', lang='en')"),
    "lemminflect": (make_lemminflect, ("lemminflect", "numpy"),
                    "from lemminflect import getAllLemmas; getAllLemmas('prisons')"),
    "lemminflect+s": (lambda: make_lemminflect("s"), ("lemminflect", "numpy"),
                      "from lemminflect import getAllLemmas; getAllLemmas('prisons')"),
    "lemminflect+s/es": (lambda: make_lemminflect("s/es"), ("lemminflect", "numpy"),
                         "from lemminflect import getAllLemmas; getAllLemmas('prisons')"),
    "spacy-lookup": (make_spacy_lookup, ("spacy-lookups-data",),
                     "import gzip, json, pathlib, spacy_lookups_data as s; json.load(gzip.open(pathlib.Path("
                     "s.__file__).parent / 'data' / 'en_lemma_lookup.json.gz'))"),
}
CANDIDATES = ("simplemma", "lemminflect", "lemminflect+s", "lemminflect+s/es", "spacy-lookup")
PROBES = ("ai", "as", "us", "first", "number", "housing", "building", "commons", "james", "new", "better")


# --- the sample -------------------------------------------------------------------------------------


class Sample:
    def __init__(self, path: Path) -> None:
        self.docs: list[set[str]] = []
        self.names: Counter[str] = Counter()
        self.surnames: Counter[str] = Counter()
        self.departments: Counter[str] = Counter()
        self.count: Counter[str] = Counter()
        self.heading_count: Counter[str] = Counter()
        self.stream: list[str] = []
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                seen: set[str] = set()
                for field in TEXT_FIELDS:
                    cut = words(record.get(field) or "")
                    self.count.update(cut)
                    seen.update(cut)
                    if field == "heading":
                        self.heading_count.update(cut)
                    if len(self.stream) < 1_000_000:
                        self.stream.extend(cut)
                self.docs.append(seen)
                for field in ("asking_member", "answering_member"):
                    cut = words(record.get(field) or "")
                    self.names.update(cut)
                    if cut:
                        self.surnames[cut[-1]] += 1
                self.departments.update(words(record.get("department") or ""))
        self.index: dict[str, list[int]] = defaultdict(list)
        for qid, seen in enumerate(self.docs):
            for word in seen:
                self.index[word].append(qid)
        self.vocab = set(self.count)

    def having(self, forms: Iterable[str]) -> set[int]:
        found: set[int] = set()
        for form in forms:
            found.update(self.index.get(form, ()))
        return found


# --- inflection oracles ---------------------------------------------------------------------------


class Oracle:
    """Which two words are inflections of one word, by rules independent of the candidates.

    Nouns: singular/plural by the `inflect` package. Verbs: regular suffixes (-s, -es, -ed, -d, -ing,
    y -> ied/ies, doubled final consonant, dropped final e), and irregular verbs from LemmInflect's
    inflection tables (its VERB table only). A hand-labelled pair that must stay apart is never explained.
    """

    def __init__(self) -> None:
        import inflect
        from lemminflect import getAllInflections, getAllLemmas

        self.engine = inflect.engine()
        self._infl = getAllInflections
        self._lemmas = getAllLemmas
        self.apart = {frozenset(p) for p in MUST_STAY_APART}

    @functools.cache  # noqa: B019 - one oracle per run
    def other_number(self, word: str) -> str | None:
        if not word.isalpha():
            return None
        single = self.engine.singular_noun(word)
        other = single if single else self.engine.plural_noun(word)
        return other if other and other != word else None

    @staticmethod
    def stems(word: str) -> set[str]:
        out = {word}
        for suffix in ("s", "es", "ed", "d", "ing"):
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                stem = word[: -len(suffix)]
                out.add(stem)
                if suffix in ("ed", "ing"):
                    out.add(stem + "e")
                    if len(stem) > 2 and stem[-1] == stem[-2]:
                        out.add(stem[:-1])
        for suffix in ("ies", "ied"):
            if word.endswith(suffix) and len(word) > 4:
                out.add(word[:-3] + "y")
        return out

    @functools.cache  # noqa: B019
    def verb_forms(self, word: str) -> frozenset[str]:
        forms = {word}
        for lemma in {word, *self._lemmas(word, upos="VERB").get("VERB", ())}:
            forms.add(lemma)
            for inflected in self._infl(lemma, upos="VERB").values():
                forms.update(inflected)
        return frozenset(forms)

    def explains(self, a: str, b: str) -> bool:
        if a == b:
            return True
        if frozenset((a, b)) in self.apart:
            return False
        if self.other_number(a) == b or self.other_number(b) == a:
            return True
        if self.stems(a) & self.stems(b):
            return True
        return b in self.verb_forms(a) or a in self.verb_forms(b)


# --- measures -------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[object]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SAMPLE
    missing = []
    for dist in ("simplemma", "lemminflect", "spacy-lookups-data", "snowballstemmer", "inflect"):
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        print(f"missing {', '.join(missing)}: {INSTALL}", file=sys.stderr)
        return 2

    print(f"machine: {platform.machine()}, Python {platform.python_version()}; sample {path.name}")
    print("versions: " + ", ".join(f"{d} {metadata.version(d)}" for d in
                                   ("simplemma", "lemminflect", "spacy-lookups-data", "snowballstemmer",
                                    "inflect")))
    sample = Sample(path)
    print(f"{len(sample.docs)} questions, {len(sample.vocab)} distinct words, "
          f"{sum(1 for c in sample.count.values() if c >= MIN_COUNT)} seen >= {MIN_COUNT} times\n")

    methods = {name: FACTORIES[name][0]() for name in FACTORIES}
    bases: dict[str, dict[str, str]] = {}
    groups: dict[str, dict[str, list[str]]] = {}
    base_index: dict[str, dict[str, set[int]]] = {}
    for name, fn in methods.items():
        b = {w: fn(w) for w in sample.vocab}
        bases[name] = b
        g: dict[str, list[str]] = defaultdict(list)
        for w, base in b.items():
            g[base].append(w)
        groups[name] = g
        base_index[name] = {}

    def found(name: str, query: str) -> set[int]:
        base = methods[name](query)
        cache = base_index[name]
        if base not in cache:
            cache[base] = sample.having(groups[name].get(base, ()))
        return cache[base]

    oracle = Oracle()
    names = list(methods)

    # 1. recall of singular/plural
    top = [w for w, _ in sample.heading_count.most_common(HEADING_WORDS)]
    truth: dict[str, set[int]] = {}
    paired = []
    for w in top:
        other = oracle.other_number(w)
        if other in sample.vocab and frozenset((w, other)) not in oracle.apart:
            truth[w] = sample.having((w, other))
            paired.append(w)
        else:
            truth[w] = sample.having((w,))
    print(f"## 1. Recall of singular/plural: the {HEADING_WORDS} commonest heading words searched alone\n")
    print(f"{len(paired)} of them have their other number (from inflect) in the sample.\n")
    rows = []
    for label, chosen in (("all 2,000 words", top), ("words with both numbers in the sample", paired)):
        total = sum(len(truth[w]) for w in chosen)
        rows.append([label, total] + [pct(sum(len(found(n, w) & truth[w]) for w in chosen), total) for n in names])
    for w in ("school", "prisons", "farmer", "hospitals"):
        t = truth.get(w) or sample.having((w, oracle.other_number(w) or w))
        rows.append([f"`{w}`", len(t)] + [f"{len(found(n, w) & t)}" for n in names])
    table(["queries", "questions (truth)"] + names, rows)

    # 1b. verb forms
    print("## 1b. Recall of verb forms: each form of 45 common verbs searched alone\n")
    print("Truth: the questions with any form of the verb. Share found, by the form searched.\n")
    by_kind: dict[str, dict[str, list[int]]] = {n: defaultdict(lambda: [0, 0]) for n in names}
    for verb, forms in VERBS.items():
        present = [f for f in (verb, *forms) if f in sample.vocab]
        t = sample.having(present)
        for i, form in enumerate((verb, *forms)):
            if form not in sample.vocab:
                continue
            kind = ("base", "-s", "past", "-ing", "past participle")[i]
            if kind == "past participle":
                kind = "past"
            for n in names:
                acc = by_kind[n][kind]
                acc[0] += len(found(n, form) & t)
                acc[1] += len(t)
    rows = []
    for kind in ("base", "-s", "past", "-ing"):
        rows.append([kind] + [pct(*by_kind[n][kind]) for n in names])
    rows.append(["all forms"] + [pct(sum(a[0] for a in by_kind[n].values()), sum(a[1] for a in by_kind[n].values()))
                                 for n in names])
    table(["form searched"] + names, rows)

    # 2. hand-labelled pairs
    print(f"## 2. Wrong matches\n\n(i) {len(MUST_STAY_APART)} pairs that must stay apart: how many each merges\n")
    rows = []
    merged_lists = {}
    for n in names:
        fn = methods[n]
        merged = [f"{a}/{b}" for a, b in MUST_STAY_APART if fn(a) == fn(b)]
        merged_lists[n] = merged
        rows.append([n, len(merged), ", ".join(merged) or "-"])
    table(["method", "merged", "which"], rows)
    print(f"(ii) {len(MUST_MERGE)} groups that must merge: how many each misses\n")
    rows = []
    for n in names:
        fn = methods[n]
        missed = ["/".join(g) for g in MUST_MERGE if len({fn(w) for w in g}) > 1]
        rows.append([n, len(missed), ", ".join(missed) or "-"])
    table(["method", "missed", "which"], rows)

    # 2 (iii). merges over the vocabulary
    common = {w for w, c in sample.count.items() if c >= MIN_COUNT}
    print(f"(iii) Over the {len(common)} words seen >= {MIN_COUNT} times: words merged with another; merges no "
          "inflection rule explains (see the Oracle class); extra questions a one-word search of the "
          f"{HEADING_WORDS} heading words returns beyond the truth of section 1 (explained = from words the "
          "oracle calls inflections of the query, e.g. verb forms; noise = the rest)\n")
    rows = []
    wrong_pairs: dict[str, list[tuple[int, str, str, str]]] = {}
    for n in names:
        g: dict[str, list[str]] = defaultdict(list)
        for w in common:
            g[bases[n][w]].append(w)
        merged_words = sum(len(ws) for ws in g.values() if len(ws) > 1)
        bad_words: set[str] = set()
        pairs = []
        for base, ws in g.items():
            if len(ws) < 2:
                continue
            for i, a in enumerate(ws):
                for b in ws[i + 1:]:
                    if not oracle.explains(a, b):
                        bad_words.update((a, b))
                        pairs.append((min(len(sample.index[a]), len(sample.index[b])), a, b, base))
        pairs.sort(reverse=True)
        wrong_pairs[n] = pairs
        explained_extra = noise = 0
        for w in top:
            extra = found(n, w) - truth[w]
            if not extra:
                continue
            ok = sample.having(v for v in groups[n][methods[n](w)] if oracle.explains(w, v))
            explained_extra += len(extra & ok)
            noise += len(extra - ok)
        rows.append([n, merged_words, len(bad_words), len(pairs), explained_extra, noise])
    table(["method", "words merged", "words in an unexplained merge", "unexplained pairs",
           "extra questions (explained)", "extra questions (noise)"], rows)
    print("Questions a one-word search returns (probes):\n")
    table(["query"] + names, [[f"`{w}`"] + [len(found(n, w)) for n in names] for w in PROBES])
    for n in names:
        if n == "exact":
            continue
        print(f"20 biggest unexplained merges, {n} (questions of the rarer word): " + ", ".join(
            f"{a}/{b}->{base} ({q})" for q, a, b, base in wrong_pairs[n][:20]) + "\n")

    # 3. names
    print("## 3. Names: words of members' names and departments that a method changes\n")
    rows = []
    for label, counter in (("members' surnames", sample.surnames), ("all words of members' names", sample.names),
                           ("words of department names", sample.departments)):
        row: list[object] = [label, len(counter)]
        for n in names:
            changed = [w for w in counter if methods[n](w) != w]
            row.append(len(changed))
        rows.append(row)
    table(["names", "distinct words"] + names, rows)
    for n in CANDIDATES + ("snowball",):
        changed = sorted((w for w in set(sample.surnames) | set(sample.departments) if methods[n](w) != w),
                         key=lambda w: -(sample.surnames[w] + sample.departments[w]))
        print(f"{n} changes: " + ", ".join(f"{w}->{methods[n](w)}" for w in changed[:25]) + "\n")
    table(["word"] + names, [[w] + [methods[n](w) for n in names] for w in NAME_EXAMPLES])

    # 4. speed and size
    print(f"## 4. Speed (words/s, median of {RUNS} runs and range) and size on disk\n")
    vocab = sorted(sample.vocab)
    stream = sample.stream
    rows = []
    for n in names:
        fresh = FACTORIES[n][0]()
        cold, cached = [], []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            for w in vocab:
                fresh(w)
            cold.append(len(vocab) / (time.perf_counter() - t0))
            memo = functools.lru_cache(maxsize=65536)(fresh)
            t0 = time.perf_counter()
            for w in stream:
                memo(w)
            cached.append(len(stream) / (time.perf_counter() - t0))
        loads = []
        if n != "exact":
            for _ in range(RUNS):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", FACTORIES[n][2]], check=True)
                loads.append(time.perf_counter() - t0)
        size = 0.0
        for dist in FACTORIES[n][1]:
            files = metadata.distribution(dist).files or []
            size += sum(f.locate().stat().st_size for f in files if f.locate().exists()) / 1e6
        rows.append([n, fmt(cold), fmt(cached), fmt(loads, "{:.2f} s") if loads else "-",
                     f"{size:.1f} MB ({' + '.join(FACTORIES[n][1]) or '-'})"])
    table([f"method (cold: {len(vocab)} distinct words; cached: lru_cache over {len(stream)} words of text)",
           "cold", "cached", "load + first call (new process)", "size on disk"], rows)
    return 0


def fmt(values: list[float], pattern: str = "{:,.0f}") -> str:
    return f"{pattern.format(statistics.median(values))} ({pattern.format(min(values))}-{pattern.format(max(values))})"


if __name__ == "__main__":
    sys.exit(main())
