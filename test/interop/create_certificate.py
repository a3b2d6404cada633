"""Calls Castellan's CreateCertificate with Debian's python3-grpcio: a client we did not write.

Usage: /usr/bin/python3 create_certificate.py GEN_DIR TARGET ROOT_CERT TOKEN_FILE OUT_DIR
           [--impersonate SPIFFE_ID] [--clusterid ID]
GEN_DIR holds istioca_pb2*.py compiled from protos/istioca.proto by grpc_tools.protoc.
The key and CSR are made by `openssl req`, asking for a bogus SAN that the CA must ignore.
With --impersonate, the request is sent as ztunnel sends it (istio/ztunnel
src/identity/caclient.rs, src/identity/auth.rs): a google.protobuf.Struct metadata whose field
ImpersonatedIdentity is a string value, built here by python3-protobuf, and the clusterid header.
The response's elements are written as cert-chain.pem (all of them) and element-<i>.pem.
"""
import argparse
import os
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("gen_dir", "target", "root_cert", "token_file", "out_dir"):
        parser.add_argument(name)
    parser.add_argument("--impersonate")
    parser.add_argument("--clusterid")
    args = parser.parse_args()
    sys.path.insert(0, args.gen_dir)
    import grpc  # noqa: E402
    from google.protobuf import struct_pb2  # noqa: E402
    import istioca_pb2  # noqa: E402
    import istioca_pb2_grpc  # noqa: E402

    out_dir = args.out_dir
    key = os.path.join(out_dir, "key.pem")
    csr = os.path.join(out_dir, "csr.pem")
    subprocess.run(
        ["openssl", "req", "-new", "-nodes", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", key, "-out", csr,
         "-subj", "/CN=bogus.example",
         "-addext", "subjectAltName=URI:spiffe://bogus.example/ns/kube-system/sa/admin"],
        check=True, capture_output=True)
    with open(args.root_cert, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    with open(args.token_file) as f:
        token = f.read().strip()
    with open(csr) as f:
        request = istioca_pb2.IstioCertificateRequest(csr=f.read(), validity_duration=3600)
    if args.impersonate is not None:
        request.metadata.CopyFrom(struct_pb2.Struct(fields={
            "ImpersonatedIdentity": struct_pb2.Value(string_value=args.impersonate),
        }))
    metadata = [("authorization", "Bearer " + token)]
    if args.clusterid is not None:
        metadata.append(("clusterid", args.clusterid))
    with grpc.secure_channel(args.target, creds) as channel:
        stub = istioca_pb2_grpc.IstioCertificateServiceStub(channel)
        try:
            response = stub.CreateCertificate(request, metadata=metadata, timeout=20)
        except grpc.RpcError as e:
            print("rpc failed: %s %s" % (e.code(), e.details()), file=sys.stderr)
            return 3
    with open(os.path.join(out_dir, "cert-chain.pem"), "w") as f:
        f.write("".join(response.cert_chain))
    for i, element in enumerate(response.cert_chain):
        with open(os.path.join(out_dir, "element-%d.pem" % i), "w") as f:
            f.write(element)
    print("%d certificates" % len(response.cert_chain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
