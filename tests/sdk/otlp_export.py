"""Exports GenAI spans to a Polymeter gateway with OpenTelemetry's Python SDK
and its OTLP/HTTP exporter (protobuf, gzip), the way an instrumented
application would, then prints how many spans were sent.

usage: otlp_export.py BASE_URL WEAVE_KEY PROJECT_ID
"""
import base64
import json
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode, set_span_in_context

# 2024-05-01T10:00:00Z in nanoseconds.
BASE = 1714557600 * 10**9
MS = 10**6


def main():
    base_url, key, project = sys.argv[1:4]
    auth = base64.b64encode(f"api:{key}".encode()).decode()
    exporter = OTLPSpanExporter(
        endpoint=f"{base_url}/otel/v1/traces",
        headers={"Authorization": f"Basic {auth}", "project_id": project},
        compression=Compression.Gzip,
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": "otlp-test", "qianfan.service_id": "svco-otel", "qianfan.app_id": "42"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("polymeter-sdk-test")

    agent = tracer.start_span("invoke_agent", start_time=BASE)
    ctx = set_span_in_context(agent)
    chat = tracer.start_span(
        "chat gpt-4o-mini",
        context=ctx,
        start_time=BASE + 10 * MS,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 200,
            "gen_ai.usage.output_tokens": 50,
            "alibaba.model_id": 9,
        },
    )
    chat.end(end_time=BASE + 810 * MS)
    failed = tracer.start_span(
        "chat gpt-4o-mini",
        context=ctx,
        start_time=BASE + 900 * MS,
        attributes={"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 40, "error.type": "RateLimitError"},
    )
    failed.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
    failed.end(end_time=BASE + 1100 * MS)
    agent.end(end_time=BASE + 2000 * MS)
    provider.shutdown()
    print(json.dumps({"exported": 3}))


if __name__ == "__main__":
    main()
