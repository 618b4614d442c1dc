"""Filters for the admin index: the scheduler's models apart from the registry's own."""

from django import template

register = template.Library()


@register.filter
def without_app(app_list, app_label):
    return [app for app in app_list if app.get("app_label") != app_label]


@register.filter
def only_app(app_list, app_label):
    return [app for app in app_list if app.get("app_label") == app_label]
