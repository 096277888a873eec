import { ValidationError } from '../errors.js';
import type { DeviceDirectory } from '../registry/types.js';
import { CLASSIFICATIONS, SEVERITIES, TICKET_KINDS, type Classification, type ConditionReport, type Severity, type TicketKind } from './types.js';

/** A person's ticket as the API and the CLI take it (RULES.md: raised by a person). */
export interface OpenTicketInput {
  subject: string;
  classification: Classification;
  severity?: Severity;
  summary: string;
  kind?: TicketKind;
  details?: Record<string, unknown>;
}

/** A reporter's condition must name a known kind, severity and classification; anything else is refused. */
export function validateReport(report: ConditionReport): void {
  if (!report || typeof report !== 'object') throw new ValidationError('report: expected an object');
  if (!TICKET_KINDS.includes(report.kind)) throw new ValidationError(`kind: unknown ticket kind ${JSON.stringify(report.kind)}`);
  if (typeof report.subject !== 'string' || report.subject.length === 0 || report.subject.length > 200) {
    throw new ValidationError('subject: expected a non-empty string');
  }
  if (!SEVERITIES.includes(report.severity)) throw new ValidationError(`severity: unknown severity ${JSON.stringify(report.severity)}`);
  if (!CLASSIFICATIONS.includes(report.classification)) {
    throw new ValidationError(`classification: unknown classification ${JSON.stringify(report.classification)}`);
  }
  if (typeof report.summary !== 'string') throw new ValidationError('summary: expected a string');
}

/** Validate a person's ticket (API body or CLI flags). Consultative tickets default to severity low (RULES.md). */
export function parseOpenInput(raw: unknown): Required<Omit<OpenTicketInput, 'details'>> & { details: Record<string, unknown> } {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ValidationError('body: expected a JSON object');
  const input = raw as Record<string, unknown>;
  const subject = input.subject;
  if (typeof subject !== 'string' || subject.trim().length === 0 || subject.length > 200) throw new ValidationError('subject: required');
  const classification = input.classification;
  if (classification !== 'problem' && classification !== 'consultative') throw new ValidationError('classification: expected problem or consultative');
  let severity = input.severity;
  if (severity === undefined || severity === null) {
    if (classification === 'consultative') severity = 'low';
    else throw new ValidationError('severity: required for a problem ticket (urgent, high, medium, low)');
  }
  if (!SEVERITIES.includes(severity as Severity)) throw new ValidationError('severity: expected urgent, high, medium or low');
  const summary = input.summary;
  if (typeof summary !== 'string' || summary.trim().length === 0) throw new ValidationError('summary: required');
  if (summary.length > 2000) throw new ValidationError('summary: at most 2000 characters');
  const kind = input.kind ?? 'manual';
  if (!TICKET_KINDS.includes(kind as TicketKind)) throw new ValidationError(`kind: unknown ticket kind ${JSON.stringify(kind)}`);
  const details = input.details ?? {};
  if (typeof details !== 'object' || details === null || Array.isArray(details)) throw new ValidationError('details: expected an object');
  return {
    subject: subject.trim(),
    classification,
    severity: severity as Severity,
    summary: summary.trim(),
    kind: kind as TicketKind,
    details: details as Record<string, unknown>,
  };
}


/** A person's ticket names a registered device, `customer:<name>` of a known customer, or `fleet`. */
export function subjectExists(subject: string, directory: DeviceDirectory): boolean {
  if (subject === 'fleet') return true;
  if (directory.get(subject)) return true;
  if (subject.startsWith('customer:')) {
    const name = subject.slice('customer:'.length);
    if (directory.gatewaysOf(name).length > 0) return true;
    for (const d of directory.all()) if (d.customer === name) return true;
  }
  return false;
}
