import factory

from conversations.identity import phone_identity
from conversations.models import Contact, Conversation, Message
from tests.crm.factories import ClientFactory
from tests.sessions.factories import WhatsAppNumberFactory


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    client = factory.SubFactory(ClientFactory)
    phone = factory.Sequence(lambda n: phone_identity(f"+51987{n:06d}").e164)
    identity_key = factory.LazyAttribute(lambda o: phone_identity(o.phone).key if o.phone else "")
    wa_id = factory.LazyAttribute(lambda o: phone_identity(o.phone).wa_id if o.phone else "")
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
