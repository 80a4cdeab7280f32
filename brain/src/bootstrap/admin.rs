//! `Z4J_BOOTSTRAP_ADMIN_EMAIL` / `_PASSWORD`: provision the first admin at
//! start-up without a setup URL.

use crate::auth::{email, password, policy};
use crate::settings::Settings;
use crate::store::{setup, Db, StoreError};

#[derive(Debug)]
pub enum Outcome {
    Provisioned(String),
    /// Invalid input: the reason is logged and the setup URL is used instead.
    Refused(String),
}

pub async fn provision(
    db: &Db,
    s: &Settings,
    raw_email: &str,
    plain_password: &str,
) -> Result<Outcome, StoreError> {
    let Some(canonical) = email::canonical(raw_email) else {
        return Ok(Outcome::Refused(
            "Z4J_BOOTSTRAP_ADMIN_EMAIL is not a valid email address".into(),
        ));
    };
    if let Err(v) = policy::check(plain_password, s.password_min_length as usize) {
        return Ok(Outcome::Refused(format!(
            "Z4J_BOOTSTRAP_ADMIN_PASSWORD fails the password policy: {}",
            v.message
        )));
    }
    let hash = password::hash(plain_password.to_owned(), password::Cost::from_settings(s))
        .await
        .map_err(|e| StoreError::Conflict(e.to_string()))?;
    match setup::provision_first_admin(
        db,
        &setup::NewAdmin {
            email: &canonical,
            password_hash: &hash,
            display_name: s.bootstrap_admin_display_name.as_deref(),
        },
    )
    .await
    {
        Ok(_) => Ok(Outcome::Provisioned(canonical)),
        Err(StoreError::Conflict(m)) => Ok(Outcome::Refused(m)),
        Err(e) => Err(e),
    }
}
