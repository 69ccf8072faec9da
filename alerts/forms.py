from django import forms

from alerts.models import Subscription
from questions.forms import QueryField


class AlertFields(forms.Form):
    q = QueryField(label="Search", help_text="The words to look for, as on the search page.")
    label = forms.CharField(label="Name for this alert (optional)", max_length=100, required=False)
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
