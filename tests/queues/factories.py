import factory

from queues.models import Queue, QueueMembership
from tests.crm.factories import ClientFactory, UserFactory


class QueueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Queue

    client = factory.SubFactory(ClientFactory)
    name = factory.Sequence(lambda n: f"Queue {n}")


class QueueMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = QueueMembership

    queue = factory.SubFactory(QueueFactory)
    user = factory.SubFactory(UserFactory)
