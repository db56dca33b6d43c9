"""What a scheduler needs from the agent, asked by a client built from the
agent's reflection service alone (no .proto): Python grpcio over the Unix
socket by its absolute path, no authority set, error details decoded with
grpcio-status (google.rpc.Status, ErrorInfo, BadRequest).

Usage: python3 scheduler_client.py /abs/agent.sock APP /abs/slug
Prints one JSON object with what each step saw; the end-to-end test
(tests/tests/api_scheduler.rs) judges it. The script drives the steps in
order and waits on conditions (never bare sleeps).
"""

import json
import sys
import time

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

DEADLINE = 60


def details(err):
    """The google.rpc details of a failed call, as plain dicts."""
    status = rpc_status.from_call(err)
    out = {"code": err.code().name, "message": err.details() or "", "details": []}
    if status is None:
        return out
    for any_ in status.details:
        for kind, cls in (
            ("ErrorInfo", error_details_pb2.ErrorInfo),
            ("BadRequest", error_details_pb2.BadRequest),
        ):
            if any_.Is(cls.DESCRIPTOR):
                msg = cls()
                any_.Unpack(msg)
                out["details"].append({"type": kind, **json_format.MessageToDict(msg)})
    return out


def main():
    socket, app, slug = sys.argv[1], sys.argv[2], sys.argv[3]
    out = {}
    with grpc.insecure_channel("unix://" + socket) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        agent = pool.FindServiceByName("dyno.v1.Agent")

        def stub(method, streaming=False):
            m = agent.methods_by_name[method]
            req_cls = message_factory.GetMessageClass(m.input_type)
            resp_cls = message_factory.GetMessageClass(m.output_type)
            make = channel.unary_stream if streaming else channel.unary_unary
            s = make(
                "/dyno.v1.Agent/" + method,
                request_serializer=lambda r: r.SerializeToString(),
                response_deserializer=resp_cls.FromString,
            )
            return s, req_cls

        def call(method, fields):
            s, req_cls = stub(method)
            try:
                resp = s(json_format.ParseDict(fields, req_cls()), timeout=30)
                return {"ok": json_format.MessageToDict(resp)}
            except grpc.RpcError as e:
                return details(e)

        def wait_up(name):
            end = time.time() + DEADLINE
            while time.time() < end:
                r = call("GetDyno", {"app": app, "name": name})
                if r.get("ok", {}).get("state") == "DYNO_STATE_UP":
                    return r["ok"]
                time.sleep(0.1)
            raise SystemExit(f"{name} never came up: {r}")

        web = {"app": app, "slug": slug, "command": "exec busybox httpd -f -p $PORT -h public"}
        worker = {"app": app, "slug": slug, "command": "exec sleep 600"}

        # Labels, and what a Dyno carries.
        out["start_web"] = call("StartDyno", {**web, "name": "web.1", "labels": {"team": "payments", "example.com/tier": "gold"}})
        out["web"] = wait_up("web.1")
        # Same run, new labels: the labels change, nothing restarts.
        out["relabel"] = call("StartDyno", {**web, "name": "web.1", "labels": {"team": "billing"}})
        out["web_after_relabel"] = call("GetDyno", {"app": app, "name": "web.1"})["ok"]

        # List, then watch from the listing's seq: the first event is the
        # change made after the listing, none before it.
        out["list_up"] = call("ListDynos", {"app": app, "states": ["DYNO_STATE_UP"]})
        out["list_down"] = call("ListDynos", {"app": app, "states": ["DYNO_STATE_DOWN"]})
        listing = out["list_up"]["ok"]
        call("StartDyno", {**worker, "name": "worker.1"})
        watch, req_cls = stub("WatchEvents", streaming=True)
        req = json_format.ParseDict(
            {"afterSeq": listing.get("seq", "0"), "series": listing["series"], "follow": True}, req_cls()
        )
        first = next(iter(watch(req, timeout=DEADLINE)))
        out["first_event_after_list"] = json_format.MessageToDict(first)
        wait_up("worker.1")

        # Figures of running dynos.
        out["stats"] = call("ListDynoStats", {"app": app})

        # Errors with details.
        out["bad_label"] = call("StartDyno", {**worker, "name": "worker.2", "labels": {"Team": "x"}})
        out["no_memory"] = call("StartDyno", {**worker, "name": "worker.3", "size": "performance-l"})
        out["cordon"] = call("Cordon", {"reason": "kernel upgrade"})
        out["info_cordoned"] = call("HostInfo", {})["ok"]
        out["start_cordoned"] = call("StartDyno", {**worker, "name": "worker.4"})
        out["uncordon"] = call("Uncordon", {})
        out["start_uncordoned"] = call("StartDyno", {**worker, "name": "worker.4"})
        out["info_uncordoned"] = call("HostInfo", {})["ok"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
