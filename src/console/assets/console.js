// xcare NOC console: the little script the server-rendered pages need (no framework, no inline script: the CSP
// allows only this file). It (1) refreshes live regions without a reload, (2) sends action forms to the JSON API
// with the session's CSRF token, (3) ticks soak countdowns, (4) sizes progress bars. Every text it shows from the
// server goes in as textContent; HTML comes only from our own escaped fragments.
'use strict';
(function () {
  const csrf = document.body ? document.body.dataset.csrf || '' : '';
  const flash = document.getElementById('flash');

  function say(message, kind) {
    if (!flash) return;
    flash.textContent = message;
    flash.className = 'flash ' + (kind || 'info');
    flash.hidden = false;
    clearTimeout(say.timer);
    say.timer = setTimeout(() => (flash.hidden = true), 8000);
  }

  function sizeBars(root) {
    root.querySelectorAll('.bar span[data-w]').forEach((el) => {
      el.style.width = el.dataset.w + '%';
    });
  }

  function tick() {
    const now = Date.now();
    document.querySelectorAll('[data-countdown]').forEach((el) => {
      const end = Date.parse(el.dataset.countdown);
      if (Number.isNaN(end)) return;
      const s = Math.max(0, Math.round((end - now) / 1000));
      const h = Math.floor(s / 3600);
      const m = Math.floor((s % 3600) / 60);
      el.textContent = s === 0 ? 'soak over' : (h ? h + 'h ' : '') + String(m).padStart(2, '0') + 'm ' + String(s % 60).padStart(2, '0') + 's left';
    });
  }

  async function refresh(el) {
    if (el.dataset.busy === '1' || el.contains(document.activeElement)) return;
    el.dataset.busy = '1';
    try {
      const res = await fetch(el.dataset.live, { credentials: 'same-origin', headers: { accept: 'text/html' } });
      if (res.status === 401) {
        location.href = '/login';
        return;
      }
      if (!res.ok) return;
      const text = await res.text();
      if (text !== el.dataset.last) {
        el.dataset.last = text;
        el.innerHTML = text; // our own server-escaped fragment (src/console/html.ts)
        sizeBars(el);
        tick();
        el.dispatchEvent(new CustomEvent('live-updated', { bubbles: true }));
      }
    } catch (_) {
      // daemon restarting or network blip: the next poll tries again
    } finally {
      el.dataset.busy = '';
    }
  }

  function startLive() {
    document.querySelectorAll('[data-live]').forEach((el) => {
      const ms = Number(el.dataset.liveMs || 2000);
      setInterval(() => refresh(el), ms);
    });
  }

  async function submitAction(form) {
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const body = {};
    if (form.dataset.prompt) {
      const answer = window.prompt(form.dataset.prompt);
      if (answer === null || answer.trim() === '') return;
      body[form.dataset.promptField || 'reason'] = answer.trim();
    }
    new FormData(form).forEach((v, k) => {
      if (typeof v === 'string' && v !== '') body[k] = v;
    });
    const button = form.querySelector('button');
    if (button) button.disabled = true;
    try {
      const res = await fetch(form.dataset.api, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
        body: JSON.stringify(body),
      });
      let data = {};
      try {
        data = await res.json();
      } catch (_) {}
      if (res.status === 401) {
        location.href = '/login';
        return;
      }
      if (!res.ok) {
        say((data && data.error) || 'HTTP ' + res.status, 'error');
        return;
      }
      say('Done: ' + (button ? button.textContent : 'action'), 'ok');
      const live = form.closest('[data-live]');
      if (live) await refresh(live);
      else setTimeout(() => location.reload(), 300);
    } catch (err) {
      say('Could not reach the daemon: ' + err.message, 'error');
    } finally {
      if (button) button.disabled = false;
    }
  }

  document.addEventListener('submit', (e) => {
    const form = e.target;
    if (form instanceof HTMLFormElement && form.dataset.api) {
      e.preventDefault();
      submitAction(form);
    }
  });

  sizeBars(document);
  tick();
  setInterval(tick, 1000);
  startLive();
})();
