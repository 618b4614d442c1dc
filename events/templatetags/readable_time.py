"""`{% load readable_time %}{{ value|readable }}`: events.timefmt.readable in templates."""

from django import template

from events.timefmt import readable as readable_instant

register = template.Library()


@register.filter
def readable(value):
    return readable_instant(value) if value else ""
