"""The percolator finds exactly what the one evaluator (and the search page's filter) finds, and keeps up with
changes to the saved searches."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.models import Subscriber, Subscription
from alerts.percolator import Percolator, SubscriptionRow
from questions.models import Question
from questions.search import (
    DEFAULT_FIELDS,
    And,
    Not,
    Or,
    Phrase,
    Prefix,
    QueryError,
    Term,
    base_key,
    canonical,
    compile_matcher,
    document,
    parse,
    to_q,
)
from questions.search.percolate import (
    BUCKET,
    FREEZE_OBJECTS,
    WORD,
    QueryIndex,
    Rarity,
    collector_paused,
    iter_bits,
    shard_of,
)
from tests.factories import subscribe, subscriber
from tests.search.seed import SEED_1
from tests.search.strategies import queries, records

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parsed_texts(texts: list[str]) -> list[str]:
    found = []
    for text in texts:
        with contextlib.suppress(QueryError):
            found.append(canonical(parse(text)))
    return found


def expected(texts, documents) -> dict[str, int]:
    """What evaluating every query on every question gives, as the percolator reports it."""
    found = {}
    for text in set(texts):
        matcher = compile_matcher(parse(text, max_length=None))
        mask = sum(1 << position for position, doc in enumerate(documents) if matcher(doc))
        if mask:
            found[text] = mask
    return found


@PROPERTY
@given(
    texts=st.lists(queries(), min_size=1, max_size=25),
    batch=st.lists(records(due=True), min_size=1, max_size=12),
    sample=st.lists(records(), max_size=5),
)
def test_the_percolator_matches_what_evaluating_every_search_on_every_question_matches(texts, batch, sample):
    canonical_texts = parsed_texts(texts)
    documents = [document(record) for record in batch]
    # Rarity from a sample changes which anchors are chosen, never what matches.
    index = QueryIndex(Rarity(document(record) for record in sample))
    for text in canonical_texts:
        index.add(text)

    assert index.match(documents) == expected(canonical_texts, documents)


@PROPERTY
@given(
    texts=st.lists(queries(), min_size=2, max_size=20),
    batch=st.lists(records(due=True), min_size=1, max_size=8),
    data=st.data(),
)
def test_searches_removed_from_the_index_no_longer_match_and_the_rest_still_do(texts, batch, data):
    canonical_texts = parsed_texts(texts)
    index = QueryIndex()
    for text in canonical_texts:
        index.add(text)
    removed = data.draw(st.lists(st.sampled_from(canonical_texts), unique=True)) if canonical_texts else []
    for text in removed:
        # Added once per saved search that uses it, so it goes when all of them are gone.
        for _ in range(canonical_texts.count(text)):
            index.discard(text)
    kept = [text for text in canonical_texts if text not in removed]
    documents = [document(record) for record in batch]

    assert index.match(documents) == expected(kept, documents)
    assert len(index) == len(set(kept))
    for text in removed:
        index.add(text)
    assert index.match(documents) == expected(canonical_texts, documents)


def test_a_search_used_twice_stays_until_both_are_gone():
    index = QueryIndex()
    index.add("police")
    index.add("police")
    index.discard("police")
    assert index.match([document({"heading": "Police"})]) == {"police": 1}
    index.discard("police")
    assert index.match([document({"heading": "Police"})]) == {} and len(index) == 0


def test_a_word_held_twice_by_one_search_stays_for_the_searches_that_still_hold_it():
    index = QueryIndex()
    index.add("(police AND prisons) OR (police AND probation)")
    index.add("police")
    index.discard("(police AND prisons) OR (police AND probation)")
    assert index.match([document({"heading": "Police"})]) == {"police": 1}
    index.discard("police")
    assert len(index) == 0 and index._leaf_ids == {}
    index.add("(police AND prisons) OR (police AND probation)")
    assert index.match([document({"heading": "Police and probation"})]) == {
        "(police AND prisons) OR (police AND probation)": 1
    }


def test_the_contract_examples_match_the_question_of_section_6():
    examples = {
        '"facial recognition"': True, '"recognition facial"': False, 'police AND "artificial intelligence"': True,
        'palantir OR "facial recognition"': True, "police -palantir": True, 'member:"Clive Lewis"': True,
        'member:lewis department:"home office"': True, 'department:(Justice OR "Home Office")': True,
        "minister:johnson house:lords": False, "artificial*": True, "Police: Artificial Intelligence": True,
    }
    index = QueryIndex()
    for text in examples:
        index.add(canonical(parse(text)))
    found = index.match([document({**SEED_1, "house": "Commons"})])
    assert {text for text in examples if canonical(parse(text)) in found} == {t for t, m in examples.items() if m}


# --- anchors ----------------------------------------------------------------------------


def anchors(text: str, rarity: Rarity | None = None):
    return set(QueryIndex(rarity).anchors(parse(text)))


RARITY = Rarity([
    document({"heading": "Police: Artificial Intelligence", "question": "police use of AI", "house": "Commons"}),
    document({"heading": "Police: Palantir", "question": "police contracts", "house": "Commons"}),
    document({"heading": "Schools", "question": "police in schools", "house": "Commons"}),
])


# The default fields' keys: their base forms (for a word as typed) and their words as written (for the rest).
BASE = tuple(map(base_key, DEFAULT_FIELDS))
WRITTEN = DEFAULT_FIELDS


def test_a_word_is_anchored_under_its_fields():
    assert anchors("police") == {(WORD, BASE, "police")}
    assert anchors("member:lewis") == {(WORD, ("base_member",), "lewis")}
    assert anchors("heading:police") == {(WORD, ("base_heading",), "police")}


def test_a_word_is_anchored_by_its_base_form_and_a_quoted_word_as_written():
    assert anchors("prisons") == {(WORD, BASE, "prison")}
    assert anchors("heading:Children") == {(WORD, ("base_heading",), "child")}
    assert anchors('"prisons"') == {(WORD, WRITTEN, "prisons")}
    assert anchors('member:"Lewises"') == {(WORD, ("member",), "lewises")}


def test_an_and_is_anchored_by_its_rarest_child():
    # "palantir" is in one question of the sample, "police" in all three.
    assert anchors("police palantir", RARITY) == {(WORD, BASE, "palantir")}
    # A word never seen counts as rarer than any seen word.
    assert anchors("police drones", RARITY) == {(WORD, BASE, "drone")}
    # "house:commons" is in every question of the sample; a member's name is rare before anything is seen.
    assert anchors("house:commons member:lewis", RARITY) == {(WORD, ("base_member",), "lewis")}
    assert anchors("house:commons member:lewis") == {(WORD, ("base_member",), "lewis")}


def test_a_due_word_anchors_a_query_only_where_it_has_no_rarer_word():
    # Worked out when a question is matched, a due word is in no sample, and yet in many questions.
    assert anchors("palantir due:named", RARITY) == {(WORD, BASE, "palantir")}
    assert anchors("member:lewis due:overdue") == {(WORD, ("base_member",), "lewis")}
    assert {key for _, _, key in anchors("due:overdue", RARITY)} == {"overdue"}


def test_without_a_sample_longer_words_count_as_rarer():
    assert anchors("ai palantir") == {(WORD, BASE, "palantir")}


def test_an_or_is_anchored_by_every_child():
    assert anchors('palantir OR "facial recognition" OR member:lewis', RARITY) == {
        (WORD, BASE, "palantir"), (WORD, WRITTEN, "recognition"), (WORD, ("base_member",), "lewis")
    }


def test_a_phrase_is_anchored_by_its_rarest_word():
    assert anchors('"police contracts"', RARITY) == {(WORD, WRITTEN, "contracts")}
    assert anchors('department:"home office"') == {(WORD, ("department",), "office")}


def test_a_wildcard_is_anchored_by_the_first_three_letters_of_its_prefix():
    assert anchors("polic*") == {(BUCKET, WRITTEN, "pol")}
    assert anchors("member:john*") == {(BUCKET, ("member",), "joh")}


def test_a_negation_contributes_no_anchor():
    assert anchors("police -palantir", RARITY) == {(WORD, BASE, "police")}
    assert anchors("NOT palantir police", RARITY) == {(WORD, BASE, "police")}
    # NOT (palantir OR NOT crime) is crime AND NOT palantir.
    assert anchors("NOT (palantir OR NOT crime)", RARITY) == {(WORD, BASE, "crime")}
    # NOT NOT x is x.
    assert anchors("NOT NOT palantir", RARITY) == {(WORD, BASE, "palantir")}


def test_a_tree_without_anchors_is_checked_against_every_batch():
    # The parser refuses such trees, as they match a question without words; a hand-built one is still right.
    index = QueryIndex()
    only_not = Not(Term(DEFAULT_FIELDS, "palantir"))
    either = Or((Term(DEFAULT_FIELDS, "police"), Not(Term(DEFAULT_FIELDS, "crime"))))
    assert index.anchors(only_not) is None and index.anchors(either) is None
    index.add("only not", only_not)
    index.add("either", either)
    documents = [document({"heading": "Police"}), document({"heading": "Crime"}), document({})]

    assert index.match(documents) == {"only not": 0b111, "either": 0b101}
    index.discard("either", either)
    assert index.match(documents) == {"only not": 0b111}


def test_hand_built_trees_with_other_field_sets_are_matched_through_each_field():
    index = QueryIndex()
    node = And((Phrase(("heading", "member"), ("clive", "lewis")), Prefix(("party", "house"), "lab")))
    text = canonical(node)
    index.add(text)
    documents = [
        document({"member": "Clive Lewis", "party": "Labour"}),
        document({"heading": "Clive Lewis", "house": "Laboratory"}),
        document({"question": "Clive Lewis", "party": "Labour"}),
        document({"member": "Lewis Clive", "party": "Labour"}),
    ]
    assert index.match(documents) == {text: 0b11}


def test_only_a_large_build_that_finished_is_kept_out_of_the_collectors_sight():
    gc.unfreeze()
    try:
        with pytest.raises(RuntimeError), collector_paused():
            built = [[number] for number in range(2 * FREEZE_OBJECTS)]
            raise RuntimeError("the database went away")
        assert gc.get_freeze_count() == 0 and gc.isenabled()
        with collector_paused():
            built = [[number] for number in range(1000)]
        assert gc.get_freeze_count() == 0 and gc.isenabled()
        with collector_paused():
            built = [[number] for number in range(2 * FREEZE_OBJECTS)]
        assert gc.get_freeze_count() > FREEZE_OBJECTS and gc.isenabled() and len(built) == 2 * FREEZE_OBJECTS
    finally:
        gc.unfreeze()


def test_builds_in_two_threads_keep_the_collector_paused_until_the_last_one_ends():
    import threading

    gc.enable()
    inside, leave = threading.Event(), threading.Event()

    def build() -> None:
        with collector_paused():
            inside.set()
            leave.wait(10)

    first = threading.Thread(target=build)
    first.start()
    assert inside.wait(10)
    with collector_paused():
        leave.set()
        first.join(10)
        assert not first.is_alive() and not gc.isenabled()
    assert gc.isenabled()


def test_iter_bits_lists_the_positions_of_set_bits():
    assert list(iter_bits(0b101001)) == [0, 3, 5] and list(iter_bits(0)) == []
    assert list(iter_bits(1 << 999)) == [999]


# --- shards -----------------------------------------------------------------------------


def test_shards_split_the_saved_searches_by_a_stable_hash():
    texts = [canonical(parse(q)) for q in ("police", "palantir", '"facial recognition"', "member:lewis", "artif*",
                                           "schools OR colleges", "tasers -police", "house:lords crime")]
    # The same shard on every machine and run: a fixed hash, not Python's salted hash().
    assert shard_of("police", 4) == 1 and shard_of("police", 1) == 0
    assert sorted(shard_of(text, 3) for text in texts) != [0] * len(texts)
    held = []
    for shard in range(3):
        percolator = Percolator(shard, 3, Rarity())
        for number, text in enumerate(texts):
            percolator.put(SubscriptionRow(number + 1, text, "both", "immediate", 1))
        held.append(percolator.index.texts())
    assert sorted(t for shard in held for t in shard) == sorted(texts)
    assert all(shard_of(text, 3) == number for number, shard in enumerate(held) for text in shard)


# --- the database -----------------------------------------------------------------------


def held(percolator: Percolator) -> dict[int, str]:
    """Subscription id -> saved search, as the percolator holds them."""
    return percolator.held()


def age_all() -> None:
    """Make every subscription look saved long ago, beyond the window that refresh reads again."""
    Subscription.objects.update(updated_at=timezone.now() - dt.timedelta(days=1))


@pytest.mark.django_db
def test_refresh_follows_new_edited_paused_and_deleted_subscriptions():
    reader, other = subscriber(), subscriber("other@example.com")
    police = subscribe(subscriber=reader, query="police")
    tasers = subscribe(subscriber=reader, query="tasers", paused=True)
    subscribe(subscriber=other, query="police")
    age_all()
    percolator = Percolator()
    report = percolator.refresh()
    assert report.full and held(percolator) == {police.pk: "police", police.pk + 2: "police"}
    assert len(percolator) == 1

    report = percolator.refresh()
    assert (report.full, report.loaded, report.removed, report.checked_ids) == (False, 0, 0, False)

    tasers.paused = False
    tasers.save()
    police.query = police.canonical_query = "palantir"
    police.save()
    report = percolator.refresh()
    assert (report.full, report.loaded, report.checked_ids) == (False, 2, False)
    assert sorted(held(percolator).values()) == ["palantir", "police", "tasers"]

    age_all()
    percolator.watermark = timezone.now()
    police.delete()
    assert percolator.refresh().checked_ids
    assert sorted(held(percolator).values()) == ["police", "tasers"] and len(percolator) == 2


@pytest.mark.django_db
def test_refresh_follows_subscribers_confirmed_and_suppressed():
    reader, other, later = subscriber(), subscriber("other@example.com"), subscriber("later@example.com", False)
    police = subscribe(subscriber=reader, query="police")
    subscribe(subscriber=other, query="tasers")
    waiting = subscribe(subscriber=later, query='"stun guns"')
    age_all()
    # Saved now, so the rows above lie before the window that refresh reads again.
    fresh = subscribe(subscriber=reader, query="palantir")
    percolator = Percolator()
    percolator.refresh()
    assert sorted(held(percolator).values()) == ["palantir", "police", "tasers"]

    # Neither touches the subscriptions' rows: the count and sums of active ids tell.
    other.suppress(Subscriber.Suppression.BOUNCED)
    Subscriber.objects.filter(pk=later.pk).update(confirmed_at=timezone.now())

    report = percolator.refresh()
    assert report.checked_ids and (report.loaded, report.removed) == (1, 1)
    assert held(percolator) == {police.pk: "police", waiting.pk: '"stun guns"', fresh.pk: "palantir"}
    assert not percolator.refresh().checked_ids


@pytest.mark.django_db
def test_a_load_of_many_chunks_holds_every_saved_search_once():
    from alerts import percolator as module

    reader = subscriber()
    words = [f"word{number}" for number in range(2 * module.STREAM_CHUNK + 7)]
    Subscription.objects.bulk_create(
        Subscription(subscriber=reader, query=word, canonical_query=word, confirmed_at=timezone.now())
        for word in words)
    expected = dict(Subscription.objects.values_list("id", "canonical_query"))
    percolator = Percolator()
    report = percolator.refresh()
    assert (report.loaded, report.checked_ids) == (len(words), False)
    assert held(percolator) == expected

    # Checked by id after a change the subscription rows do not show: the ids are read the same way.
    age_all()
    percolator.watermark = timezone.now()
    Subscriber.objects.filter(pk=reader.pk).update(suppressed_at=timezone.now())
    report = percolator.refresh()
    assert report.checked_ids and report.removed == len(words) and held(percolator) == {}


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_stream_cut_short_frees_the_connection_and_its_errors_are_databaseerrors():
    from django.db import DatabaseError, transaction
    from django.db.models import F, IntegerField, Value
    from django.db.models.functions import Cast

    from alerts.percolator import STREAM_CHUNK, streamed

    reader = subscriber()
    Subscription.objects.bulk_create(
        Subscription(subscriber=reader, query=f"word{number}", canonical_query=f"word{number}")
        for number in range(3 * STREAM_CHUNK))
    rows = Subscription.objects.values_list("id").order_by("id")
    with pytest.raises(LookupError), streamed(rows) as stream:
        next(stream)
        raise LookupError("a bug while holding the rows")
    assert Subscription.objects.count() == 3 * STREAM_CHUNK

    # The last row divides by zero: read in the order stored, PostgreSQL fails the query after sending two chunks.
    last = rows.last()[0]
    failing = rows.order_by().annotate(broken=Cast(Value(1) / (F("id") - last), IntegerField()))
    failing = failing.values_list("id", "broken")
    read = []
    with pytest.raises(DatabaseError), transaction.atomic(), streamed(failing) as stream:
        read.extend(stream)
    assert len(read) >= STREAM_CHUNK
    assert Subscription.objects.count() == 3 * STREAM_CHUNK


@pytest.mark.django_db
def test_a_first_load_cut_off_by_a_lost_connection_leaves_nothing_held_twice(monkeypatch):
    from django.db import OperationalError

    from alerts import percolator as module

    reader = subscriber()
    words = [f"word{number}" for number in range(3 * module.STREAM_CHUNK)]
    Subscription.objects.bulk_create(
        Subscription(subscriber=reader, query=word, canonical_query=word, confirmed_at=timezone.now())
        for word in words)
    real = module.streamed

    @contextlib.contextmanager
    def cut_off(rows):
        # The rows stop coming half way, as when the server restarts or fails over during the load.
        with real(rows) as stream:
            def rows_then_gone():
                for number, row in enumerate(stream):
                    if number == module.STREAM_CHUNK + 1:
                        raise OperationalError("server closed the connection unexpectedly")
                    yield row
            yield rows_then_gone()

    monkeypatch.setattr(module, "streamed", cut_off)
    percolator = Percolator()
    with pytest.raises(OperationalError):
        percolator.refresh()
    assert percolator.subscriptions == 0 and len(percolator) == 0

    monkeypatch.setattr(module, "streamed", real)
    report = percolator.refresh()
    assert report.full and report.loaded == len(words) and not report.checked_ids
    assert all(percolator.index.references(word) == 1 for word in words)


@pytest.mark.django_db
def test_unconfirmed_subscriptions_are_not_held():
    reader = subscriber()
    subscribe(subscriber=reader, query="police", confirmed_at=None)
    unconfirmed = subscriber("new@example.com", confirmed=False)
    subscribe(subscriber=unconfirmed, query="police")
    percolator = Percolator()
    percolator.refresh()
    assert held(percolator) == {}


@pytest.mark.django_db
def test_a_saved_search_that_no_longer_parses_is_skipped_and_not_read_again_and_again():
    reader = subscriber()
    subscribe(subscriber=reader, query="police")
    broken = Subscription.objects.create(subscriber=reader, query="x", canonical_query="police AND",
                                         confirmed_at=timezone.now())
    percolator = Percolator()
    report = percolator.refresh()
    assert report.refused == 1 and broken.pk not in held(percolator)
    assert not percolator.refresh().checked_ids


# Model columns of each field of the language, and their lengths where they are limited.
COLUMNS = {
    "heading": ("heading", None), "question": ("question_text", None), "answer": ("answer_text", None),
    "member": ("asking_member_name", 200), "party": ("asking_member_party", 200),
    "constituency": ("asking_member_constituency", 200), "department": ("answering_body_name", 200),
    "minister": ("answering_member_name", 200), "house": ("house", 20), "uin": ("uin", 50),
}


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(batch=st.lists(records(), min_size=1, max_size=8), texts=st.lists(queries(), min_size=1, max_size=8))
def test_the_percolator_and_the_search_pages_filter_select_the_same_questions(batch, texts):
    Question.objects.all().delete()
    stored = []
    for number, record in enumerate(batch):
        fields = {COLUMNS[f][0]: (v or "")[: COLUMNS[f][1]] for f, v in record.items()}
        question = Question(external_id=f"p{number}", **fields)
        question.refresh_search_text()
        stored.append(question)
    Question.objects.bulk_create(stored)
    canonical_texts = parsed_texts(texts)
    index = QueryIndex()
    for text in canonical_texts:
        index.add(text)

    found = index.match([question.search_document() for question in stored])

    for text in set(canonical_texts):
        selected = set(Question.objects.filter(to_q(parse(text, max_length=None))).values_list("external_id",
                                                                                                flat=True))
        assert {stored[position].external_id for position in iter_bits(found.get(text, 0))} == selected, text


# --- the percolate command ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_percolate_command_answers_what_the_search_command_answers(tmp_path):
    import json
    from io import StringIO

    from django.core.management import call_command

    from tests.conftest import FIXTURES, load_fixture

    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(record) for record in load_fixture("seed_questions.json")))
    searches = ['"facial recognition"', "police -palantir", "member:lewis department:\"home office\"", "tase*",
                "palantir OR \"stun guns\"", "heading:rights", "police AND", "NOT police", "house:lords", "ai"]
    queries = tmp_path / "queries.jsonl"
    lines = [json.dumps({"id": number, "query": query}) for number, query in enumerate(searches)]
    queries.write_text("\n".join([*lines, "{broken", json.dumps({"id": "x"})]))
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())
    from_database, from_files = StringIO(), StringIO()

    call_command("search", queries=queries, stdout=from_database)
    call_command("percolate", queries=queries, questions=questions, stdout=from_files)

    answers = [json.loads(line) for line in from_files.getvalue().splitlines()]
    assert from_files.getvalue() == from_database.getvalue()
    assert answers[0] == {"id": 0, "matches": ["seed-1", "seed-2", "seed-3", "seed-4", "seed-5"]}
    assert answers[3] == {"id": 3, "matches": ["seed-7"]} and answers[8] == {"id": 8, "matches": []}
    assert [sorted(answer) for answer in answers[6:8]] == [["error", "id"]] * 2
    assert answers[-2]["error"].startswith("line 11 is not valid JSON") and answers[-1]["id"] == "x"
