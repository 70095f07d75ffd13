export * from "./gen/process/process_pb.js";
