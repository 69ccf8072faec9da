import unicodedata

from django import forms
from django.core.exceptions import ValidationError

from alerts.models import Subscription
from questions.forms import QueryField
from questions.middleware import describe

# Control, format (such as a right-to-left override), private-use, unassigned and line or paragraph
# separator characters: none belongs in a name shown in emails and pages.
NOT_PLAIN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


class NameField(forms.CharField):
    """A name people give an alert: plain text on one line."""

    def validate(self, value):
        super().validate(value)
        for position, character in enumerate(value or ""):
            if unicodedata.category(character) in NOT_PLAIN:
                raise ValidationError(
                    f"The name contains a character that can’t be used in it ({describe(character)}) at character "
                    f"{position + 1}: a name is plain text on one line.", code="name")


class AlertFields(forms.Form):
    q = QueryField(label="Search", help_text="The words to look for, as on the search page.")
    label = NameField(label="Name for this alert (optional)", required=False,
                      max_length=Subscription._meta.get_field("label").max_length)
    frequency = forms.ChoiceField(label="How often", choices=Subscription.Frequency.choices,
                                  initial=Subscription.Frequency.IMMEDIATE, widget=forms.RadioSelect)
    alert_on = forms.ChoiceField(label="Email me about", choices=Subscription.AlertOn.choices,
                                 initial=Subscription.AlertOn.BOTH, widget=forms.RadioSelect)

    def query_error(self) -> str:
        return " ".join(self.errors.get("q", []))


class SignupForm(AlertFields):
    email = forms.EmailField(label="Your email address", max_length=254,
                             widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    # Hidden from people by CSS and from screen readers by aria-hidden; bots fill it in.
    website = forms.CharField(required=False, label="Leave this empty")

    field_order = ["email", "q", "label", "frequency", "alert_on", "website"]


class EmailForm(forms.Form):
    email = forms.EmailField(label="Your email address", max_length=254,
                             widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    website = forms.CharField(required=False, label="Leave this empty")
