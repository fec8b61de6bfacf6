"""Queries a Polymeter gateway with Baidu's official Qianfan SDK (qianfan)
and prints what the SDK read, as JSON. The gateway is set the SDK's way,
through QIANFAN_CONSOLE_API_BASE_URL, QIANFAN_ACCESS_KEY, QIANFAN_SECRET_KEY.

usage: qianfan_metric.py START END SERVICE_ID APP_ID
"""
import json
import os
import sys

from qianfan import resources


def main():
    start, end, service_id, app_id = sys.argv[1:5]
    out = {}
    out["all"] = resources.Service.V2.service_metric(start, end).body
    out["service"] = resources.Service.V2.service_metric(start, end, [service_id]).body
    # The SDK sends app_id as a single string.
    out["app"] = resources.Service.V2.service_metric(start, end, app_id=app_id).body
    try:
        resources.Service.V2.service_metric(
            start, end, ak=os.environ["QIANFAN_ACCESS_KEY"], sk=os.environ["QIANFAN_SECRET_KEY"] + "-wrong"
        )
        out["wrong_secret"] = None
    except Exception as e:  # the SDK raises with the response body in its message
        out["wrong_secret"] = {"type": type(e).__name__, "message": str(e)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
