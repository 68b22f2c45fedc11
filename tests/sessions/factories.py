import factory

from sessions.models import Engine, WhatsAppNumber
from tests.crm.factories import ClientFactory


class WhatsAppNumberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WhatsAppNumber
        skip_postgeneration_save = True

    client = factory.SubFactory(ClientFactory)
    alias = factory.Sequence(lambda n: f"Line {n}")
    display_number = factory.Sequence(lambda n: f"+51 987 {n % 1000:03d} {n % 1000:03d}")
    phone_number_id = factory.Sequence(lambda n: f"1065403522{n:05d}")
    engine = Engine.CLOUD
    access_token = factory.Sequence(lambda n: f"EAAG-test-access-token-{n:08d}-abcdef")
    verify_token = factory.Sequence(lambda n: f"verify-{n}")

    @factory.post_generation
    def session(obj, create, extracted, **kwargs):
        if create:  # as the services do: every saved number has its session row
            from sessions.services import number_session_ensure

            number_session_ensure(number=obj)
