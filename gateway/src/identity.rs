//! Who a pod is: role, name, uid and the machine it runs on, as the cluster records it.

use std::fmt;

/// A pod's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The management service.
    Mgmt,
    /// The public REST gateway.
    Restapi,
    /// A DepthCache node.
    Dcn,
}

impl Role {
    /// The original's role string (`ubdcc-mgmt`, `ubdcc-restapi`, `ubdcc-dcn`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mgmt => "ubdcc-mgmt",
            Self::Restapi => "ubdcc-restapi",
            Self::Dcn => "ubdcc-dcn",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The version every role reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A pod's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// Role.
    pub role: Role,
    /// Name (the DCN's name also names its shared-memory segment).
    pub name: String,
    /// Unique id, new for every process start.
    pub uid: String,
    /// The machine (Kubernetes node, or this host's id): replicas of a book prefer different
    /// machines, and restapi reads locally from DCNs on its own machine.
    pub node: String,
}

impl PodIdentity {
    /// An identity with a fresh uid; `name` defaults to `<role>-<8 hex>`, `node` to this host.
    pub fn new(role: Role, name: Option<&str>, node: Option<&str>) -> Self {
        let uid = uuid::Uuid::new_v4().simple().to_string();
        let name = name.filter(|n| !n.is_empty()).map_or_else(
            || {
                format!(
                    "{}-{}",
                    role.as_str().trim_start_matches("ubdcc-"),
                    &uid[..8]
                )
            },
            str::to_owned,
        );
        let node = node
            .filter(|n| !n.is_empty())
            .map_or_else(host_id, str::to_owned);
        Self {
            role,
            name,
            uid,
            node,
        }
    }
}

/// This machine's id: `/etc/machine-id`, else the host name, else `localhost`.
pub fn host_id() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    read("/etc/machine-id")
        .or_else(|| read("/proc/sys/kernel/hostname"))
        .unwrap_or_else(|| "localhost".into())
}
