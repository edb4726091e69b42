//! fedsts — a WS-Trust / WS-Federation security token service that lets a company's own
//! directory act as the identity provider of a Microsoft Entra ID federated domain.
//!
//! Data flows one way through the modules:
//! HTTP (`server`) → SOAP (`xml`, `soap`) → protocol (`wstrust`, `mex`, `commands`) →
//! directory (`directory`) → claims and assertion (`saml`) → signature (`xmldsig`, `crypto`) →
//! response. `error` is the one place that maps every module's error to a SOAP fault or an
//! HTTP status.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod commands;
pub mod config;
pub mod crypto;
pub mod directory;
pub mod mex;
pub mod saml;
pub mod soap;
pub mod wstrust;
pub mod xml;
pub mod xmldsig;
