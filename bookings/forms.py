"""The booking form: template, people, window, and a repeat (weekly until a date, or a raw RRULE)."""

from __future__ import annotations

from django import forms

from bookings.recurrence import weekly_rule


class BookingForm(forms.Form):
    title = forms.CharField(max_length=100, required=False)
    template = forms.TypedChoiceField(coerce=int)
    people = forms.TypedMultipleChoiceField(coerce=int, required=False, help_text="Empty: one desktop for you.")
    start = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    end = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    repeat_until = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Repeat every week until this date.",
    )
    rrule = forms.CharField(
        label="Repeat rule (iCalendar RRULE)",
        max_length=500,
        required=False,
        help_text="Instead of 'Repeat until': e.g. FREQ=WEEKLY;BYDAY=TU;COUNT=12",
    )

    def __init__(self, *args, templates=(), people=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = [(t.pk, t.name) for t in templates]
        self.fields["people"].choices = [(u.pk, u.get_username()) for u in people]

    def rule(self) -> str:
        if self.cleaned_data.get("rrule"):
            return self.cleaned_data["rrule"]
        until = self.cleaned_data.get("repeat_until")
        return weekly_rule(until) if until else ""
