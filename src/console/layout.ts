import type { ServerResponse } from 'node:http';
import type { Principal, Role } from '../access/roles.js';
import { roleAllows } from '../access/roles.js';
import { html, type Html } from './html.js';

/**
 * The console's content security policy (issue 14): scripts and styles only from our own /assets (no inline
 * script or style, no CDN), no framing, forms and fetches only to this origin.
 */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Sends a console page or fragment: CSP, no caching (pages show live data and the CSRF token). */
export function sendHtml(res: ServerResponse, status: number, body: Html): void {
  const text = body.value;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'content-security-policy': CONSOLE_CSP,
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** 303 to another console page (after sign-in, sign-out, or for a signed-out visitor). */
export function redirect(res: ServerResponse, location: string, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(303, { location, 'cache-control': 'no-store', ...headers });
  res.end();
}

/** The navigation entry a page belongs to. */
export type Section = 'queue' | 'fleet' | 'rollouts' | 'audit';

const NAV: { section: Section; href: string; label: string }[] = [
  { section: 'queue', href: '/', label: 'Queue' },
  { section: 'fleet', href: '/fleet', label: 'Fleet' },
  { section: 'rollouts', href: '/rollouts', label: 'Rollouts' },
  { section: 'audit', href: '/audit', label: 'Audit' },
];

/** The frame of every signed-in page: navigation, who is signed in, sign-out form (with the session's CSRF token). */
export function layout(title: string, section: Section, who: Principal, body: Html): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · xcare NOC</title>
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/console.js" defer></script>
</head>
<body data-csrf="${who.csrf ?? ''}">
<header class="top">
  <a class="brand" href="/">xcare <span>NOC</span></a>
  <nav>${NAV.map((n) => html`<a href="${n.href}"${n.section === section ? html` class="current" aria-current="page"` : ''}>${n.label}</a>`)}</nav>
  <div class="who"><span class="name">${who.name}</span> <span class="badge role-${who.role}">${who.role}</span>
    <form method="post" action="/logout" class="inline"><input type="hidden" name="_csrf" value="${who.csrf ?? ''}"><button type="submit" class="link">Sign out</button></form>
  </div>
</header>
<div id="flash" class="flash" role="status" hidden></div>
<main>
${body}
</main>
</body>
</html>`;
}

/**
 * A button that calls the API with the session cookie and CSRF token (assets/console.js). Shown to every role;
 * a role below `needs` sees it marked, and the server refuses it (403) if pressed: the server decides, not the page.
 */
export function actionForm(
  who: Principal,
  needs: Role,
  api: string,
  label: string,
  opts: { fields?: Html; confirm?: string; danger?: boolean; id?: string; prompt?: { field: string; question: string } } = {},
): Html {
  const allowed = roleAllows(who.role, needs);
  return html`<form class="action${allowed ? '' : ' not-allowed'}" data-api="${api}"${opts.confirm ? html` data-confirm="${opts.confirm}"` : ''}${opts.prompt ? html` data-prompt="${opts.prompt.question}" data-prompt-field="${opts.prompt.field}"` : ''}${opts.id ? html` id="${opts.id}"` : ''}>${opts.fields ?? ''}<button type="submit" class="${opts.danger ? 'danger' : ''}">${label}</button>${allowed ? '' : html`<span class="needs" title="your role is ${who.role}">needs ${needs}</span>`}</form>`;
}

/** Severity, state and band as small coloured labels (class names are fixed words, values escaped). */
export function badge(kind: string, value: string | null | undefined): Html {
  const v = value ?? '-';
  const safeClass = /^[a-z_]+$/.test(v) ? v : 'other';
  return html`<span class="badge ${kind}-${safeClass}">${v}</span>`;
}
