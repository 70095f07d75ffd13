export { type AgentProcess, sampleMax, spawnAgentProcess } from "@tether/agent";
