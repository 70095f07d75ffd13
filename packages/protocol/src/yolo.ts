export * from "./gen/yolo/agent_container_pb.js";
