"""Settings for the benchmark run: the service's own settings plus the peers' apps.

The peers (django-reversion, django-simple-history) need their apps and tables in the same
database as the service's so that every system runs on the same PostgreSQL server, the
same data and the same connection settings. Nothing else differs from project.settings.
"""

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "reversion", "simple_history", "bench.peers"]
