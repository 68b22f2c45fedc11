import factory

from campaigns.models import Campaign, Recipient
from conversations.models import MessageTemplate
from sessions.models import Engine
from tests.conversations.factories import ContactFactory
from tests.crm.factories import ClientFactory
from tests.sessions.factories import WhatsAppNumberFactory


class CampaignFactory(factory.django.DjangoModelFactory):
    """A draft campaign of free text on a sandbox number."""

    class Meta:
        model = Campaign

    client = factory.SubFactory(ClientFactory)
    number = factory.SubFactory(
        WhatsAppNumberFactory, client=factory.SelfAttribute("..client"), engine=Engine.SANDBOX, access_token=""
    )
    name = factory.Sequence(lambda n: f"Campaign {n}")
    message = "Hola {{nombre}}"


class MessageTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MessageTemplate

    client = factory.SubFactory(ClientFactory)
    number = None
    name = factory.Sequence(lambda n: f"promo_{n}")
    language = "es"
    body = "Hola {{1}}, tenemos una oferta para ti."


class TemplateCampaignFactory(CampaignFactory):
    """A draft campaign of a Cloud API number, sent as an approved template."""

    number = factory.SubFactory(WhatsAppNumberFactory, client=factory.SelfAttribute("..client"), engine=Engine.CLOUD)
    message = ""
    template = factory.SubFactory(
        MessageTemplateFactory, client=factory.SelfAttribute("..client"), number=factory.SelfAttribute("..number")
    )
    template_parameters = factory.LazyFunction(lambda: ["{{nombre}}"])


class RecipientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Recipient

    campaign = factory.SubFactory(CampaignFactory)
    contact = factory.SubFactory(ContactFactory, client=factory.SelfAttribute("..campaign.client"))
    phone = factory.SelfAttribute("contact.phone")
    variables = factory.LazyAttribute(lambda o: {"nombre": o.contact.name})
