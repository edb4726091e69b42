// Reply target for the passive WS-Federation browser test: an independent consumer of our
// wresult. It validates the posted token with Auth0's passport-wsfed-saml2 (signature against the
// configured signing certificate, audience, lifetime) and checks the issuer, then answers with a
// page whose <pre id="result"> holds a JSON summary the test reads through the browser.
//
// usage: node receiver.js <tls-cert.pem> <tls-key.pem> <signing-cert.pem> <issuer>
// (the signing certificate file is read at each POST, so it may appear after the receiver starts)
// prints "listening <port>" on stdout once ready (port chosen by the OS, 127.0.0.1 only).
'use strict';
const fs = require('fs');
const https = require('https');
const querystring = require('querystring');
const { validate } = require('./wresult');

const [tlsCert, tlsKey, signingCert, issuer] = process.argv.slice(2);
if (!issuer) {
  console.error('usage: node receiver.js <tls-cert> <tls-key> <signing-cert.pem> <issuer>');
  process.exit(2);
}

function page(status, summary) {
  const json = JSON.stringify(summary);
  const escaped = json.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return [status, `<!doctype html><title>receiver</title><pre id="result">${escaped}</pre>`];
}

function answer(req, body) {
  if (req.method !== 'POST') return Promise.resolve(page(405, { ok: false, error: 'POST only' }));
  const form = querystring.parse(body);
  return new Promise((resolve) => {
    if (typeof form.wresult !== 'string') {
      return resolve(page(400, { ok: false, error: 'no wresult', wa: form.wa }));
    }
    validate(form, signingCert, issuer, (err, profile) => {
      if (err) return resolve(page(401, { ok: false, error: err.message }));
      const claims = {};
      for (const [k, v] of Object.entries(profile)) if (typeof v === 'string' || Array.isArray(v)) claims[k] = v;
      resolve(page(200, { ok: true, wa: form.wa, wctx: form.wctx, issuer: profile.issuer, claims }));
    });
  });
}

const server = https.createServer({ cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey) }, (req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { body += chunk; if (body.length > 1 << 20) req.destroy(); });
  req.on('end', () => {
    answer(req, body).then(([status, html]) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
    });
  });
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
