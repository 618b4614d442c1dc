from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Event store"

    def ready(self) -> None:
        # The store runs the projection runner's hooks in and after each append because the
        # runner registers them here, not because the store imports the runner.
        from events.runner import runner_register

        runner_register()
