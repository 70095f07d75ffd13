export { type AgentProcess, sampleMax, spawnAgentProcess } from "../../src/agent-process.js";
