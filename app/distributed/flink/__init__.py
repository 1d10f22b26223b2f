"""The Flink job of the distributed runtime: requests from Kafka, vendor calls, updates back to Kafka.

``processing`` is the Flink-free core (the same fetch functions and sources the embedded workers use), ``job``
wires it into a PyFlink DataStream, ``jars`` installs the connector jars the job needs.
"""
