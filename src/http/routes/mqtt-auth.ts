import type { Router } from '../router.js';
import type { Logger } from '../../log.js';
import { checkConnectIdentity } from '../../../broker/connect-policy.js';
import { authorizePublish, authorizeSubscribe } from '../../../broker/acl.js';
import type { SecurityEvent } from '../../../broker/fleet-broker.js';
import { isDeviceId } from '../../protocol/names.js';
import { topics } from '../../protocol/topics.js';
import { ValidationError, XcareError } from '../../errors.js';

export interface MqttHookDeps {
  log: Logger;
  /**
   * The registry's token check (the same one the embedded broker uses): true/'ok' when the device exists, is not
   * revoked and the token matches; 'retired' for its own token from before a recent rotation or revocation
   * (denied without a security signal); anything else is a failed CONNECT.
   */
  authenticate(deviceId: string, token: string, source?: string): Promise<boolean | 'ok' | 'refused' | 'throttled' | 'retired'>;
  /** Failed CONNECTs and ACL denials for the health evaluator's security conditions. */
  onSecurityEvent(e: SecurityEvent): void;
  /** fleet_mqtt_auth_failures_total / fleet_mqtt_acl_denied_total, shared with the broker side. */
  countAuthFailure(): void;
  countAclDenied(): void;
}

/** One rule of EMQX 5's `acl` list in an HTTP authentication answer. */
export interface EmqxAclRule {
  permission: 'allow' | 'deny';
  action: 'publish' | 'subscribe' | 'all';
  topic: string;
}

/**
 * The device's own topics (PROTOCOL.md "MQTT 3.1.1") as EMQX ACL rules. Only allow rules: anything
 * else falls through to EMQX's next authorizer, `POST /mqtt/acl`, which denies and reports it.
 */
export function emqxDeviceAcl(deviceId: string): EmqxAclRule[] {
  return [
    { permission: 'allow', action: 'publish', topic: topics.heartbeat(deviceId) },
    { permission: 'allow', action: 'publish', topic: topics.state(deviceId) },
    { permission: 'allow', action: 'publish', topic: topics.patchStatus(deviceId) },
    { permission: 'allow', action: 'subscribe', topic: topics.cmdFilter(deviceId) },
  ];
}

function str(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  return typeof v === 'string' ? v : undefined;
}

/**
 * EMQX 5 HTTP hooks (external broker mode with `mqtt.broker.credentials: http`), PROTOCOL.md "HTTP":
 *
 * - `POST /mqtt/auth`: EMQX's HTTP authentication request, configured with the body
 *   `{"clientid":"${clientid}","username":"${username}","password":"${password}","peerhost":"${peerhost}"}`.
 *   Answers 200 `{"result":"allow","is_superuser":false,"acl":[...]}` with the device's own topics, or
 *   `{"result":"deny"}` with no reason (same rules as the embedded broker's CONNECT). The token check is
 *   the registry's, with no slow KDF on this path.
 * - `POST /mqtt/acl`: EMQX's HTTP authorization request (`{clientid, username, topic, action}`), reached only
 *   for topics outside the device's own list: answers from the same ACL functions as the embedded broker
 *   and reports each denial as an ACL violation.
 *
 * A malformed request answers 400 `{"error": ...}` and changes nothing; EMQX treats a non-200 answer as
 * "ignore" and moves to its next authenticator, which in a device-only deployment denies.
 */
export function registerMqttHookRoutes(router: Router, deps: MqttHookDeps): void {
  router.post('/mqtt/auth', 'public', async (ctx) => {
    const body = (await ctx.body()) as Record<string, unknown>;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ValidationError('expected a JSON object {clientid, username, password, peerhost}');
    const clientId = str(body, 'clientid');
    const username = str(body, 'username');
    const password = str(body, 'password');
    const remote = str(body, 'peerhost');
    const identity = checkConnectIdentity({
      clientId: clientId ?? '',
      username,
      password: password === undefined ? undefined : Buffer.from(password, 'utf8'),
      protocolVersion: 4,
    });
    if (!identity.ok) return refuse(identity.reason, isDeviceId(username) ? username : undefined, remote);
    let valid: boolean | 'ok' | 'refused' | 'throttled' | 'retired';
    try {
      // peerhost is the source the registry rate-limits failures by (issue 12), as the embedded broker does.
      valid = await deps.authenticate(identity.deviceId, identity.token, remote);
    } catch (err) {
      // EMQX treats a non-200 as "ignore": the next authenticator (deny) decides; nothing is allowed by error.
      deps.log.error({ err, deviceId: identity.deviceId }, 'device authentication failed with an error');
      throw new XcareError('AUTH_UNAVAILABLE', 'device authentication unavailable', 503);
    }
    if (valid === 'retired') {
      deps.log.debug({ deviceId: identity.deviceId, remote }, 'CONNECT refused (broker auth hook): a token retired by rotation or revocation');
      return { result: 'deny' as const };
    }
    if (valid !== true && valid !== 'ok') return refuse('unknown_revoked_or_wrong_token', identity.deviceId, remote);
    return { result: 'allow', is_superuser: false, acl: emqxDeviceAcl(identity.deviceId) };
  });

  router.post('/mqtt/acl', 'public', async (ctx) => {
    const body = (await ctx.body()) as Record<string, unknown>;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ValidationError('expected a JSON object {clientid, username, topic, action}');
    const clientId = str(body, 'clientid');
    const username = str(body, 'username');
    const topic = str(body, 'topic');
    const action = str(body, 'action');
    if (!clientId) throw new ValidationError('clientid: expected a string');
    if (!topic) throw new ValidationError('topic: expected a string');
    if (action !== 'publish' && action !== 'subscribe') throw new ValidationError('action: expected publish or subscribe');
    const deviceId = isDeviceId(username) && username === clientId ? username : undefined;
    const decision = !deviceId ? { allow: false as const, reason: 'not_a_device' } : action === 'publish' ? authorizePublish(deviceId, topic) : authorizeSubscribe(deviceId, topic);
    if (decision.allow) return { result: 'allow' };
    deps.countAclDenied();
    deps.log.warn({ deviceId, topic, reason: `${action}_${decision.reason}` }, 'ACL violation (reported by the broker)');
    if (deviceId) deps.onSecurityEvent({ kind: 'acl_violation', deviceId, topic });
    return { result: 'deny' };
  });

  function refuse(reason: string, deviceId: string | undefined, remote: string | undefined): { result: 'deny' } {
    deps.countAuthFailure();
    deps.log.info({ deviceId, remote, reason }, 'CONNECT refused (broker auth hook)');
    deps.onSecurityEvent({ kind: 'auth_failure', ...(deviceId ? { deviceId } : {}), ...(remote ? { remote } : {}) });
    return { result: 'deny' };
  }
}

