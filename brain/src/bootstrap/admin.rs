//! Creating the first admin: shared by the setup URL and by
//! `Z4J_BOOTSTRAP_ADMIN_EMAIL` / `_PASSWORD` at start-up.

use crate::auth::{email, password, policy};
use crate::settings::Settings;
use crate::store::users::User;
use crate::store::{setup, Db, StoreError};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum CreateAdminError {
    #[error("{}", .0.message)]
    Policy(policy::PolicyViolation),
    #[error("brain has already been initialised")]
    AlreadyInitialised,
    #[error("{0}")]
    Hash(#[from] password::PasswordError),
    #[error("{0}")]
    Store(StoreError),
}

/// Checks the password policy, hashes with the configured cost, and creates
/// the admin, project `default` and the membership in one transaction.
pub async fn create_first_admin(
    db: &Db,
    s: &Settings,
    canonical_email: &str,
    plain_password: &str,
    display_name: Option<&str>,
) -> Result<(User, Uuid), CreateAdminError> {
    policy::check(plain_password, s.password_min_length as usize)
        .map_err(CreateAdminError::Policy)?;
    let hash = password::hash(plain_password.to_owned(), password::Cost::from_settings(s)).await?;
    let new = setup::NewAdmin {
        email: canonical_email,
        password_hash: &hash,
        display_name,
    };
    setup::provision_first_admin(db, &new)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => CreateAdminError::AlreadyInitialised,
            other => CreateAdminError::Store(other),
        })
}

#[derive(Debug)]
pub enum Outcome {
    Provisioned(String),
    /// Invalid input: the reason is logged and the setup URL is used instead.
    Refused(String),
}

/// The start-up path: invalid input is refused (the caller falls back to
/// the setup URL); only storage or hashing failures are errors.
pub async fn provision(
    db: &Db,
    s: &Settings,
    raw_email: &str,
    plain_password: &str,
) -> Result<Outcome, CreateAdminError> {
    let Some(canonical) = email::canonical(raw_email) else {
        return Ok(Outcome::Refused(
            "Z4J_BOOTSTRAP_ADMIN_EMAIL is not a valid email address".into(),
        ));
    };
    let display_name = s.bootstrap_admin_display_name.as_deref();
    match create_first_admin(db, s, &canonical, plain_password, display_name).await {
        Ok(_) => Ok(Outcome::Provisioned(canonical)),
        Err(CreateAdminError::Policy(v)) => Ok(Outcome::Refused(format!(
            "Z4J_BOOTSTRAP_ADMIN_PASSWORD fails the password policy: {}",
            v.message
        ))),
        Err(CreateAdminError::AlreadyInitialised) => Ok(Outcome::Refused(
            "brain has already been initialised".into(),
        )),
        Err(e) => Err(e),
    }
}
