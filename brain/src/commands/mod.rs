//! The command lifecycle: issue (persisted, then pushed or published to
//! the replica holding the agent), delivery to a connection (claimed before
//! the frame is written), the agent's ack and result, the reconciliation
//! answer, and the timeout sweep. Used by the REST routes, the agent
//! transports and the background workers; the scheduler's fires are
//! commands too.

pub mod capability;
pub mod deliver;
pub mod reconcile;

use crate::fleet::live::Topic;
use crate::fleet::Fleet;
use crate::settings::Settings;
use crate::store::commands::{self as rows, Action, Command, Issued, NewCommand, Status};
use crate::store::{Db, Handle, StoreError};
use std::sync::Arc;
use uuid::Uuid;
use z4j_protocol::frame::CommandResult;

/// The commands service: cheap to clone.
#[derive(Clone)]
pub struct Commands {
    settings: Arc<Settings>,
    db: Db,
    fleet: Arc<Fleet>,
}

impl Commands {
    pub fn new(settings: Arc<Settings>, db: Db, fleet: Arc<Fleet>) -> Commands {
        Commands {
            settings,
            db,
            fleet,
        }
    }

    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// Persists a command (on the pool or in the caller's transaction, so an
    /// audited issue commits with its audit row).
    pub async fn persist(
        &self,
        db: impl Into<Handle<'_>>,
        c: &NewCommand<'_>,
    ) -> Result<Issued, StoreError> {
        rows::issue(db, c).await
    }

    /// A committed, just-issued command: to a connection of this process
    /// if one may run it, else published for the replica that holds the
    /// agent (the row stays pending either way until a delivery claims it).
    /// True when it was handed to a connection here.
    pub async fn dispatch_new(&self, agent_id: Uuid, c: &Command) -> bool {
        self.fleet.live.publish(c.project_id, Topic::Command);
        if self.push(agent_id, c).await {
            return true;
        }
        let retry = deliver::retry_engine(c);
        self.fleet
            .cluster
            .publish_command(c.id, agent_id, retry.as_deref())
            .await;
        false
    }

    /// `command_ack`: pending → dispatched (the agent's project is told).
    pub async fn on_ack(&self, id: Uuid, agent_id: Uuid, project: Uuid) -> Result<(), StoreError> {
        rows::mark_dispatched(&self.db, id, agent_id).await?;
        self.fleet.live.publish(project, Topic::Command);
        Ok(())
    }

    /// `command_result`: the first terminal result completes the command; a
    /// successful reconciliation probe also corrects its task.
    pub async fn on_result(
        &self,
        id: Uuid,
        agent_id: Uuid,
        project: Uuid,
        r: &CommandResult,
    ) -> Result<(), StoreError> {
        if !rows::finish(&self.db, id, agent_id, r).await? {
            return Ok(());
        }
        self.fleet.live.publish(project, Topic::Command);
        match rows::get(&self.db, id).await? {
            Some(c)
                if c.action == Action::ReconcileTask.as_str() && c.status == Status::Completed =>
            {
                reconcile::apply_answer(&self.db, &c).await
            }
            _ => Ok(()),
        }
    }

    /// A command another replica published for an agent connected to this
    /// process: delivered here when it is still pending (`push` finds no
    /// route if the agent left meanwhile).
    pub async fn on_published(&self, id: Uuid, agent_id: Uuid) {
        match rows::get(&self.db, id).await {
            Ok(Some(c)) if c.agent_id == Some(agent_id) && c.status == Status::Pending => {
                self.push(agent_id, &c).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, command_id = %id, "cannot load a notified command")
            }
        }
    }

    /// Pending commands of the agents connected here, delivered (claims
    /// are conditional, so racing another delivery is harmless).
    pub async fn deliver_pending_here(&self, limit: i64) -> Result<(), StoreError> {
        let agents = self.fleet.registry.agent_ids();
        if agents.is_empty() {
            return Ok(());
        }
        for c in rows::pending_for_agents(&self.db, &agents, limit).await? {
            if let Some(agent) = c.agent_id {
                self.push(agent, &c).await;
            }
        }
        Ok(())
    }

    /// Commands past their `timeout_at` become `timeout`; returns how many.
    pub async fn sweep_timeouts(&self) -> Result<usize, StoreError> {
        let projects = rows::sweep_timeouts(&self.db).await?;
        self.fleet.live.publish_each(&projects, Topic::Command);
        Ok(projects.len())
    }
}
