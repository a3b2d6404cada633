"""One CreateCertificate call from Debian's python3-grpcio (gRPC core, a client we did not write),
with raw request bytes and an authorization header of a given size; prints the outcome as JSON.

Usage: raw_call.py TARGET ROOT_PEM_FILE AUTHORIZATION_BYTES DEADLINE_SECONDS
"""
import json
import sys
import time

import grpc

target, root_file, size, deadline = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with open(root_file, 'rb') as f:
    creds = grpc.ssl_channel_credentials(root_certificates=f.read())
# gRPC core refuses to send metadata above its own default limit before the server sees it:
# raise it, as a hostile client would.
options = [('grpc.max_metadata_size', 4 * 1024 * 1024)]
with grpc.secure_channel(target, creds, options=options) as channel:
    call = channel.unary_unary('/istio.v1.auth.IstioCertificateService/CreateCertificate')
    started = time.monotonic()
    try:
        # Field 1 (csr) = "x": a decodable request.
        call(b'\x0a\x01x', timeout=deadline, metadata=[('authorization', 'Bearer ' + 'a' * size)])
        code, details = 'OK', ''
    except grpc.RpcError as e:
        code, details = e.code().name, e.details()
    print(json.dumps({'code': code, 'details': details, 'seconds': time.monotonic() - started}))
