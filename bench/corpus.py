"""Real written questions for the benchmarks: the sample, archives of any size made from it, and saved searches
drawn from its words.

The sample is `questions/fixtures/written_questions_sample.jsonl.gz`: 20,000 real House of Commons written
questions (heading, question, answer, asking and answering member, department, dates), one JSON object a line.
Another copy can be named with the environment variable `BENCH_QUESTIONS_SAMPLE` or each script's
`--sample-file`.

`Archive.record(index, total)` is question `index` of an archive of `total` (the same for the same seed, whatever
the order in which records are asked for, so that the benches and their worker processes agree):

- Indexes are mapped onto the sample through a shuffled order: index `i` takes the real question
  `order[i % 20,000]`. Its heading, question text, asking member and department are the real ones; its date is
  new (dates rise with the index, spread evenly over the sitting days of `START` to the sample's last date), and
  every year written in its text (`2019`, `2023-24`) moves with it, so that an archive's old questions speak of
  old years.
- The first 20,000 indexes are the real questions themselves, with the real answer where there is one. From
  the 20,001st on, each is a new mix: its answer is built from a real answer of the same department (the
  "donor", chosen afresh each time), in which about one sentence in three is swapped for a sentence of another
  answer of that department; a donor cut at 255 characters by the source loses its cut sentence and is topped
  up with sentences of that department to a length drawn from the answers that were not cut. The answering
  minister is the donor's, as is the heading where the real question had none. So at 1M questions each real
  question text comes back about 50 times, each time with a different date, answer and minister.
- A question the sample has no answer for is answered (with a mix as above) when it is dated more than 45 days
  before the archive's end, 19 times in 20: old questions are answered; only the newest are still waiting.

Party and constituency are not in the sample and stay empty; every question is a Commons one.

`SearchDraws` draws saved searches as subscribers write them, from the sample's own words: subjects of the
headings (the more questions a heading has, the more often it is followed), rarer words and phrases of the
texts, pairs of words that occur together, members, ministers and departments, with a few OR, NOT, wildcards and
quoted words. Most match few questions, as most real alerts do; a few are broad.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import html
import itertools
import json
import os
import random
import re
import sys
from bisect import bisect
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "questions/fixtures/written_questions_sample.jsonl.gz"
SAMPLE_ENV = "BENCH_QUESTIONS_SAMPLE"
START = dt.date(2014, 1, 6)
ANSWERED_AFTER_DAYS = 45
SWAP_SHARE = 0.35


def sample_path(given: str | os.PathLike | None = None) -> Path:
    """The sample to read: `given`, else $BENCH_QUESTIONS_SAMPLE, else the project's fixture."""
    path = Path(given or os.environ.get(SAMPLE_ENV) or SAMPLE)
    if not path.is_file():
        sys.exit(f"no sample of real questions at {path}: pass --sample-file or set {SAMPLE_ENV}")
    return path


@functools.lru_cache(maxsize=4)
def load_sample(path: Path) -> tuple[dict, ...]:
    """The sample's records in file order; withdrawn questions kept, as the archive keeps them."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines if line.strip())


class Zipf:
    """Draws items with weight 1 / rank ** s (rank from 1, in the order given)."""

    def __init__(self, items: list, s: float, rng: random.Random) -> None:
        if not items:
            raise ValueError("nothing to draw from")
        self.items = items
        self.rng = rng
        self.cumulative = list(itertools.accumulate(1 / (rank + 1) ** s for rank in range(len(items))))

    def draw(self):
        return self.items[bisect(self.cumulative, self.rng.random() * self.cumulative[-1])]


# --- the archive ------------------------------------------------------------------------------

# A year, and the two digits of a span after it ("2023-24"); numbers of four digits outside these decades are
# amounts, not years.
YEAR_RE = re.compile(r"\b(19[5-9]\d|20[0-4]\d)(?:([-–/])(\d\d)\b)?")
# A sentence ends with a full stop, question or exclamation mark before a space and a capital or digit.
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9£\"“(])")
CUT = "..."
CUT_WORD = re.compile(r"\S*\.\.\.$")


def shift_years(text: str, delta: int) -> str:
    if not delta or not text:
        return text

    def moved(found: re.Match) -> str:
        year = str(int(found.group(1)) + delta)
        if found.group(2):
            return f"{year}{found.group(2)}{(int(found.group(3)) + delta) % 100:02d}"
        return year

    return YEAR_RE.sub(moved, text)


# Words that end with a full stop without ending the sentence ("the right hon. Member").
ABBREVIATIONS = re.compile(r"(?:\b(?:hon|Hon|Mr|Mrs|Ms|Dr|St|No|para|paras|p|pp|e\.g|i\.e|etc|Nos|Co|Ltd|vs?)\.)$")


def sentences_of(paragraph: str) -> list[str]:
    found: list[str] = []
    for piece in SENTENCE_RE.split(paragraph):
        if found and ABBREVIATIONS.search(found[-1]):
            found[-1] += " " + piece
        else:
            found.append(piece)
    return found


def paragraphs_of(answer: str) -> list[list[str]]:
    return [sentences_of(paragraph.strip()) for paragraph in answer.split("\n") if paragraph.strip()]


def sitting_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays from start to end, less most of August and the Christmas weeks."""
    day, days = start, []
    while day <= end:
        recess = (day.month == 8 and day.day > 3) or (day.month == 12 and day.day > 20)
        if day.weekday() < 5 and not recess:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


class Archive:
    def __init__(self, records: tuple[dict, ...], seed: int, prefix: str = "bench-", start: dt.date = START) -> None:
        self.records = records
        self.seed = seed
        self.prefix = prefix
        rng = random.Random(seed)
        self.order = list(range(len(records)))
        rng.shuffle(self.order)
        self.end = max(_date(r["date_tabled"]) for r in records)
        self.days = sitting_days(start, self.end)
        self.tabled = [_date(r["date_tabled"]) for r in records]
        # Per department: the records with an answer (donors), and the whole sentences of their answers.
        self.donors: dict[str, list[int]] = {}
        self.sentences: dict[str, list[tuple[str, int]]] = {}
        self.paragraphs: dict[int, list[list[str]]] = {}
        for number, record in enumerate(records):
            if not record.get("answer") or record.get("is_withdrawn"):
                continue
            department = record.get("department") or ""
            paragraphs = paragraphs_of(record["answer"])
            self.paragraphs[number] = paragraphs
            self.donors.setdefault(department, []).append(number)
            year = self.tabled[number].year
            pool = self.sentences.setdefault(department, [])
            for paragraph in paragraphs:
                pool.extend((sentence, year) for sentence in paragraph if len(sentence) > 20 and CUT not in sentence)
        self.full_lengths = sorted(len(r["answer"]) for r in records
                                   if r.get("answer") and not r.get("answer_truncated") and len(r["answer"]) > 255)

    def __len__(self) -> int:
        return len(self.records)

    def base(self, index: int) -> int:
        """The position in the sample of the real question that question `index` is made from."""
        return self.order[index % len(self.records)]

    def day(self, index: int, total: int) -> dt.date:
        return self.days[min(len(self.days) - 1, index * len(self.days) // max(total, 1))]

    def mixed_answer(self, rng: random.Random, department: str, year: int) -> tuple[list[str], int] | None:
        """Paragraphs of an answer made from a donor of `department` dated `year`; and the donor."""
        donors = self.donors.get(department)
        if not donors:
            return None
        donor = rng.choice(donors)
        pool = self.sentences[department]
        donor_year = self.tabled[donor].year
        paragraphs, length = [], 0
        for paragraph in self.paragraphs[donor]:
            kept = []
            for sentence in paragraph:
                if sentence.endswith(CUT):
                    continue
                if pool and rng.random() < SWAP_SHARE:
                    sentence, from_year = rng.choice(pool)
                    kept.append(shift_years(sentence, year - from_year))
                else:
                    kept.append(shift_years(sentence, year - donor_year))
            if kept:
                paragraphs.append(" ".join(kept))
                length += sum(map(len, kept))
        if self.records[donor].get("answer_truncated") and pool and self.full_lengths:
            target = rng.choice(self.full_lengths)
            extra = []
            while length < target and len(extra) < 12:
                sentence, from_year = rng.choice(pool)
                extra.append(shift_years(sentence, year - from_year))
                length += len(sentence) + 1
            if extra:
                paragraphs.append(" ".join(extra))
        if not paragraphs:
            sentence, from_year = rng.choice(pool) if pool else (self.records[donor]["answer"], donor_year)
            paragraphs.append(shift_years(sentence, year - from_year))
        return paragraphs, donor

    def record(self, index: int, total: int) -> dict:
        """Question `index` of an archive of `total`, as the fields of `questions.Question`."""
        rng = random.Random(self.seed * 10_000_019 + index)
        number = self.base(index)
        real = self.records[number]
        copy = index // len(self.records)
        day = self.day(index, total)
        delta = day.year - self.tabled[number].year
        department = real.get("department") or ""
        heading = real.get("heading") or ""
        withdrawn = bool(real.get("is_withdrawn"))
        minister = ""
        answered_after = None
        paragraphs: list[str] = []
        if real.get("answer") and not withdrawn and copy == 0:
            paragraphs = [" ".join(p) for p in paragraphs_of(shift_years(real["answer"], delta))]
            minister = real.get("answering_member") or ""
            if real.get("date_answered"):
                answered_after = (_date(real["date_answered"]) - self.tabled[number]).days
        elif not withdrawn and (real.get("answer") or (
                (self.end - day).days > ANSWERED_AFTER_DAYS and rng.random() < 0.95)):
            mixed = self.mixed_answer(rng, department, day.year)
            if mixed:
                paragraphs, donor = mixed
                minister = self.records[donor].get("answering_member") or ""
                heading = heading or self.records[donor].get("heading") or ""
                if self.records[donor].get("date_answered"):
                    answered_after = (_date(self.records[donor]["date_answered"]) - self.tabled[donor]).days
        answer = "\n".join(paragraphs)
        if answer and answered_after is None:
            answered_after = rng.randint(3, 40)
        for_answer = _date(real.get("date_for_answer"))
        return {
            "external_id": f"{self.prefix}{index}", "uin": str(real.get("uin") or ""), "house": "Commons",
            "heading": heading, "question_text": shift_years(real.get("question") or "", delta),
            "answer_text": answer, "answer_html": "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs),
            "date_tabled": day,
            "date_for_answer": day + (for_answer - self.tabled[number]) if for_answer else None,
            "date_answered": day + dt.timedelta(days=max(0, answered_after)) if answer else None,
            "is_named_day": bool(real.get("is_named_day")), "is_withdrawn": withdrawn,
            "asking_member_id": real.get("asking_member_id"), "asking_member_name": real.get("asking_member") or "",
            "asking_member_party": "", "asking_member_constituency": "",
            "answering_body_id": None, "answering_body_name": department,
            "answering_member_id": None, "answering_member_name": minister,
            "answering_member_role": "",
        }


def fields_of(record: dict) -> dict[str, str]:
    """The raw text of each query-language field of a record made by `Archive.record`."""
    return {
        "heading": record["heading"], "question": record["question_text"], "answer": record["answer_text"],
        "member": record["asking_member_name"], "party": record["asking_member_party"],
        "constituency": record["asking_member_constituency"], "department": record["answering_body_name"],
        "minister": record["answering_member_name"], "house": record["house"], "uin": record["uin"],
    }


# --- saved searches ---------------------------------------------------------------------------

# Words (in any of their forms) in more questions than this share are the language's glue ("the", "ensure",
# "department", "must"): nobody saves them alone. Broad subjects ("police", "asylum") come from the headings.
GLUE_SHARE = 0.005
NAME_WORD = re.compile(r"^[A-Z][\w'’-]*$")


class SearchDraws:
    """Saved searches as subscribers write them, from the words of `records`."""

    def __init__(self, records: tuple[dict, ...], rng: random.Random) -> None:
        from questions.search import words
        from questions.search.words import base

        self.rng = rng
        self.words = words
        # How many questions hold a word in any of its forms: a search for a word finds all of them.
        df: Counter[str] = Counter()
        texts: list[list[str]] = []
        for record in records:
            # A text the source cut at 255 characters ends in part of a word ("sch..."): not a word anyone types.
            found = words(" ".join(CUT_WORD.sub("", record.get(field) or "")
                                   for field in ("heading", "question", "answer")))
            texts.append(found)
            df.update({base(word) for word in found})
        glue = {word for word, count in df.items() if count > GLUE_SHARE * len(records)}
        glue.update(word for word, _ in df.most_common(150))

        def topical(word: str) -> bool:
            return len(word) >= 3 and not word.isdigit() and base(word) not in glue

        # Subjects of the headings, the most used first: "Special Educational Needs", "Asylum", "Animal Experiments".
        subjects: Counter[str] = Counter()
        for record in records:
            for part in (record.get("heading") or "").split(":"):
                part = part.strip()
                if part and len(words(part)) <= 4 and any(topical(w) for w in words(part)):
                    subjects[part] += 1
        self.subjects = Zipf([s for s, _ in subjects.most_common()], 1.0, rng)
        # Rarer words, in the forms the texts use: in at least 2 questions and at most the glue share, most of them
        # in few; followed in a random order of popularity.
        tail = sorted({w for found in texts for w in found if len(w) >= 4 and topical(w) and df[base(w)] >= 2})
        rng.shuffle(tail)
        self.tail = Zipf(tail, 0.6, rng)
        pairs: Counter[tuple[str, str]] = Counter()
        for found in texts:
            pairs.update({(a, b) for a, b in itertools.pairwise(found) if topical(a) and topical(b)})
        # In a random order of popularity too: the most frequent pairs are the texts' stock phrases.
        phrases = sorted(pair for pair, count in pairs.items() if count >= 2)
        rng.shuffle(phrases)
        self.phrases = Zipf(phrases, 0.6, rng)
        self.texts = [[w for w in found if topical(w)] for found in texts]
        self.texts = [found for found in self.texts if len(set(found)) >= 2]
        self.members = Zipf(self._ranked(records, "asking_member"), 0.9, rng)
        self.ministers = Zipf(self._ranked(records, "answering_member"), 0.9, rng)
        self.departments = Zipf(self._ranked(records, "department"), 0.8, rng)
        # Each department's words, each once: "sewage OR pollution", not the department's commonest words.
        department_words: dict[str, set[str]] = {}
        for record, found in zip(records, texts, strict=True):
            department_words.setdefault(record.get("department") or "", set()).update(
                w for w in found if len(w) >= 4 and topical(w))
        self.department_words = {name: sorted(found) for name, found in department_words.items() if found}

    @staticmethod
    def _ranked(records: tuple[dict, ...], field: str) -> list[str]:
        return [name for name, _ in Counter(r.get(field) for r in records if r.get(field)).most_common()]

    def subject(self) -> str:
        text = self.subjects.draw()
        return f'"{text}"' if " " in text and self.rng.random() < 0.6 else text

    def word(self) -> str:
        """A topic word: half from the headings' subjects (words of a one-word subject), half rarer."""
        if self.rng.random() < 0.5:
            for _ in range(10):
                found = self.words(self.subjects.draw())
                if len(found) == 1:
                    return found[0]
        return self.tail.draw()

    def together(self) -> tuple[str, str]:
        """Two words of one real question."""
        found = self.rng.choice(self.texts)
        first = self.rng.choice(found)
        second = self.rng.choice([w for w in found if w != first])
        return first, second

    def phrase(self) -> str:
        return '"{} {}"'.format(*self.phrases.draw())

    def draw(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.16:
            return self.word()
        if roll < 0.30:
            return self.subject()
        if roll < 0.46:
            return self.phrase()
        if roll < 0.56:
            return "{} {}".format(*self.together())
        if roll < 0.64:
            return f'member:"{self.members.draw()}"' + (f" {self.word()}" if rng.random() < 0.2 else "")
        if roll < 0.66:
            return self.members.draw()
        if roll < 0.68:
            return f'minister:"{self.ministers.draw()}"'
        if roll < 0.75:
            department = self.departments.draw()
            return f'department:"{department}" {rng.choice(self.department_words.get(department) or [self.word()])}'
        if roll < 0.83:
            department = self.department_words.get(self.departments.draw()) or [self.word()]
            return " OR ".join(dict.fromkeys(rng.choice(department) for _ in range(rng.choice((2, 2, 3)))))
        if roll < 0.88:
            first, second = self.together()
            return f"{first} -{second}"
        if roll < 0.93:
            # The stem of a word, as people shorten one to catch its derivations ("procurem*", "vaccinat*").
            word = self.tail.draw()
            return f"{word[:max(6, len(word) - 3)]}*" if len(word) >= 8 else word
        if roll < 0.97:
            return f'"{self.word()}"'
        return f"({self.word()} OR {self.phrase()}) {self.word()}"
