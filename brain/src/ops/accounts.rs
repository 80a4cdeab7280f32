//! Account recovery from the shell, for the operator who can no longer get
//! in through the API: `createsuperuser`, `changepassword`, `reset-mfa`,
//! `reset-setup`. Each acts on the database directly (a running brain sees
//! the change at once) and is audited as done from the command line, by
//! the operating-system user who ran it.

use super::{cli_meta, fail as store, open_db, prepared, runtime};
use crate::audit::{self, Entry};
use crate::auth::{email, password, policy};
use crate::server::StartError;
use crate::settings::Settings;
use crate::store::users::{self, NewUser, User};
use crate::store::{mfa, setup, Db};
use serde_json::json;
use std::io::BufRead;

/// Where a new password comes from.
pub enum Password {
    /// One line on standard input (kept out of the process list and the
    /// shell history).
    Stdin,
    Given(String),
}

fn read_password(p: Password) -> Result<String, StartError> {
    match p {
        Password::Given(pw) => Ok(pw),
        Password::Stdin => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                StartError::new(1, format!("cannot read the password from stdin: {e}"))
            })?;
            let pw = line.trim_end_matches(['\r', '\n']).to_owned();
            if pw.is_empty() {
                return Err(StartError::new(2, "no password on stdin"));
            }
            Ok(pw)
        }
    }
}

/// The policy, then the argon2id hash at the configured cost.
async fn accepted_hash(s: &Settings, pw: String) -> Result<String, StartError> {
    policy::check(&pw, s.password_min_length as usize)
        .map_err(|v| StartError::new(2, format!("password refused: {}", v.message)))?;
    password::hash(pw, password::Cost::from_settings(s))
        .await
        .map_err(|e| StartError::new(1, e.to_string()))
}

fn canonical(raw: &str) -> Result<String, StartError> {
    email::canonical(raw)
        .ok_or_else(|| StartError::new(2, format!("{raw:?} is not a valid email address")))
}

async fn user_by_email(db: &Db, raw: &str) -> Result<User, StartError> {
    let canonical = canonical(raw)?;
    users::find_by_email(db, &canonical)
        .await
        .map_err(store)?
        .ok_or_else(|| StartError::new(1, format!("no user with email {canonical}")))
}

fn cli_entry(action: &str, user: Option<&User>) -> Entry {
    let e = Entry::new(action, "success")
        .meta(cli_meta(json!({"email": user.map(|u| u.email.clone())})));
    match user {
        Some(u) => e.target("user", u.id),
        None => e,
    }
}

/// Runs `f` on the prepared database (secrets minted, schema migrated).
fn on_prepared<F>(f: F) -> Result<(), StartError>
where
    F: for<'a> FnOnce(
        &'a Db,
        &'a Settings,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, StartError>> + 'a>,
    >,
{
    let loaded = prepared()?;
    runtime()?.block_on(async {
        let db = open_db(&loaded, true).await?;
        let out = f(&db, &loaded.settings).await;
        db.close().await;
        println!("z4j: {}", out?);
        Ok(())
    })
}

/// `z4j createsuperuser`: a global admin. On an empty brain this is the
/// first admin (project `default` and its membership, setup closed), as
/// the setup URL would make it.
pub fn createsuperuser(
    raw_email: &str,
    display_name: Option<String>,
    pw: Password,
) -> Result<(), StartError> {
    let canonical = canonical(raw_email)?;
    let pw = read_password(pw)?;
    on_prepared(move |db, s| {
        Box::pin(async move {
            if users::find_by_email(db, &canonical)
                .await
                .map_err(store)?
                .is_some()
            {
                return Err(StartError::new(
                    1,
                    format!(
                        "a user with email {canonical} already exists; use `z4j changepassword`"
                    ),
                ));
            }
            let hash = accepted_hash(s, pw).await?;
            let first = users::count(db).await.map_err(store)? == 0;
            let user = if first {
                let new = setup::NewAdmin {
                    email: &canonical,
                    password_hash: &hash,
                    display_name: display_name.as_deref(),
                };
                setup::provision_first_admin(db, &new)
                    .await
                    .map_err(store)?
                    .0
            } else {
                let mut tx = audit::begin(db).await.map_err(store)?;
                let u = users::create(
                    &mut tx,
                    &NewUser {
                        email: &canonical,
                        password_hash: &hash,
                        display_name: display_name.as_deref(),
                        first_name: None,
                        last_name: None,
                        is_admin: true,
                        timezone: "UTC",
                    },
                )
                .await
                .map_err(store)?;
                audit::commit(tx, s, &cli_entry("user.created", Some(&u)))
                    .await
                    .map_err(store)?;
                u
            };
            if first {
                audit::record(db, s, &cli_entry("user.created", Some(&user)))
                    .await
                    .map_err(store)?;
            }
            Ok(format!(
                "created admin {}{}",
                user.email,
                if first {
                    " (the first user: project `default` created, setup closed)"
                } else {
                    ""
                }
            ))
        })
    })
}

/// `z4j changepassword`: a new password; every session of the user ends
/// and a failed-login lock is lifted.
pub fn changepassword(raw_email: &str, pw: Password) -> Result<(), StartError> {
    let raw_email = raw_email.to_owned();
    let pw = read_password(pw)?;
    on_prepared(move |db, s| {
        Box::pin(async move {
            let user = user_by_email(db, &raw_email).await?;
            let hash = accepted_hash(s, pw).await?;
            let mut tx = audit::begin(db).await.map_err(store)?;
            users::set_password(&mut tx, user.id, &hash)
                .await
                .map_err(store)?;
            users::unlock(&mut tx, user.id).await.map_err(store)?;
            audit::commit(
                tx,
                s,
                &cli_entry("user.password.changed_by_cli", Some(&user)),
            )
            .await
            .map_err(store)?;
            Ok(format!(
                "password changed for {}; their sessions have ended",
                user.email
            ))
        })
    })
}

/// `z4j reset-mfa`: the second factor, recovery codes and trusted devices
/// of one user cleared (a lost phone); they sign in with the password and
/// enrol again.
pub fn reset_mfa(raw_email: &str, confirm: bool) -> Result<(), StartError> {
    if !confirm {
        return Err(StartError::new(
            2,
            "refusing to clear a user's second factor without --confirm",
        ));
    }
    let raw_email = raw_email.to_owned();
    on_prepared(move |db, s| {
        Box::pin(async move {
            let user = user_by_email(db, &raw_email).await?;
            let mut tx = audit::begin(db).await.map_err(store)?;
            mfa::disable(&mut tx, user.id).await.map_err(store)?;
            audit::commit(tx, s, &cli_entry("user.mfa_reset_by_admin", Some(&user)))
                .await
                .map_err(store)?;
            Ok(format!(
                "second factor, recovery codes and trusted devices cleared for {}",
                user.email
            ))
        })
    })
}

/// `z4j reset-setup`: forgets the pending setup token so the next
/// `z4j serve` mints a new setup URL. Refused once any user exists.
pub fn reset_setup(force: bool) -> Result<(), StartError> {
    if !force {
        return Err(StartError::new(
            2,
            "refusing to discard the pending setup URL without --force",
        ));
    }
    on_prepared(|db, s| {
        Box::pin(async move {
            let n = users::count(db).await.map_err(store)?;
            if n > 0 {
                return Err(StartError::new(
                    1,
                    format!(
                        "setup is complete ({n} user(s) exist); use `z4j createsuperuser` or \
                         `z4j changepassword` instead"
                    ),
                ));
            }
            setup::delete_tokens(db).await.map_err(store)?;
            audit::record(db, s, &cli_entry("setup.tokens_reset", None))
                .await
                .map_err(store)?;
            Ok("pending setup token discarded; the next `z4j serve` prints a new setup URL".into())
        })
    })
}
