export * from "./gen/tether/v1/workspace_pb.js";
