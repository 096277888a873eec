/**
 * The agent's version, reported as `agentVersion` in every heartbeat. A constant rather than a
 * package.json read, so the agent works from any install layout; a unit test keeps it equal to
 * package.json's `version`.
 */
export const AGENT_VERSION = '0.1.0';
