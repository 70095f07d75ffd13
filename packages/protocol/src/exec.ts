export * from "./gen/tether/v1/exec_pb.js";
