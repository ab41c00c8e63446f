"""A gRPC server and client for the l7 probe's tests (tests/gala/l7.rs), with Debian's
python3-grpcio and no protobuf code generation: the handlers take and give raw bytes.

    grpc_echo.py server PORT
    grpc_echo.py client PORT N_OK N_FAIL [WAIT_FILE]

The server answers /demo.Echo/Say with its request and /demo.Echo/Fail with NOT_FOUND.
The client makes N_OK Say calls then N_FAIL Fail calls on one channel (one HTTP/2
connection). With WAIT_FILE it first makes one Say call, prints "warm", and waits for
the file to exist before the rest: a connection older than the collector."""
import os
import sys
import time
from concurrent import futures

import grpc


def ident(b):
    return b


class Handler(grpc.GenericRpcHandler):
    def service(self, details):
        if details.method == "/demo.Echo/Say":
            return grpc.unary_unary_rpc_method_handler(lambda req, ctx: req, ident, ident)
        if details.method == "/demo.Echo/Fail":
            def fail(req, ctx):
                ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
            return grpc.unary_unary_rpc_method_handler(fail, ident, ident)
        return None


def main():
    if sys.argv[1] == "server":
        s = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        s.add_generic_rpc_handlers((Handler(),))
        s.add_insecure_port("127.0.0.1:" + sys.argv[2])
        s.start()
        s.wait_for_termination()
        return
    port, n_ok, n_fail = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    wait = sys.argv[5] if len(sys.argv) > 5 else None
    with grpc.insecure_channel("127.0.0.1:" + port) as ch:
        say = ch.unary_unary("/demo.Echo/Say", ident, ident)
        fail = ch.unary_unary("/demo.Echo/Fail", ident, ident)
        if wait:
            say(b"warm", timeout=10)
            print("warm", flush=True)
            while not os.path.exists(wait):
                time.sleep(0.05)
        for i in range(n_ok):
            say(b"hello %d" % i, timeout=10)
        failed = 0
        for _ in range(n_fail):
            try:
                fail(b"x", timeout=10)
            except grpc.RpcError as e:
                failed += e.code() == grpc.StatusCode.NOT_FOUND
        print("ok %d failed %d" % (n_ok, failed), flush=True)


main()
