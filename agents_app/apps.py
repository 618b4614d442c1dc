from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents_app"
    verbose_name = "Agent registry"

    def ready(self) -> None:
        from agents_app.projections import CurrentProjection, RevisionsProjection
        from events.projections import projection_register

        projection_register(CurrentProjection())
        projection_register(RevisionsProjection())
