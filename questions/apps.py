from django.apps import AppConfig


class QuestionsConfig(AppConfig):
    name = "questions"
    verbose_name = "Question archive"

    def ready(self) -> None:
        from questions.search.words import load_dictionary

        # When a web or worker process starts, before it serves anything or starts threads.
        load_dictionary()
