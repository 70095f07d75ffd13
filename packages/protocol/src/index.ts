/**
 * Wire definitions shared by the agent, the SDK and the CLI.
 * Generated code lives in ./gen (regenerate with `npm run generate`); this file holds
 * the handwritten wire constants.
 */

export * from "./constants.js";
export * as filesystem from "./gen/filesystem/filesystem_pb.js";
export * as process from "./gen/process/process_pb.js";
export * as exec from "./gen/tether/v1/exec_pb.js";
export * as ports from "./gen/tether/v1/ports_pb.js";
export * as tunnel from "./gen/tether/v1/tunnel_pb.js";
export * as workspace from "./gen/tether/v1/workspace_pb.js";
export * as yolo from "./gen/yolo/agent_container_pb.js";
