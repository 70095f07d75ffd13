#!/usr/bin/env python3
"""A foreign gRPC client: calls /yolo.agent_container.Agent/Init with Debian's grpcio.

Usage: yolo_init_client.py UNIX_SOCKET OWNER NAME EMAIL FULL_NAME [USER]
Prints one JSON object per InitReply. The protobuf bytes are encoded and decoded by
hand (field numbers from packages/protocol/proto/yolo/agent_container.proto), so nothing but grpcio is needed.
"""
import base64
import json
import sys

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def string_field(number, value):
    data = value.encode("utf-8")
    return varint(number << 3 | 2) + varint(len(data)) + data


def encode_request(owner, name, email, full_name):
    return (
        string_field(1, owner)
        + string_field(2, name)
        + string_field(3, "python")
        + string_field(4, email)
        + string_field(5, full_name)
    )


NAMES = {
    1: "log_line_header",
    2: "log_line",
    3: "github_ssh_public_key_content",
    4: "github_gpg_public_key_content",
}


def decode_reply(data):
    out = {}
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire != 2:
            raise ValueError("unexpected wire type %d" % wire)
        length, i = read_varint(data, i)
        out[NAMES.get(number, str(number))] = data[i : i + length].decode("utf-8")
        i += length
    return out


def read_varint(data, i):
    shift = 0
    n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def main():
    sock, owner, name, email, full_name = sys.argv[1:6]
    user = sys.argv[6] if len(sys.argv) > 6 else ""
    channel = grpc.insecure_channel("unix://" + sock)
    init = channel.unary_stream(
        "/yolo.agent_container.Agent/Init",
        request_serializer=lambda b: b,
        response_deserializer=decode_reply,
    )
    metadata = []
    if user:
        metadata.append(("authorization", "Basic " + base64.b64encode((user + ":").encode()).decode()))
    try:
        for reply in init(encode_request(owner, name, email, full_name), metadata=metadata, timeout=120):
            print(json.dumps(reply), flush=True)
    except grpc.RpcError as err:
        print(json.dumps({"error": err.code().name, "details": err.details()}), flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
