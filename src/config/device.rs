//! `[device_trust]` (the device CA) and `[apps.device_trust]` (who needs a trusted device for
//! which flows); the decision itself is `policy::device`.

use std::path::PathBuf;

use serde::Deserialize;

/// A sign-in flow, as device-trust policies name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// Passive WS-Federation (browser, OOBE web view).
    Passive,
    /// Active WS-Trust endpoints (usernamemixed).
    Active,
    /// Requests classified as Windows logon (an addition to `active`, never a carve-out).
    WindowsLogon,
}

/// `[device_trust]`: the device CA.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTrustConfig {
    /// PEM file with the device CA certificate(s).
    pub ca_file: PathBuf,
    /// Optional PEM file with CRLs of the device CA.
    #[serde(default)]
    pub crl_file: Option<PathBuf>,
}

/// `[apps.device_trust]`: who needs a trusted device for which flows of this app.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDevicePolicy {
    /// Flows the policy covers: `passive`, `active`, `windows_logon`.
    pub flows: Vec<Flow>,
    /// UPNs (case-insensitive) the policy covers; `"*"` covers everyone.
    #[serde(default)]
    pub users: Vec<String>,
    /// Directory groups the policy covers: a CN (`staff`, any case) or a full DN, compared as
    /// `directory::dn::group_matches` does.
    #[serde(default)]
    pub groups: Vec<String>,
}
