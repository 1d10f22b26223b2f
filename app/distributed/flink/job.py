"""The ingest job of the distributed runtime (PyFlink DataStream): requests in, vendor calls, updates out.

    vendor_requests --(KafkaSource, committed offsets)--> parse --+--> dead letters
                                                                  |
    catalog_vendors (upsert-kafka, always read whole) -----------+--> key by vendor id
        --> RequestRouter (vendor definition in keyed state, requests buffered until it arrives; catalog slices)
        --> product_updates  |  continuations --> vendor_requests  |  dead letters
    product_requests --(a source of its own)--> parse --> key by vendor id, + catalog_vendors
        --> ProductFetcher (the router's rules, several vendor calls in flight per worker, a share per vendor,
            per-vendor breaker)
        --> product_interactive (the nodes apply it apart from catalog pages)  |  dead letters

Two lanes, as in the embedded runtime: a product request never waits behind a vendor's catalog slices.

Runs unchanged on a local MiniCluster (``catalog flink run``, or ``python -m app.distributed.flink.job``) and on a
standalone cluster (``catalog flink submit`` -> ``flink run -py``). Settings are read once, in the driver, from
``CATALOG_*``: workers on a cluster do not see the driver's environment, so what they need travels inside the
pickled functions.

Sinks go through the Table API's Kafka connector: it is the one PyFlink route that writes a record key taken from
the element (``key.format=raw``), and updates must be keyed by vendor id so one vendor's messages stay in order.
Delivery is at least once: a replay after a crash repeats some updates, which nodes apply idempotently.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pyflink.common import Row, RowKind, Types
from pyflink.datastream.functions import KeyedCoProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from app.distributed.flink.checkpoints import broker_identity, checkpoint_to_resume
from app.distributed.flink.jars import installed, jar_paths
from app.distributed.flink.processing import (
    Output,
    ProcessingConfig,
    Processor,
    ProductCalls,
    Sink,
    dead_letter,
    failed,
    unknown_vendor,
)
from app.distributed.kafka.admin import ensure_topics
from app.distributed.kafka.config import admin_config
from app.domain.wire import ChangelogError, parse_request, parse_vendor
from app.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GROUP = "catalog-ingest"
JOB_NAME = "catalog-ingest"


class JobError(RuntimeError):
    """The job cannot be built (jars missing, broker unreachable)."""


def java_kafka_properties(settings: Settings) -> dict[str, str]:
    """The security settings of a real cluster, in the Java client's vocabulary (the job's clients are Java)."""
    props: dict[str, str] = {"security.protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism:
        mechanism = settings.kafka_sasl_mechanism.upper()
        props["sasl.mechanism"] = mechanism
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        user = json.dumps(settings.kafka_sasl_username or "")
        password = json.dumps(settings.kafka_sasl_password or "")
        props["sasl.jaas.config"] = f"{module} required username={user} password={password};"
    if settings.kafka_ssl_ca_location is not None:
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = str(settings.kafka_ssl_ca_location)
    return props


# -- the functions the workers run (pickled into the job) -----------------------------------------------------


def record_type() -> Any:
    """(key, value) as Kafka will carry them."""
    return Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])


def side_outputs() -> dict[Sink, Any]:
    """Fresh tags each time: a tag once used by the driver holds Java objects and no longer pickles."""
    from pyflink.datastream import OutputTag

    return {
        Sink.DEAD_LETTERS: OutputTag("dead_letters", record_type()),
        Sink.REQUESTS: OutputTag("continuations", record_type()),
        Sink.INTERACTIVE: OutputTag("interactive", record_type()),
    }


def _row(key: str | None, value: str | None) -> Any:
    return Row(k=key, v=value)


def _emit(outputs: Iterable[Output], tags: dict[Sink, Any]) -> Iterator[Any]:
    for output in outputs:
        row = _row(output.key, output.value)
        if output.sink is Sink.UPDATES:
            yield row
        else:
            yield tags[output.sink], row


class ParseRequest(ProcessFunction):  # type: ignore[misc]
    """Only readable requests reach the keyed stage; the rest is dead-lettered here, before key_by."""

    def __init__(self, group: str) -> None:
        self.group = group

    def open(self, runtime_context: RuntimeContext) -> None:
        self.dead_tag = side_outputs()[Sink.DEAD_LETTERS]

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        try:
            work = parse_request(value)
        except ChangelogError as exc:
            yield self.dead_tag, _row(None, dead_letter(value, str(exc), source="requests", by=self.group).value)
            return
        yield _row(work.request.vendor_id, value)


def vendor_row(row: Any) -> Any:
    kind = row.get_row_kind()
    if kind == RowKind.UPDATE_BEFORE:
        return _row(row[0], "")  # superseded by the UPDATE_AFTER that follows
    return _row(row[0], None if kind == RowKind.DELETE else row[1])


class RequestRouter(KeyedCoProcessFunction):  # type: ignore[misc]
    """Per vendor: its definition (state), the requests that came before it (state), the vendor calls."""

    def __init__(self, config: ProcessingConfig, wait_ms: int, group: str) -> None:
        self.config = config
        self.wait_ms = wait_ms
        self.group = group
        self.processor: Processor | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self.tags = side_outputs()
        self.vendor = runtime_context.get_state(ValueStateDescriptor("vendor", Types.STRING()))
        self.pending = runtime_context.get_list_state(ListStateDescriptor("pending", Types.STRING()))
        self.processor = Processor(self.config)
        self.processor.open()

    def close(self) -> None:
        if self.processor is not None:
            self.processor.close()

    def _handle(self, raw: str, vendor_raw: str) -> Iterator[Any]:
        assert self.processor is not None
        try:
            work = parse_request(raw)
        except ChangelogError as exc:
            yield from _emit([dead_letter(raw, str(exc), source="requests", by=self.group)], self.tags)
            return
        try:
            vendor = parse_vendor(vendor_raw, secrets=self.processor.secrets)
        except ChangelogError as exc:
            yield from _emit(failed(work, "bad_vendor_definition", str(exc)), self.tags)
            return
        try:
            outputs = self.processor.handle(work, vendor)
        except Exception as exc:  # a bug must not stop the job: fail the request, keep the evidence
            log.exception("request %s crashed", work.request.id)
            outputs = [
                *failed(work, "ingest_crashed", repr(exc)),
                dead_letter(raw, f"crashed: {exc!r}", source="requests", by=self.group),
            ]
        yield from _emit(outputs, self.tags)

    def process_element1(self, value: Any, ctx: Any) -> Iterator[Any]:
        vendor_raw = self.vendor.value()
        if vendor_raw is not None:
            yield from self._handle(value[1], vendor_raw)
            return
        now = ctx.timer_service().current_processing_time()
        self.pending.add(json.dumps({"at": now, "raw": value[1]}))
        ctx.timer_service().register_processing_time_timer(now + self.wait_ms)

    def process_element2(self, value: Any, ctx: Any) -> Iterator[Any]:
        raw = value[1]
        if raw is None:
            self.vendor.clear()
            if self.processor is not None:
                self.processor.forget(value[0])
            return
        try:
            assert self.processor is not None
            parse_vendor(raw, secrets=self.processor.secrets)
        except ChangelogError as exc:
            yield from _emit([dead_letter(raw, str(exc), source="vendors", by=self.group, key=value[0])], self.tags)
            return
        self.vendor.update(raw)
        waiting = [json.loads(item)["raw"] for item in self.pending.get() or []]
        self.pending.clear()
        for request_raw in waiting:
            yield from self._handle(request_raw, raw)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        if self.vendor.value() is not None:
            return
        keep: list[str] = []
        for item in self.pending.get() or []:
            entry = json.loads(item)
            if entry["at"] + self.wait_ms > timestamp:
                keep.append(item)
                continue
            try:
                work = parse_request(entry["raw"])
            except ChangelogError:
                continue
            yield from _emit(unknown_vendor(work, self.wait_ms / 1000), self.tags)
        self.pending.update(keep)


class ProductFetcher(RequestRouter):
    """Product requests, on a path of their own: never behind a vendor's catalog slices, several in flight.

    The router's rules (the vendor definition in keyed state, requests that came before it kept for a while), but a
    request is handed to the worker's vendor-call thread (``Processor(threaded=True)``) instead of run to its end,
    so up to ``product_in_flight`` vendor calls overlap, at most ``product_in_flight_per_vendor`` of one vendor
    (``ProductCalls``): a vendor that answers in 9 s holds its share and the others' requests still start at once.
    Records are emitted when a call is done, on the next element or on a short processing-time timer. Only when
    ``product_backlog`` requests wait for a call does the next element wait for one to finish (back-pressure).
    The vendor's breaker and concurrency limit are the worker's (``Processor``).

    What this costs: a request whose call is in flight, or waiting for one, when the job crashes is not replayed from
    the checkpoint (its node's client gets a 202 and asks again); at-least-once still holds for every record emitted.
    """

    POLL_MS = 2

    def open(self, runtime_context: RuntimeContext) -> None:
        self.tags = side_outputs()
        self.vendor = runtime_context.get_state(ValueStateDescriptor("vendor", Types.STRING()))
        self.pending = runtime_context.get_list_state(ListStateDescriptor("pending", Types.STRING()))
        self.processor = Processor(self.config, threaded=True)
        self.processor.open()
        self.calls = ProductCalls(
            self.processor.start,
            limit=self.config.product_in_flight,
            per_vendor=self.config.product_in_flight_per_vendor,
            backlog=self.config.product_backlog,
        )
        self.ctx: Any = None

    def _handle(self, raw: str, vendor_raw: str) -> Iterator[Any]:
        assert self.processor is not None
        try:
            work = parse_request(raw)
            vendor = parse_vendor(vendor_raw, secrets=self.processor.secrets)
        except ChangelogError as exc:
            yield from RequestRouter._handle(self, raw, vendor_raw)  # the router's dead letter or failure
            log.debug("not started: %s", exc)
            return
        while self.calls.full:
            self.calls.wait()
            yield from self._finished()
        self.calls.add(raw, work, vendor)
        yield from self._finished()
        self._poll_later()

    def _finished(self) -> Iterator[Any]:
        for raw, future in self.calls.done():
            try:
                outputs = future.result()
            except Exception as exc:  # a bug must not stop the job: fail the request, keep the evidence
                log.exception("product request crashed")
                work = parse_request(raw)
                outputs = [
                    *failed(work, "ingest_crashed", repr(exc)),
                    dead_letter(raw, f"crashed: {exc!r}", source="requests", by=self.group),
                ]
            yield from _emit(outputs, self.tags)

    def _poll_later(self) -> None:
        if self.calls.in_flight and self.ctx is not None:
            timers = self.ctx.timer_service()
            timers.register_processing_time_timer(timers.current_processing_time() + self.POLL_MS)

    def process_element1(self, value: Any, ctx: Any) -> Iterator[Any]:
        self.ctx = ctx
        yield from super().process_element1(value, ctx)

    def process_element2(self, value: Any, ctx: Any) -> Iterator[Any]:
        self.ctx = ctx
        yield from super().process_element2(value, ctx)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        self.ctx = ctx
        yield from self._finished()
        yield from super().on_timer(timestamp, ctx)
        self._poll_later()

    def close(self) -> None:
        self.calls.cancel()
        super().close()


def build_job(env: Any, settings: Settings, *, group: str = DEFAULT_GROUP, config: ProcessingConfig) -> None:
    """Adds the whole pipeline to ``env``; the caller executes it (``env.execute``)."""
    from pyflink.common import WatermarkStrategy
    from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource
    from pyflink.java_gateway import get_gateway
    from pyflink.table import StreamTableEnvironment

    row_type = record_type()
    tags = side_outputs()
    dead_tag, continue_tag = tags[Sink.DEAD_LETTERS], tags[Sink.REQUESTS]
    kafka_props = java_kafka_properties(settings)
    wait_ms = int(config.unknown_vendor_wait_s * 1000)

    # --- requests: committed offsets (earliest for a new group), committed again on every checkpoint ---
    jvm = get_gateway().jvm
    j_initializer = jvm.org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer
    # PyFlink's own committed_offsets() names the shaded Kafka class of the SQL jar; the thin jars are unshaded.
    earliest = jvm.org.apache.kafka.clients.consumer.OffsetResetStrategy.EARLIEST
    # Kafka's StringDeserializer turns a tombstone into nothing instead of failing the job (SimpleStringSchema
    # throws on a null value, which would make one `kcat -Z` message a poison pill for the whole job).
    string_deserializer = jvm.org.apache.kafka.common.serialization.StringDeserializer
    j_deserializer = jvm.org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema

    def request_source(topic: str, name: str) -> Any:
        builder = (
            KafkaSource.builder()
            .set_bootstrap_servers(settings.kafka_bootstrap)
            .set_topics(topic)
            .set_group_id(group)
            .set_starting_offsets(KafkaOffsetsInitializer(j_initializer.committedOffsets(earliest)))
            .set_properties(
                {
                    **kafka_props,
                    "fetch.max.wait.ms": "10",
                    "session.timeout.ms": str(settings.kafka_session_timeout_ms),
                    "commit.offsets.on.checkpoint": "true",
                    "partition.discovery.interval.ms": "10000",
                    "client.id.prefix": f"{group}-{name}",
                }
            )
        )
        builder._j_builder.setDeserializer(j_deserializer.valueOnly(get_java_class(jvm, string_deserializer)))
        stream = env.from_source(builder.build(), WatermarkStrategy.no_watermarks(), name, type_info=Types.STRING())
        return stream.uid(f"{name}-source").process(ParseRequest(group), output_type=row_type).name(f"parse-{name}")

    # Two lanes: product requests (a shopper waits) never queue behind a vendor's catalog slices.
    parsed = request_source(settings.kafka_topic_vendor_requests, "catalog-requests")
    parsed_products = request_source(settings.kafka_topic_product_requests, "product-requests")

    # --- vendor definitions: the whole compacted topic on every start (keyed state starts empty) ---
    t_env = StreamTableEnvironment.create(env)
    props_sql = "".join(f", 'properties.{k}' = '{v}'" for k, v in kafka_props.items())
    t_env.execute_sql(
        f"""CREATE TEMPORARY TABLE catalog_vendors (k STRING, v STRING, PRIMARY KEY (k) NOT ENFORCED) WITH (
            'connector' = 'upsert-kafka', 'topic' = '{settings.kafka_topic_vendors}',
            'properties.bootstrap.servers' = '{settings.kafka_bootstrap}',
            'properties.group.id' = '{group}-vendors', 'properties.fetch.max.wait.ms' = '10',
            'key.format' = 'raw', 'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY'{props_sql})"""
    )
    vendor_changes = t_env.to_changelog_stream(t_env.from_path("catalog_vendors"))

    vendors = vendor_changes.map(vendor_row, output_type=row_type).filter(lambda r: r[1] != "").name("vendors")

    routed = (
        parsed.key_by(lambda r: r[0], key_type=Types.STRING())
        .connect(vendors.key_by(lambda r: r[0], key_type=Types.STRING()))
        .process(RequestRouter(config, wait_ms, group), output_type=row_type)
        .name("route-and-fetch")
        .uid("route-and-fetch")
    )
    products = (
        parsed_products.key_by(lambda r: r[0], key_type=Types.STRING())
        .connect(vendors.key_by(lambda r: r[0], key_type=Types.STRING()))
        .process(ProductFetcher(config, wait_ms, group), output_type=row_type)
        .name("fetch-products")
        .uid("fetch-products")
    )
    interactive_tag = tags[Sink.INTERACTIVE]
    dead = (
        parsed.get_side_output(dead_tag)
        .union(routed.get_side_output(dead_tag))
        .union(parsed_products.get_side_output(dead_tag))
        .union(products.get_side_output(dead_tag))
    )
    interactive = products.get_side_output(interactive_tag).union(routed.get_side_output(interactive_tag))

    # --- sinks: keyed records through the Table API's Kafka connector ---
    sinks = {
        "updates_out": (settings.kafka_topic_updates, routed.union(products)),
        "interactive_out": (settings.kafka_topic_interactive_updates, interactive),
        "continuations_out": (settings.kafka_topic_vendor_requests, routed.get_side_output(continue_tag)),
        "dead_letters_out": (settings.kafka_topic_dead_letters, dead),
    }
    statements = t_env.create_statement_set()
    for name, (topic, stream) in sinks.items():
        t_env.execute_sql(
            f"""CREATE TEMPORARY TABLE {name} (k STRING, v STRING) WITH (
                'connector' = 'kafka', 'topic' = '{topic}',
                'properties.bootstrap.servers' = '{settings.kafka_bootstrap}',
                'properties.linger.ms' = '1', 'sink.delivery-guarantee' = 'at-least-once',
                'key.format' = 'raw', 'key.fields' = 'k',
                'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY'{props_sql})"""
        )
        statements.add_insert(name, t_env.from_data_stream(stream))
    statements.attach_as_datastream()


def get_java_class(jvm: Any, j_class: Any) -> Any:
    from pyflink.util.java_utils import get_java_class as java_class

    return java_class(j_class)


def make_environment(
    settings: Settings,
    *,
    jars: list[Path] | None = None,
    python: str | None = None,
    checkpoints: Path | None = None,
    resume: Path | None = None,
) -> Any:
    """A stream environment with the low-latency defaults measured on these machines (see STREAMING.md).

    ``checkpoints``: where checkpoints are kept after the job stops; ``resume``: the one to start from (see
    ``checkpoint_to_resume``: only one of the same broker). The sources' offsets are in the checkpoint, so a restart
    neither skips nor repeats requests even where the broker loses committed offsets (Tansu does, for the Java
    client's commits), and the keyed state (vendor definitions, requests waiting for one) survives too. Without
    one, the job starts from its group's committed offsets (the topics' start where there are none).
    """
    from pyflink.common import Configuration
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment

    conf = Configuration()
    if checkpoints is not None:
        conf.set_string("execution.checkpointing.dir", checkpoints.resolve().as_uri())
        conf.set_string("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
        conf.set_string("execution.checkpointing.num-retained", "1")
        if resume is not None:
            log.info("resuming from checkpoint %s", resume)
            conf.set_string("execution.state-recovery.path", resume.resolve().as_uri())
            conf.set_string("execution.state-recovery.ignore-unclaimed-state", "true")
    conf.set_string("python.fn-execution.bundle.time", str(settings.flink_bundle_time_ms))
    conf.set_string("python.fn-execution.bundle.size", "1000")
    if python:
        conf.set_string("python.executable", python)
        conf.set_string("python.client.executable", python)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(settings.flink_parallelism)
    env.set_buffer_timeout(settings.flink_buffer_timeout_ms)
    env.enable_checkpointing(settings.flink_checkpoint_ms, CheckpointingMode.AT_LEAST_ONCE)
    if jars:
        # Not env.add_jars: under `flink run -py` it joins the list into one malformed URL (STREAMING.md).
        from pyflink.java_gateway import get_gateway
        from pyflink.util.java_utils import add_jars_to_context_class_loader

        urls = [path.resolve().as_uri() for path in jars]
        add_jars_to_context_class_loader(urls)
        jvm = get_gateway().jvm
        j_conf = jvm.org.apache.flink.python.util.PythonConfigUtil.getEnvironmentConfig(
            env._j_stream_execution_environment
        )
        option = jvm.org.apache.flink.configuration.PipelineOptions.JARS
        merged = jvm.java.util.ArrayList()
        for url in [*list(j_conf.getOptional(option).orElse(jvm.java.util.ArrayList())), *urls]:
            merged.add(str(url))
        j_conf.set(option, merged)
    return env


def read_topics(settings: Settings) -> list[str]:
    """The topics whose offsets a checkpoint holds (the sinks' topics do not matter to a resume)."""
    return [settings.kafka_topic_vendor_requests, settings.kafka_topic_product_requests, settings.kafka_topic_vendors]


def default_checkpoints(group: str) -> Path:
    return Path("var/flink-checkpoints") / group


def job_jars(settings: Settings) -> list[Path]:
    jars_dir = settings.flink_jars_dir
    if not installed(jars_dir):
        raise JobError(
            f"the Kafka connector jars are missing from {jars_dir}: run `python -m app.distributed.flink.jars`"
        )
    return jar_paths(jars_dir)


def run(
    settings: Settings,
    *,
    group: str = DEFAULT_GROUP,
    detached: bool = False,
    with_jars: bool = True,
    config: ProcessingConfig | None = None,
    checkpoints: Path | None = None,
) -> None:
    """Build and execute the job; blocks on a local MiniCluster (``detached``: submit and return, on a cluster)."""
    resume = None
    try:
        admin = AdminClient(admin_config(settings))
        ensure_topics(settings, admin)
        if checkpoints is not None:
            broker = broker_identity(admin, read_topics(settings))
            resume = checkpoint_to_resume(checkpoints, broker, bootstrap=settings.kafka_bootstrap)
    except KafkaException as exc:
        raise JobError(f"Kafka at {settings.kafka_bootstrap} is unreachable: {exc}") from None
    # Local mode logs into the venv's pyflink/log unless told otherwise; keep it with the project's files.
    os.environ.setdefault("FLINK_LOG_DIR", str(Path("var/flink-log").resolve()))
    env = make_environment(
        settings,
        jars=job_jars(settings) if with_jars else None,
        python=sys.executable,
        checkpoints=checkpoints,
        resume=resume,
    )
    build_job(env, settings, group=group, config=config or ProcessingConfig.from_settings(settings))
    if detached:
        env.execute_async(JOB_NAME)
    else:
        env.execute(JOB_NAME)


def submit_command(
    settings: Settings, *, group: str = DEFAULT_GROUP, flink_home: str | None = None, checkpoints: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """``flink run -d -py`` for this job, and its environment (the client process reads CATALOG_* from it).

    The jars are added by the job itself through ``pipeline.jars`` (absolute ``file://`` URLs: a cluster on other
    machines needs them at the same path, or use ``-C`` with a URL every node can reach).
    """
    import pyflink

    home = Path(flink_home) if flink_home else Path(pyflink.__file__).parent
    job_jars(settings)  # fail here, not on the cluster, when the jars are missing
    env = {**os.environ, "CATALOG_FLINK_JARS_DIR": str(settings.flink_jars_dir.resolve())}
    env.setdefault("FLINK_HOME", str(home))
    command = [
        str(home / "bin" / "flink"),
        "run",
        "-d",
        "-py",
        str(Path(__file__).resolve()),
        "-pyexec",
        sys.executable,
        "-pyclientexec",
        sys.executable,
        "--group",
        group,
        "--checkpoints",
        str(Path(checkpoints) if checkpoints else default_checkpoints(group).resolve()),
    ]
    return command, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The catalog's Flink ingest job (settings from CATALOG_*).")
    parser.add_argument("--group", default=DEFAULT_GROUP, help="Consumer group of the requests source.")
    parser.add_argument("--pages-per-message", type=int, default=ProcessingConfig.pages_per_message)
    parser.add_argument("--message-budget-s", type=float, default=ProcessingConfig.message_budget_s)
    parser.add_argument("--unknown-vendor-wait-s", type=float, default=ProcessingConfig.unknown_vendor_wait_s)
    parser.add_argument(
        "--no-jars", action="store_true", help="The jars are given to `flink run` (-j/-C): do not add them."
    )
    parser.add_argument("--detached", action="store_true", help="Return once submitted (on a cluster).")
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="Keep checkpoints here and resume from the newest (default: var/flink-checkpoints/<group>; "
        "on a cluster pass a directory every node shares).",
    )
    parser.add_argument("--no-checkpoints", action="store_true", help="Resume from committed offsets only.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    config = ProcessingConfig.from_settings(
        settings,
        pages_per_message=args.pages_per_message,
        message_budget_s=args.message_budget_s,
        unknown_vendor_wait_s=args.unknown_vendor_wait_s,
    )
    started = time.monotonic()
    try:
        checkpoints = None if args.no_checkpoints else args.checkpoints or default_checkpoints(args.group)
        run(
            settings,
            group=args.group,
            detached=args.detached,
            with_jars=not args.no_jars,
            config=config,
            checkpoints=checkpoints,
        )
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("job ended after %.1fs", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    # Through the package, not as __main__: functions of __main__ would be pickled by value with their globals.
    from app.distributed.flink.job import main as job_main

    raise SystemExit(job_main())
