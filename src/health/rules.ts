/**
 * The pure decisions of the health evaluator (functions of state, now and settings), in one import for the
 * tests and for anyone explaining a verdict (API, CLI). Each lives in its own file; this only gathers them.
 */
export { livenessVerdict, silenceDeadline, willDeadline } from './liveness.js';
export type { HealthSettings, LivenessInput, LivenessVerdict } from './liveness.js';
export { classifyLosses, fleetCondition, customerCondition, firstCorrelatedGroup, reachesShare } from './correlation.js';
export type { LostGateway, LossInput } from './correlation.js';
export { gatewayCondition, sensorCondition, gatewayIsFine } from './device-conditions.js';
export type { DeviceView, Fault, LiveState } from './device-conditions.js';
export { flappingVerdict, flappingCondition } from './flapping.js';
export type { FlappingVerdict } from './flapping.js';
export { securityConditions, isSignatureOrHashFailure } from './security.js';
export type { SecurityEvent, SecuritySignalKind, SecurityWindow } from './security.js';
export { livenessStep } from './liveness-step.js';
export type { LivenessStep, LivenessStepInput } from './liveness-step.js';
export { detectGap, startupGraceUntil } from './own-outage.js';
export type { GapVerdict, HerdProgress, TickTiming } from './own-outage.js';
