"""A gRPC client built from the agent's reflection service alone (no .proto),
as a stranger to this project would write it: Python grpcio over the Unix
socket by its absolute path, no authority set.

Usage: python3 reflection_client.py /abs/path/agent.sock
Prints one JSON object: what each call returned (or its status code and
message). The end-to-end test (tests/tests/api_stock.rs) judges it.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main():
    socket = sys.argv[1]
    out = {}
    with grpc.insecure_channel("unix://" + socket) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        out["services"] = sorted(db.get_services())
        pool = descriptor_pool.DescriptorPool(db)
        agent = pool.FindServiceByName("dyno.v1.Agent")

        def call(method, fields):
            m = agent.methods_by_name[method]
            req_cls = message_factory.GetMessageClass(m.input_type)
            resp_cls = message_factory.GetMessageClass(m.output_type)
            stub = channel.unary_unary(
                "/dyno.v1.Agent/" + method,
                request_serializer=lambda r: r.SerializeToString(),
                response_deserializer=resp_cls.FromString,
            )
            try:
                resp = stub(json_format.ParseDict(fields, req_cls()), timeout=30)
                return {"ok": json_format.MessageToDict(resp)}
            except grpc.RpcError as e:
                return {"code": e.code().name, "message": e.details() or ""}

        out["host_info"] = call("HostInfo", {})
        out["list"] = call("ListDynos", {})
        out["get_unknown"] = call("GetDyno", {"app": "shop", "name": "web.1"})
        out["bad_app_8k"] = call("GetDyno", {"app": "A" * 8192, "name": "web.1"})

        health = health_pb2_grpc.HealthStub(channel)
        r = health.Check(health_pb2.HealthCheckRequest(service="dyno.v1.Agent"), timeout=30)
        out["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
