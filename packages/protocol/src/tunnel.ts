export * from "./gen/tether/v1/tunnel_pb.js";
