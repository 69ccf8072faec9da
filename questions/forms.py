import unicodedata

from django import forms
from django.core.exceptions import ValidationError

from questions.middleware import describe, unwanted_character
from questions.models import Question
from questions.search import DUE, MAX_LENGTH, And, QueryError, Term, parse
from questions.searching import Filters, departments

ANSWERED_CHOICES = [("", "All questions"), ("answered", "Answered"), ("unanswered", "Not yet answered")]
TIMING_CHOICES = [("", "Any"), ("overdue", "Overdue now"), ("late", "Answered late")]


class QueryField(forms.CharField):
    """A saved-search query: valid when the language accepts it; the parsed tree is kept."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", MAX_LENGTH)
        super().__init__(**kwargs)

    def validate(self, value):
        super().validate(value)
        # Format characters too (a right-to-left override, say): a search is read by people as well.
        found = [unwanted_character(value or ""),
                 next((i for i, c in enumerate(value or "") if unicodedata.category(c) == "Cf"), None)]
        position = min((p for p in found if p is not None), default=None)
        if position is not None:
            # Before parsing: the parser would take such a character for punctuation and search without it.
            raise ValidationError(
                f"The search contains a character that can’t be searched for ({describe(value[position])}) at "
                f"character {position + 1}: a control, format or Unicode noncharacter. Retype the search "
                "without it.", code="query", params={"position": position})
        if value:
            try:
                parse(value)
            except QueryError as exc:
                raise ValidationError(exc.message, code="query", params={"position": exc.position}) from exc


class SearchForm(forms.Form):
    q = QueryField(label="Search written questions", required=False,
                   widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off",
                                                 "aria-describedby": "search-tips"}))
    house = forms.ChoiceField(label="House", required=False,
                              choices=[("", "Both Houses")] + list(Question.House.choices))
    department = forms.ChoiceField(label="Department", required=False)
    answered = forms.ChoiceField(label="Answered", required=False, choices=ANSWERED_CHOICES)
    tabled_from = forms.DateField(label="Tabled from", required=False,
                                  widget=forms.DateInput(attrs={"type": "date"}))
    tabled_to = forms.DateField(label="Tabled to", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    timing = forms.ChoiceField(label="Answer on time?", required=False, choices=TIMING_CHOICES)
    named_day = forms.BooleanField(label="Named day questions only", required=False)
    due_from = forms.DateField(label="Due on or after", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    due_to = forms.DateField(label="Due on or before", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        known = departments()
        choices = [("", "All departments")] + [(d, d) for d in known]
        asked = self.data.get("department") if self.is_bound else None
        if isinstance(asked, str) and asked and asked not in known and len(asked) <= 200:
            # A department with no questions yet (a new one, or one from a link or an alert) must still be
            # searchable: refusing it would leave the visitor on a page with no results and no reason.
            choices.append((asked, asked))
        self.fields["department"].choices = choices

    def filters(self) -> Filters:
        data = self.cleaned_data
        return Filters(house=data.get("house") or "", department=data.get("department") or "",
                       answered=data.get("answered") or "", tabled_from=data.get("tabled_from"),
                       tabled_to=data.get("tabled_to"), named_day=bool(data.get("named_day")),
                       timing=data.get("timing") or "", due_from=data.get("due_from"), due_to=data.get("due_to"))

    def alert_query(self) -> str:
        """The search with the house, department, named-day and timing filters written into it, for an alert:
        those are fields of the language (the last two its due field); answered and dates are not, and an alert
        is about what is new. Empty when neither words nor those filters were given."""
        query = self.cleaned_data.get("q") or ""
        extra = []
        if self.cleaned_data.get("house"):
            extra.append(f"house:{self.cleaned_data['house']}")
        department = self.cleaned_data.get("department") or ""
        if department and '"' not in department:
            extra.append(f'department:"{department}"')
        if self.cleaned_data.get("named_day"):
            extra.append("due:named")
        if self.cleaned_data.get("timing"):
            extra.append(f"due:{self.cleaned_data['timing']}")
        if not extra:
            return query
        # With no words, the filters alone are the alert's search (a department's every new question).
        combined = " AND ".join([f"({query})", *extra] if query else extra)
        try:
            parse(combined)
        except QueryError:
            return query
        return combined

    def page_only_filters(self) -> bool:
        """Whether filters an alert cannot carry (answered, dates) narrow this page."""
        data = self.cleaned_data
        return any(data.get(name) for name in ("answered", "tabled_from", "tabled_to", "due_from", "due_to"))

    def alert_on(self) -> str:
        """What an alert of this page is to email about, where the page says: the questions overdue now (by the
        filter, or `due:overdue` that every match must have) are heard of as each goes overdue; "" for the
        form's default."""
        query = self.alert_query()
        try:
            node = parse(query) if query else None
        except QueryError:
            node = None
        required = node.children if isinstance(node, And) else (node,)
        return "overdue" if any(isinstance(child, Term) and child.fields == (DUE,) and child.word == "overdue"
                                for child in required) else ""

    def query_error(self) -> tuple[str, int | None] | None:
        for error in self.errors.as_data().get("q", []):
            if error.code == "query":
                return error.message, (error.params or {}).get("position")
        return None
