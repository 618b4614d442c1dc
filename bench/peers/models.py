"""The agent definition as each Django peer stores it: raw text, name, and a version counter.

`version` is what an If-Match check compares (W2); both peers copy every field into each
stored version, so the version number is also how W5 finds "revision N".
"""

import reversion
from django.db import models
from simple_history.models import HistoricalRecords


@reversion.register()
class ReversionAgent(models.Model):
    """An agent definition versioned by django-reversion (a Version row per save in create_revision)."""

    name = models.CharField(max_length=64, unique=True)
    content = models.TextField()
    version = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return self.name


class HistoryAgent(models.Model):
    """An agent definition versioned by django-simple-history (a historical row per save)."""

    name = models.CharField(max_length=64, unique=True)
    content = models.TextField()
    # Indexed so that the historical table can find "version N" of an agent by index too.
    version = models.PositiveIntegerField(default=1, db_index=True)
    history = HistoricalRecords()

    def __str__(self) -> str:
        return self.name
