//! The wire formats, each a pure function of its input: the hardened XML reader (`xml`), SOAP
//! 1.2 envelopes and faults (`soap`), WS-Trust requests and responses (`wstrust`), the MEX
//! document (`mex`), SAML 1.1 / 2.0 assertions (`saml`), enveloped XML signatures (`xmldsig`)
//! and the namespace URIs they share (`ns`). Nothing here knows a password, a policy or a socket.

pub mod mex;
pub mod ns;
pub mod saml;
pub mod soap;
pub mod wstrust;
pub mod xml;
pub mod xmldsig;
