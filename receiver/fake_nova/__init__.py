"""A local Nova Embed API emulator with signed webhook delivery and fault injection.

Used by ``nova-sink demo``, ``nova-sink fake-nova``, the tests and the benchmarks::

    fake = create_fake_nova(FakeNovaConfig(deliver_to="http://127.0.0.1:8000/webhooks/nova"))
    fake.state.create_batch("job-1", "acme", ["app-1", "app-2"])
    await fake.run_until_idle()      # every webhook sent (or dropped, by config)
    fake.truth()                     # what reconcile must end up with
"""

from receiver.fake_nova.config import FakeNovaConfig, StatusCase
from receiver.fake_nova.delivery import Attempt, Delivery, DeliveryStats, WebhookDeliverer
from receiver.fake_nova.emulator import FakeNova, create_fake_nova, run_fake_nova
from receiver.fake_nova.state import FakeBatch, FakeJob, FakeNovaState, Rejection, iso

__all__ = [
    "Attempt",
    "Delivery",
    "DeliveryStats",
    "FakeBatch",
    "FakeJob",
    "FakeNova",
    "FakeNovaConfig",
    "FakeNovaState",
    "Rejection",
    "StatusCase",
    "WebhookDeliverer",
    "create_fake_nova",
    "iso",
    "run_fake_nova",
]
