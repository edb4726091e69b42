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

pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod defaults;
pub mod directory;
pub mod error;
#[cfg(feature = "kerberos")]
pub mod kerberos;
pub mod keytab;
pub mod logging;
pub mod mex;
pub mod ns;
pub mod policy;
pub mod preflight;
pub mod rollover;
pub mod saml;
pub mod server;
pub mod soap;
pub mod state;
pub mod sts;
pub mod totp;
pub mod windowstransport;
pub mod wsfed;
pub mod wstrust;
pub mod xml;
pub mod xmldsig;
