"""Queries a Polymeter gateway with Alibaba Cloud's official SDK
(alibabacloud_aicontent20240611) and prints what the SDK read, as JSON.

usage: alibaba_metrics.py HOST:PORT ACCESS_KEY_ID ACCESS_KEY_SECRET START END
"""
import json
import sys

from alibabacloud_aicontent20240611 import models
from alibabacloud_aicontent20240611.client import Client
from alibabacloud_tea_openapi.utils_models import Config


def client(endpoint, ak, sk):
    return Client(Config(access_key_id=ak, access_key_secret=sk, endpoint=endpoint, protocol="http"))


def main():
    endpoint, ak, sk, start, end = sys.argv[1:6]
    c = client(endpoint, ak, sk)
    out = {}
    whole = c.model_router_query_observation_metrics(
        models.ModelRouterQueryObservationMetricsRequest(start_time=start, end_time=end)
    )
    out["whole"] = whole.body.to_map()
    out["status"] = whole.status_code
    grouped = c.model_router_query_observation_metrics(
        models.ModelRouterQueryObservationMetricsRequest(
            start_time=start,
            end_time=end,
            group_by="modelId",
            order_by="totalCalls",
            order_direction="DESC",
            page_index=1,
            page_size=10,
            need_total_count=True,
        )
    )
    out["grouped"] = grouped.body.to_map()
    # The SDK's own preset range; the answer must parse as the SDK's model.
    preset = c.model_router_query_observation_metrics(
        models.ModelRouterQueryObservationMetricsRequest(time_range="30d", max_results=1)
    )
    out["preset"] = preset.body.to_map()
    try:
        client(endpoint, ak, sk + "-wrong").model_router_query_observation_metrics(
            models.ModelRouterQueryObservationMetricsRequest(time_range="1h")
        )
        out["wrong_secret"] = None
    except Exception as e:  # the SDK raises its ClientException with the envelope's Code
        out["wrong_secret"] = {"code": getattr(e, "code", None), "status": getattr(e, "status_code", None) or getattr(e, "statusCode", None), "message": getattr(e, "message", str(e))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
