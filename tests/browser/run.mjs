// Drives Debian's Chromium (headless) against a running Tessera node, from two origins:
// APP_URL (listed in TESSERA_CORS_ORIGINS) and FOREIGN_URL (not listed, and another site).
// Started by tests/browser.rs; exits non-zero on the first failed expectation.

import { chromium } from 'playwright-core';

const TESSERA = process.env.TESSERA_URL;
const APP = process.env.APP_URL;
const FOREIGN = process.env.FOREIGN_URL;
const EMAIL = `browser-${Date.now()}@example.com`;
const PASSWORD = 'correct horse battery staple';

let failures = 0;
function expect(what, actual, expected) {
  const ok = JSON.stringify(actual) === JSON.stringify(expected);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${JSON.stringify(actual)}${ok ? '' : ` (expected ${JSON.stringify(expected)})`}`);
  if (!ok) failures += 1;
}

// The account is created outside the browser.
const registered = await fetch(`${TESSERA}/v1/users`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
});
expect('registration', registered.status, 201);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const context = await browser.newContext();
  const app = await context.newPage();
  await app.goto(APP);

  // Everything below runs inside the app's page, as the app's own JavaScript would.
  const login = await app.evaluate(async ({ tessera, email, password }) => {
    const response = await fetch(`${tessera}/v1/login`, {
      method: 'POST',
      credentials: 'include',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password, transport: 'cookie' }),
    });
    const body = await response.json();
    return { status: response.status, keys: Object.keys(body).sort(), csrf: body.csrf_token };
  }, { tessera: TESSERA, email: EMAIL, password: PASSWORD });
  expect('cookie login status', login.status, 200);
  expect('no token material in the body', login.keys.filter((k) => k.includes('access') || k.includes('refresh_token')), []);

  const visible = await app.evaluate(() => document.cookie);
  expect('the page cannot see the access cookie', visible.includes('-at='), false);
  expect('the page cannot see the refresh cookie', visible.includes('-rt='), false);
  expect('the page can read the CSRF cookie', visible.includes(`-csrf=${login.csrf}`), true);

  const me = await app.evaluate(async (tessera) => {
    const response = await fetch(`${tessera}/v1/me`, { credentials: 'include' });
    return { status: response.status, email: (await response.json()).email };
  }, TESSERA);
  expect('credentialed fetch of /v1/me', me, { status: 200, email: EMAIL });

  const withoutCsrf = await app.evaluate(async (tessera) => {
    const response = await fetch(`${tessera}/v1/logout`, { method: 'POST', credentials: 'include' });
    return response.status;
  }, TESSERA);
  expect('a mutating request without the CSRF header is refused', withoutCsrf, 403);

  // A foreign origin can neither read nor mutate.
  const foreign = await context.newPage();
  await foreign.goto(FOREIGN);
  const foreignRead = await foreign.evaluate(async (tessera) => {
    try {
      const response = await fetch(`${tessera}/v1/me`, { credentials: 'include' });
      return `read ${response.status}`;
    } catch (e) {
      return 'blocked';
    }
  }, TESSERA);
  expect('a foreign origin cannot read /v1/me', foreignRead, 'blocked');
  const foreignWrite = await foreign.evaluate(async (tessera) => {
    // A "simple" cross-origin POST is sent without a preflight; the server must refuse it.
    await fetch(`${tessera}/v1/logout`, {
      method: 'POST', credentials: 'include', mode: 'no-cors',
      headers: { 'content-type': 'text/plain' }, body: 'x',
    });
    return 'sent';
  }, TESSERA);
  expect('the foreign page sent its POST', foreignWrite, 'sent');
  const stillIn = await app.evaluate(async (tessera) => (await fetch(`${tessera}/v1/me`, { credentials: 'include' })).status, TESSERA);
  expect('the foreign POST changed nothing', stillIn, 200);

  // A cookie refresh with the CSRF header rotates the cookies.
  const refreshed = await app.evaluate(async (tessera) => {
    const csrf = document.cookie.split('; ').find((c) => c.includes('-csrf=')).split('=')[1];
    const response = await fetch(`${tessera}/v1/token/refresh`, {
      method: 'POST', credentials: 'include', headers: { 'x-csrf-token': csrf },
    });
    return response.status;
  }, TESSERA);
  expect('cookie refresh with the CSRF header', refreshed, 200);

  const logout = await app.evaluate(async (tessera) => {
    const csrf = document.cookie.split('; ').find((c) => c.includes('-csrf=')).split('=')[1];
    const response = await fetch(`${tessera}/v1/logout`, {
      method: 'POST', credentials: 'include', headers: { 'x-csrf-token': csrf },
    });
    return response.status;
  }, TESSERA);
  expect('logout with the CSRF header', logout, 204);
  const afterLogout = await app.evaluate(async (tessera) => (await fetch(`${tessera}/v1/me`, { credentials: 'include' })).status, TESSERA);
  expect('/v1/me after logout', afterLogout, 401);
  const cookiesLeft = await context.cookies(TESSERA);
  expect('logout cleared every Tessera cookie', cookiesLeft.map((c) => c.name).filter((n) => n.includes('tessera')), []);
} finally {
  await browser.close();
}

console.log(failures === 0 ? 'browser checks passed' : `${failures} browser check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
