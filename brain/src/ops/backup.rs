//! `z4j backup` and `z4j restore`. SQLite: an online copy (`VACUUM INTO`,
//! consistent while the brain serves) and a restore that checks the copy
//! (integrity, schema, audit chain) before it replaces the database, keeps
//! the replaced file, and refuses while any brain serves it. PostgreSQL:
//! `pg_dump` / `pg_restore` (custom format), refused while other sessions
//! are connected. Both are audited.

use super::{cli_meta, fail as err, load, open_db, prepared, runtime};
use crate::audit::{self, Entry};
use crate::server::StartError;
use crate::settings::{DatabaseTarget, Loaded, Settings};
use crate::store::{self, backup as db_backup, Db};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn sha256_of(path: &Path) -> Result<(u64, String), StartError> {
    let mut f = std::fs::File::open(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).map_err(|e| err(format!("{}: {e}", path.display())))?;
    Ok((n, hex::encode(h.finalize())))
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn postgres_tool(tool: &str, args: &[&str]) -> Result<(), StartError> {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StartError::new(
                1,
                format!("{tool} is not on PATH; install the PostgreSQL client tools matching the server"),
            ),
            _ => err(format!("cannot run {tool}: {e}")),
        })?;
    if !out.status.success() {
        return Err(err(format!(
            "{tool} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// `z4j backup --output PATH`.
pub fn backup(output: &Path) -> Result<(), StartError> {
    if output.exists() {
        return Err(StartError::new(
            2,
            format!(
                "{} exists; a backup never overwrites a file",
                output.display()
            ),
        ));
    }
    let loaded = load(Vec::new())?;
    if let DatabaseTarget::Sqlite { path, .. } = &loaded.database {
        if !path.exists() {
            return Err(err(format!("no database at {}", path.display())));
        }
    }
    runtime()?.block_on(async {
        let db = open_db(&loaded, false).await?;
        let out = write_backup(&db, &loaded, output).await;
        db.close().await;
        let (bytes, digest) = out?;
        println!(
            "z4j: backup written to {} ({bytes} bytes, sha256 {digest})",
            output.display()
        );
        Ok(())
    })
}

async fn write_backup(
    db: &Db,
    loaded: &Loaded,
    output: &Path,
) -> Result<(u64, String), StartError> {
    match &loaded.database {
        DatabaseTarget::Sqlite { .. } => {
            let partial = with_suffix(output, ".partial");
            let _ = std::fs::remove_file(&partial);
            db_backup::vacuum_into(db, &partial).await.map_err(err)?;
            store::restrict_file_mode(&partial);
            std::fs::rename(&partial, output)
                .map_err(|e| err(format!("{}: {e}", output.display())))?;
        }
        DatabaseTarget::Postgres { url } => {
            let file = output.display().to_string();
            postgres_tool(
                "pg_dump",
                &[
                    "--format=custom",
                    "--no-owner",
                    "--file",
                    &file,
                    "--dbname",
                    url,
                ],
            )?;
            store::restrict_file_mode(output);
        }
    }
    let (bytes, digest) = sha256_of(output)?;
    let entry = Entry::new("system.backup", "success").meta(cli_meta(json!({
        "output": output.display().to_string(), "bytes": bytes, "sha256": digest,
    })));
    audit::record(db, &loaded.settings, &entry)
        .await
        .map_err(err)?;
    Ok((bytes, digest))
}

/// The restored database is checked and stamped: sound, migrated, its
/// audit chain intact under this brain's secrets, and a `system.restore`
/// row appended.
async fn check_and_stamp(
    db: &Db,
    s: &Settings,
    source: &Path,
    digest: &str,
) -> Result<u64, StartError> {
    let problems = db_backup::integrity_problems(db).await.map_err(err)?;
    if !problems.is_empty() {
        return Err(err(format!(
            "{} is damaged: {}",
            source.display(),
            problems.join("; ")
        )));
    }
    store::migrate(db).await.map_err(|e| {
        err(format!(
            "the backup's schema cannot be brought up to date: {e}"
        ))
    })?;
    let report = audit::verify(db, s).await.map_err(err)?;
    if let Some((row, why)) = report.broken {
        let at = row.map_or_else(|| "the chain state".to_owned(), |id| format!("row {id}"));
        return Err(err(format!(
            "the backup's audit chain does not verify under this brain's secrets (broken at {at}: {why}); \
             restore it into the home whose secret.env made it"
        )));
    }
    let entry = Entry::new("system.restore", "success").meta(cli_meta(json!({
        "source": source.display().to_string(), "sha256": digest,
    })));
    audit::record(db, s, &entry).await.map_err(err)?;
    Ok(report.rows)
}

/// `z4j restore PATH --force`.
pub fn restore(source: &Path, force: bool) -> Result<(), StartError> {
    if !force {
        return Err(StartError::new(
            2,
            "refusing to replace the database without --force (stop every brain first)",
        ));
    }
    if !source.is_file() {
        return Err(StartError::new(
            2,
            format!("no backup file at {}", source.display()),
        ));
    }
    let loaded = prepared()?;
    let (_, digest) = sha256_of(source)?;
    match &loaded.database {
        DatabaseTarget::Sqlite { path, .. } => restore_sqlite(&loaded, path, source, &digest),
        DatabaseTarget::Postgres { url } => restore_postgres(&loaded, url, source, &digest),
    }
}

fn restore_sqlite(
    loaded: &Loaded,
    target: &Path,
    source: &Path,
    digest: &str,
) -> Result<(), StartError> {
    // Held until the new file is in place.
    let _lock = match db_backup::lock_exclusive(target) {
        Ok(Some(l)) => Some(l),
        Ok(None) => {
            return Err(err(format!(
                "a brain is serving {}; stop every brain using it, then restore",
                target.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(err(format!("{}: {e}", target.display()))),
    };
    let staged = with_suffix(target, &format!(".restore-{}", std::process::id()));
    std::fs::copy(source, &staged)
        .map_err(|e| err(format!("cannot stage {}: {e}", source.display())))?;
    store::restrict_file_mode(&staged);
    let staged_target = DatabaseTarget::Sqlite {
        path: staged.clone(),
        is_default: false,
    };
    let checked = runtime()?.block_on(async {
        let db = store::connect(&staged_target, &loaded.settings)
            .await
            .map_err(err)?;
        let out = check_and_stamp(&db, &loaded.settings, source, digest).await;
        if out.is_ok() {
            store::wal_checkpoint(&db, store::Checkpoint::Truncate)
                .await
                .map_err(err)?;
        }
        db.close().await;
        out
    });
    let rows = match checked {
        Ok(r) => r,
        Err(e) => {
            remove_with_sidecars(&staged);
            return Err(e);
        }
    };
    let kept = if target.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let kept = with_suffix(target, &format!(".pre-restore-{stamp}"));
        for side in ["", "-wal", "-shm"] {
            let from = with_suffix(target, side);
            if from.exists() {
                std::fs::rename(&from, with_suffix(&kept, side))
                    .map_err(|e| err(format!("cannot set {} aside: {e}", from.display())))?;
            }
        }
        Some(kept)
    } else {
        None
    };
    if std::fs::metadata(with_suffix(&staged, "-wal")).is_ok_and(|m| m.len() > 0) {
        return Err(err(format!(
            "the staged copy {} still has a write-ahead log; nothing was replaced",
            staged.display()
        )));
    }
    remove_sidecars(&staged);
    std::fs::rename(&staged, target)
        .map_err(|e| err(format!("cannot put the restored file in place: {e}")))?;
    println!(
        "z4j: restored {} from {} (audit chain of {rows} rows verified){}",
        target.display(),
        source.display(),
        kept.map(|k| format!("; the replaced database is kept at {}", k.display()))
            .unwrap_or_default()
    );
    Ok(())
}

fn remove_sidecars(path: &Path) {
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(path, side));
    }
}

fn remove_with_sidecars(path: &Path) {
    let _ = std::fs::remove_file(path);
    remove_sidecars(path);
}

/// Staged in a new database (`pg_restore`, then checked and stamped), then
/// swapped in by renaming; the replaced database is kept under another
/// name. Needs the right to create databases.
fn restore_postgres(
    loaded: &Loaded,
    url: &str,
    source: &Path,
    digest: &str,
) -> Result<(), StartError> {
    let live =
        db_backup::pg::database_of(url).ok_or_else(|| err("Z4J_DATABASE_URL names no database"))?;
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    // Identifiers stop at 63 bytes.
    let base: String = live.chars().take(40).collect();
    let staged = format!("{base}_restore_{}", std::process::id());
    let aside = format!("{base}_pre_restore_{stamp}");
    let staged_url =
        db_backup::pg::url_for(url, &staged).ok_or_else(|| err("unparsable Z4J_DATABASE_URL"))?;
    let rt = runtime()?;
    let others = rt
        .block_on(db_backup::pg::sessions(url, &live))
        .map_err(err)?;
    if others > 0 {
        return Err(err(format!(
            "{others} session(s) are connected to database {live}; stop every brain using it, then restore"
        )));
    }
    rt.block_on(db_backup::pg::create(url, &staged))
        .map_err(|e| {
            err(format!(
                "cannot create the staging database {staged} (the role needs CREATEDB): {e}"
            ))
        })?;
    let file = source.display().to_string();
    let staged_check = postgres_tool(
        "pg_restore",
        &[
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            "--dbname",
            &staged_url,
            &file,
        ],
    )
    .and_then(|()| {
        rt.block_on(async {
            let target = DatabaseTarget::Postgres {
                url: staged_url.clone(),
            };
            let db = store::connect(&target, &loaded.settings)
                .await
                .map_err(err)?;
            let out = check_and_stamp(&db, &loaded.settings, source, digest).await;
            db.close().await;
            out
        })
    });
    let rows = match staged_check {
        Ok(r) => r,
        Err(e) => {
            let _ = rt.block_on(db_backup::pg::drop(url, &staged));
            return Err(e);
        }
    };
    if let Err(e) = rt.block_on(db_backup::pg::swap(url, &live, &staged, &aside)) {
        let _ = rt.block_on(db_backup::pg::drop(url, &staged));
        return Err(err(format!("nothing was replaced: {e}")));
    }
    println!(
        "z4j: restored database {live} from {} (audit chain of {rows} rows verified); \
         the replaced database is kept as {aside}",
        source.display()
    );
    Ok(())
}
