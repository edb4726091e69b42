//! fedsts — a WS-Trust / WS-Federation security token service that lets a company's own
//! directory act as the identity provider of a Microsoft Entra ID federated domain.
//!
//! Data flows one way through the modules:
//! HTTP (`server`) → SOAP (`xml`, `soap`) → protocol (`wstrust`, `mex`, `commands`) →
//! directory (`directory`) → claims and assertion (`saml`) → signature (`xmldsig`, `crypto`) →
//! response. `sts` ties the steps of one request together; `error` is the one place that maps
//! every module's error to a SOAP fault and an HTTP status.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod adfs;
pub mod autoroll;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod directory;
pub mod error;
pub mod file_edit;
pub mod first_run;
pub mod kerberos;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod powershell;
pub mod preflight;
pub mod protocol;
pub mod random;
pub mod reload;
pub mod secret;
pub mod server;
pub mod state;
pub mod sts;
pub mod totp;
