//! Where agents and dashboards are connected: this process's agent slot
//! registry, the dashboard hub, and the cross-replica routing that reaches
//! connections held by other replicas. The transports register connections
//! here; the commands domain delivers through it; REST revocations close
//! sockets through it; writers publish dashboard topics through it.

pub mod cluster;
pub mod live;
pub mod registry;

use crate::settings::Settings;
use crate::store::Db;
use uuid::Uuid;

/// WebSocket close code for a revoked agent or an archived project.
pub const CLOSE_REVOKED: u16 = 4003;

pub struct Fleet {
    pub registry: registry::Registry,
    pub cluster: cluster::Cluster,
    pub live: std::sync::Arc<live::Live>,
}

impl Fleet {
    pub fn new(settings: &Settings, db: &Db) -> Fleet {
        let cluster = cluster::Cluster::new(settings, db);
        Fleet {
            registry: registry::Registry::default(),
            live: live::Live::new(cluster.notify().is_some()),
            cluster,
        }
    }

    /// A revoked agent: close its sockets here and on every replica.
    pub async fn revoke_agent(&self, agent_id: Uuid) -> usize {
        let kicked = self.registry.kick_agent(agent_id, CLOSE_REVOKED);
        self.cluster.publish_agent_revoked(agent_id).await;
        kicked
    }

    /// An archived project: close its agents' sockets everywhere.
    pub async fn revoke_project(&self, project_id: Uuid, agents: &[Uuid]) {
        for a in agents {
            self.registry.kick_agent(*a, CLOSE_REVOKED);
        }
        self.cluster.publish_project_revoked(project_id).await;
    }
}
