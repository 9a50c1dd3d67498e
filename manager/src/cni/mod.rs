//! CNI semantics for the daemon: the plugin `lanes-cni` forwards each call (its `CNI_*`
//! environment and stdin) unchanged, and the daemon parses and validates it here.
//!
//! This module is pure: no I/O, no netns or socket access (existence checks happen elsewhere).
//!
//! * [`env`](mod@env): `CNI_COMMAND`, the variables each verb requires ([`parse_env`]),
//!   `CNI_ARGS` and the Kubernetes pod identity.
//! * [`netconf`](mod@netconf): the request configuration on stdin ([`parse_netconf`]).
//! * [`version`](mod@version): the spec versions we speak (0.3.0 … 1.1.0), spec-1.1 selection
//!   from `cniVersion` + `cniVersions`, and the VERSION answer.
//! * [`result`](mod@result): a version-independent result model, rendered per version and
//!   parsed from any supported layout (for `prevResult`).
//! * [`error`](mod@error): the error result `{"cniVersion","code","msg","details"}` and its codes.
//!
//! A call is handled roughly as:
//! `parse_env` → (VERSION: [`version_output`]) → `parse_netconf(stdin, env.command)` → act →
//! [`CniResult::to_bytes`] with `conf.cni_version`, or [`CniError::to_json`] with
//! [`input_cni_version`] of stdin.

pub mod env;
pub mod error;
pub mod netconf;
pub mod result;
pub mod version;

pub use env::{parse_env, CniEnv, Command, PodIdentity};
pub use error::CniError;
pub use netconf::{parse_netconf, AttachmentKey, NetConf, PLUGIN_TYPE};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{input_cni_version, select_version, version_output, SpecVersion, SUPPORTED_VERSIONS};
