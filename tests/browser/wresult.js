// Validates a WS-Federation sign-in response (the form fields wa / wresult / wctx) with Auth0's
// passport-wsfed-saml2: signature against the signing certificate, audience
// urn:federation:MicrosoftOnline, lifetime; then checks the issuer. Used by receiver.js (the
// browser test's reply target) and, as a command, by tests/wresult_oracle.rs:
//
//   node wresult.js <signing-cert.pem> <issuer> <file holding the wresult XML>
//
// prints one JSON line {"ok":true,...} (exit 0) or {"ok":false,"error":...} (exit 1).
'use strict';
const fs = require('fs');
const Strategy = require('passport-wsfed-saml2').Strategy;

function certBase64(path) {
  return fs.readFileSync(path, 'utf8').replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
}

// Calls done(err) or done(null, profile) for the posted form `body`.
function validate(body, signingCertPath, issuer, done) {
  const strategy = new Strategy(
    { cert: certBase64(signingCertPath), realm: 'urn:federation:MicrosoftOnline', checkExpiration: true, checkRecipient: false },
    (profile, verified) => {
      if (profile.issuer !== issuer) {
        return verified(null, false, { message: `issuer ${profile.issuer} is not ${issuer}` });
      }
      verified(null, profile);
    });
  strategy.success = (user) => done(null, user);
  strategy.fail = (info) => done(new Error((info && info.message) || String(info)));
  strategy.error = (err) => done(err);
  strategy.redirect = () => done(new Error('unexpected redirect'));
  const headers = { host: '127.0.0.1' };
  strategy.authenticate({ method: 'POST', body, query: {}, headers, url: '/', get: (name) => headers[name.toLowerCase()] }, {});
}

module.exports = { validate };

if (require.main === module) {
  const [cert, issuer, file] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node wresult.js <signing-cert.pem> <issuer> <wresult-file>');
    process.exit(2);
  }
  const body = { wa: 'wsignin1.0', wresult: fs.readFileSync(file, 'utf8'), wctx: '' };
  validate(body, cert, issuer, (err, profile) => {
    if (err) {
      console.log(JSON.stringify({ ok: false, error: err.message }));
      process.exit(1);
    }
    console.log(JSON.stringify({ ok: true, issuer: profile.issuer }));
  });
}
