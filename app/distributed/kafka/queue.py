"""The distributed runtime's request queue: requests go to Kafka, the Flink job calls the vendors.

A background check lists the broker's topics (with a timeout) every second, so ``healthy`` follows the broker in
both directions without restarting anything: librdkafka reconnects by itself, the check only notices. While the
broker is unreachable a publish fails at once with 503 and a retry hint, instead of every miss waiting for a
delivery that cannot happen. When it comes back, topics are created again if missing (a broker that lost its
storage) and the reconnect hooks run with the names of the topics this node had to create (vendor definitions not yet
published go out then, see ``KafkaVendorFeed``).

A node of the distributed runtime publishes catalog requests already planned (``plan``): full or incremental and
since when, decided from its own sync status by the rule the embedded workers apply, because the job has no status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Collection

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from app.distributed.kafka.admin import ensure_topics, existing_topics, topic_specs
from app.distributed.kafka.config import DELIVERY_TIMEOUT_S, admin_config, producer_config
from app.domain.requests import FetchRequest, RequestKind
from app.domain.wire import encode, request_message, request_to_dict
from app.errors import ServiceUnavailable
from app.settings import Settings

log = logging.getLogger(__name__)

#: What a client is told to wait before retrying while the broker is away.
RETRY_AFTER_S = 5.0

#: Called with the topics this node created on the way back (empty when they were all there).
ReconnectHook = Callable[[Collection[str]], Awaitable[None]]


class KafkaRequestQueue:
    def __init__(
        self,
        settings: Settings,
        *,
        check_interval_s: float = 1.0,
        delivery_timeout_s: float = DELIVERY_TIMEOUT_S,
        plan: Callable[[FetchRequest], FetchRequest] | None = None,
    ) -> None:
        self._settings = settings
        self._plan = plan
        self._check_interval_s = check_interval_s
        self._delivery_timeout_s = delivery_timeout_s
        self._producer: Producer | None = None
        self._admin: AdminClient | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        self._checker: asyncio.Task[None] | None = None
        self._reachable = False
        self._reason: str | None = "not started"
        self._in_flight = 0
        self._hooks: list[ReconnectHook] = []
        self._topics: dict[RequestKind, str] = {
            RequestKind.PRODUCT: settings.kafka_topic_product_requests,
            RequestKind.CATALOG: settings.kafka_topic_vendor_requests,
        }

    # -- state ---------------------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._producer is not None and self._reachable

    @property
    def reason(self) -> str | None:
        """Why the queue is not healthy (None when it is)."""
        return None if self.healthy else self._reason

    @property
    def depth(self) -> int:
        """Publishes waiting for the broker's acknowledgement."""
        return self._in_flight

    @property
    def bootstrap(self) -> str:
        return self._settings.kafka_bootstrap

    @property
    def settings(self) -> Settings:
        return self._settings

    def on_reconnect(self, hook: ReconnectHook) -> None:
        """Run ``hook`` each time the broker becomes reachable (including the first time), and whenever this node
        had to create topics again (a broker that lost its storage and came back between two checks)."""
        self._hooks.append(hook)

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._producer is not None:
            return
        self._stopping.clear()
        self._producer = Producer(producer_config(self._settings))
        self._admin = AdminClient(admin_config(self._settings))
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-producer-poll", daemon=True)
        self._poller.start()
        await self.check()
        self._checker = asyncio.create_task(self._check_loop(), name="kafka-broker-check")

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
            self._checker = None
        self._stopping.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join, 5)
            self._poller = None
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(producer.flush, 2 if self._reachable else 0)
        self._admin = None
        self._reachable = False
        self._reason = "stopped"

    # -- publishing ----------------------------------------------------------------------------------------

    async def publish(self, request: FetchRequest) -> None:
        """The request to the job; once the broker has it, a ``request`` update to the changelog, so every node
        can answer ``GET /requests/{id}`` (the job's outcome follows on the same partition: same key, and
        librdkafka partitions as the Java clients do, see ``producer_config``). If only that second publish fails the
        request still runs; other nodes then learn of it from its outcome."""
        if request.kind is RequestKind.CATALOG and self._plan is not None:
            request = self._plan(request)
        await self.send(self._topics[request.kind], request.vendor_id, encode(request_to_dict(request)))
        try:
            await self.send(self._settings.kafka_topic_updates, request.vendor_id, encode(request_message(request)))
        except ServiceUnavailable as exc:
            log.warning("request %s published, but not announced to the other nodes: %s", request.id, exc.message)

    async def send(self, topic: str, key: str, value: bytes | None) -> None:
        """Produce one message and wait for the broker's acknowledgement; ``value=None`` is a tombstone."""
        producer = self._producer
        if producer is None:
            raise ServiceUnavailable("the Kafka request queue is not running", retry_after=RETRY_AFTER_S)
        if not self._reachable:
            raise self._unavailable(self._reason or "Kafka broker unreachable")
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[None] = loop.create_future()

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, delivered, err)

        try:
            producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            raise self._unavailable(f"cannot hand the message to Kafka: {exc}") from None
        self._in_flight += 1
        try:
            await asyncio.wait_for(delivered, self._delivery_timeout_s)
        except TimeoutError:
            raise self._unavailable(f"Kafka did not acknowledge within {self._delivery_timeout_s:g}s") from None
        except KafkaException as exc:
            raise self._unavailable(f"Kafka refused the message: {exc.args[0]}") from None
        finally:
            self._in_flight -= 1

    def _unavailable(self, reason: str) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"requests cannot be queued now: {reason}",
            retry_after=RETRY_AFTER_S,
            details={"broker": self.bootstrap},
        )

    def _poll_loop(self) -> None:
        """Serves delivery callbacks (librdkafka calls them only from ``poll``)."""
        while not self._stopping.is_set():
            producer = self._producer
            if producer is None:
                return
            producer.poll(0.05)

    # -- broker health -------------------------------------------------------------------------------------

    async def check(self) -> bool:
        """List topics (with a timeout); on the way back up, re-create missing topics and run the hooks."""
        admin = self._admin
        if admin is None:
            return False
        was_reachable = self._reachable
        created: list[str] = []
        try:
            topics = await asyncio.to_thread(existing_topics, admin)
            if not set(topic_specs(self._settings)) <= topics:
                created = await asyncio.to_thread(ensure_topics, self._settings, admin)
        except Exception as exc:  # KafkaException mostly; anything else must not kill the check either
            if was_reachable or self._reason in (None, "not started"):
                log.warning("Kafka broker %s unreachable: %s", self.bootstrap, exc)
            self._reachable = False
            self._reason = "Kafka broker unreachable"  # API clients see it: the host is in the log line above
            return False
        self._reachable = True
        self._reason = None
        if not was_reachable:
            log.info("Kafka broker %s reachable", self.bootstrap)
        if not was_reachable or created:
            for hook in self._hooks:
                try:
                    await hook(frozenset(created))
                except Exception:
                    log.exception("a Kafka reconnect hook failed")
        return True

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval_s)
            await self.check()


def _settle(future: asyncio.Future[None], err: KafkaError | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaException(err))
