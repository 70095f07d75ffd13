export * from "./gen/tether/v1/ports_pb.js";
