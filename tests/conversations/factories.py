import factory

from conversations.models import Contact, Conversation, Message
from tests.crm.factories import ClientFactory
from tests.sessions.factories import WhatsAppNumberFactory


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    client = factory.SubFactory(ClientFactory)
    phone = factory.Sequence(lambda n: f"+5491155{n:06d}")
    name = factory.Sequence(lambda n: f"Customer {n}")


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    client = factory.SubFactory(ClientFactory)
    number = factory.SubFactory(WhatsAppNumberFactory, client=factory.SelfAttribute("..client"))
    contact = factory.SubFactory(ContactFactory, client=factory.SelfAttribute("..client"))


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    number = factory.SelfAttribute("conversation.number")
    direction = Message.Direction.INBOUND
    body = "hola"
    status = Message.Status.RECEIVED
