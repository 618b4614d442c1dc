from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents_app"
    verbose_name = "Agent registry"

    def ready(self) -> None:
        from agents_app.projections import CurrentProjection, RevisionsProjection
        from agents_app.selectors import agent_stream_labels
        from events.labelling import stream_labeller_register
        from events.projections import projection_register

        projection_register(CurrentProjection())
        projection_register(RevisionsProjection())
        # The event log names each agent's stream and links its page (events.labelling).
        stream_labeller_register(agent_stream_labels)
