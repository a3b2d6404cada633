"""Calls Castellan's CreateCertificate with Debian's python3-grpcio: a client we did not write.

Usage: /usr/bin/python3 create_certificate.py GEN_DIR TARGET ROOT_CERT TOKEN_FILE OUT_DIR
GEN_DIR holds istioca_pb2*.py compiled from protos/istioca.proto by grpc_tools.protoc.
The key and CSR are made by `openssl req`, asking for a bogus SAN that the CA must ignore.
"""
import os
import subprocess
import sys


def main() -> int:
    gen_dir, target, root_cert, token_file, out_dir = sys.argv[1:6]
    sys.path.insert(0, gen_dir)
    import grpc  # noqa: E402
    import istioca_pb2  # noqa: E402
    import istioca_pb2_grpc  # noqa: E402

    key = os.path.join(out_dir, "key.pem")
    csr = os.path.join(out_dir, "csr.pem")
    subprocess.run(
        ["openssl", "req", "-new", "-nodes", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", key, "-out", csr,
         "-subj", "/CN=bogus.example",
         "-addext", "subjectAltName=URI:spiffe://bogus.example/ns/kube-system/sa/admin"],
        check=True, capture_output=True)
    with open(root_cert, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    with open(token_file) as f:
        token = f.read().strip()
    with open(csr) as f:
        request = istioca_pb2.IstioCertificateRequest(csr=f.read(), validity_duration=3600)
    with grpc.secure_channel(target, creds) as channel:
        stub = istioca_pb2_grpc.IstioCertificateServiceStub(channel)
        try:
            response = stub.CreateCertificate(
                request, metadata=[("authorization", "Bearer " + token)], timeout=20)
        except grpc.RpcError as e:
            print("rpc failed: %s %s" % (e.code(), e.details()), file=sys.stderr)
            return 3
    with open(os.path.join(out_dir, "cert-chain.pem"), "w") as f:
        f.write("".join(response.cert_chain))
    print("%d certificates" % len(response.cert_chain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
