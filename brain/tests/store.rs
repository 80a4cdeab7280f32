//! Repository tests, run on SQLite and on PostgreSQL (design rule 3).

use std::path::PathBuf;
use z4j_brain::settings::{self, DatabaseTarget, LoadInput};
use z4j_brain::store::{self, sessions, setup, users, Db, SchemaStatus, StoreError, Ts};

struct TestDb {
    db: Db,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(z4j_conformance::postgres::Provider, String)>,
}

impl TestDb {
    async fn cleanup(self) {
        self.db.close().await;
        if let Some((provider, name)) = self.pg {
            provider.drop_database(&name).await;
        }
    }
}

fn settings_for_tests() -> settings::Settings {
    let dir = tempfile::tempdir().unwrap();
    let input = LoadInput {
        env: vec![("Z4J_HOME".into(), dir.path().display().to_string())],
        cwd: None,
        cli: Vec::new(),
    };
    settings::load(&input).unwrap().settings
}

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let target = DatabaseTarget::Sqlite {
        path: dir.path().join("z4j.db"),
        is_default: false,
    };
    let db = store::connect(&target, &settings_for_tests())
        .await
        .unwrap();
    TestDb {
        db,
        _dir: Some(dir),
        pg: None,
    }
}

/// PostgreSQL as the conformance suite finds it; `None` (skip) only outside CI.
async fn postgres() -> Option<TestDb> {
    let provider = match z4j_conformance::postgres::Provider::discover().await {
        Ok(p) => p,
        Err(e) if z4j_conformance::under_ci() => {
            panic!("PostgreSQL is required under CI: {e}")
        }
        Err(e) => {
            // Straight to the process's stderr: the harness captures
            // eprintln! of passing tests, and a skip must stay visible.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "store tests: PostgreSQL half NOT RUN (not judged, not passed): {e}"
            );
            return None;
        }
    };
    let (name, _) = provider.create_database().await.unwrap();
    let url = provider.plain_url(&name);
    let db = store::connect(&DatabaseTarget::Postgres { url }, &settings_for_tests())
        .await
        .unwrap();
    Some(TestDb {
        db,
        _dir: None,
        pg: Some((provider, name)),
    })
}

async fn on_both<F, Fut>(f: F)
where
    F: Fn(Db) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let s = sqlite().await;
    f(s.db.clone()).await;
    s.cleanup().await;
    if let Some(p) = postgres().await {
        f(p.db.clone()).await;
        p.cleanup().await;
    }
}

#[tokio::test]
async fn migrations_apply_and_report_current() {
    on_both(|db| async move {
        assert_eq!(
            store::schema_status(&db).await.unwrap(),
            SchemaStatus::Empty
        );
        store::migrate(&db).await.unwrap();
        assert_eq!(
            store::schema_status(&db).await.unwrap(),
            SchemaStatus::Current
        );
        store::migrate(&db).await.unwrap(); // idempotent
        db.ping().await.unwrap();
        assert!(!db.server_version().await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn first_admin_is_provisioned_once() {
    on_both(|db| async move {
        store::migrate(&db).await.unwrap();
        assert_eq!(users::count(&db).await.unwrap(), 0);
        setup::replace_token(&db, "hash", Ts::now().plus_seconds(60))
            .await
            .unwrap();
        let new = setup::NewAdmin {
            email: "admin@example.com",
            password_hash: "$argon2id$x",
            display_name: Some("Admin"),
        };
        let (user, project) = setup::provision_first_admin(&db, &new).await.unwrap();
        assert!(user.is_admin);
        assert_eq!(users::count(&db).await.unwrap(), 1);
        let found = users::find_by_email(&db, "admin@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, user.id);
        assert_eq!(found.display_name.as_deref(), Some("Admin"));
        let p = store::projects::find_by_slug(&db, "default")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.id, project);
        assert!(
            setup::current_token(&db).await.unwrap().is_none(),
            "tokens deleted"
        );
        let second = setup::NewAdmin {
            email: "other@example.com",
            ..new
        };
        assert!(matches!(
            setup::provision_first_admin(&db, &second).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(users::count(&db).await.unwrap(), 1, "nothing half-written");
    })
    .await;
}

#[tokio::test]
async fn concurrent_setups_create_one_admin() {
    on_both(|db| async move {
        store::migrate(&db).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let email = format!("admin{i}@example.com");
                let new = setup::NewAdmin {
                    email: &email,
                    password_hash: "h",
                    display_name: None,
                };
                setup::provision_first_admin(&db, &new).await.is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 1);
        assert_eq!(users::count(&db).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn sessions_and_setup_attempts() {
    on_both(|db| async move {
        store::migrate(&db).await.unwrap();
        let new = setup::NewAdmin {
            email: "a@example.com",
            password_hash: "h",
            display_name: None,
        };
        let (user, _) = setup::provision_first_admin(&db, &new).await.unwrap();
        let s = sessions::create(
            &db,
            &sessions::NewSession {
                user_id: user.id,
                csrf_token: "csrf",
                lifetime_seconds: 60,
                ip: "127.0.0.1",
                user_agent: Some("ua"),
                mfa_verified: true,
            },
        )
        .await
        .unwrap();
        let found = sessions::find(&db, s.id).await.unwrap().unwrap();
        assert_eq!(found.csrf_token, "csrf");
        assert_eq!(
            found.expires_at, s.expires_at,
            "instants round-trip at µs precision"
        );
        let later = Ts::now().plus_seconds(5);
        sessions::touch(&db, s.id, later).await.unwrap();
        sessions::touch(&db, s.id, Ts::now()).await.unwrap(); // never backwards
        assert_eq!(
            sessions::find(&db, s.id)
                .await
                .unwrap()
                .unwrap()
                .last_seen_at,
            later
        );
        sessions::revoke(&db, s.id, "test").await.unwrap();
        assert!(sessions::find(&db, s.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some());

        let start = Ts::now().plus_seconds(-1);
        for _ in 0..3 {
            setup::record_failed_attempt(&db, "10.0.0.1", "invalid_token")
                .await
                .unwrap();
        }
        setup::record_failed_attempt(&db, "10.0.0.2", "invalid_token")
            .await
            .unwrap();
        let (n, oldest) = setup::failed_attempts_since(&db, "10.0.0.1", start)
            .await
            .unwrap();
        assert_eq!(n, 3);
        assert!(oldest.unwrap() >= start);
        let (n, _) = setup::failed_attempts_since(&db, "10.0.0.1", Ts::now().plus_seconds(10))
            .await
            .unwrap();
        assert_eq!(n, 0);
    })
    .await;
}

#[test]
fn sqlite_text_timestamps_sort_like_instants() {
    // Fixed-width text: lexical order is time order (checked in SQL above;
    // here the encoding itself).
    let a = chrono::DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let b = a + chrono::Duration::microseconds(1);
    let fa = a.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let fb = b.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    assert!(fa < fb);
    let _ = PathBuf::new();
}

/// A migrated database with the first admin and project `default`.
async fn with_project(db: &Db) -> uuid::Uuid {
    store::migrate(db).await.unwrap();
    let s = settings_for_tests();
    z4j_brain::bootstrap::admin::provision(db, &s, "admin@example.com", "Sup3r-secret-pw!")
        .await
        .unwrap();
    store::projects::find_by_slug(db, "default")
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn agent_liveness_is_guarded_and_stale_agents_are_pruned() {
    use store::agents;
    on_both(|db| async move {
        let project = with_project(&db).await;
        let a = agents::mint(&db, project, "w1", "hash-1").await.unwrap();
        assert!(matches!(
            agents::mint(&db, project, "w1", "hash-2").await,
            Err(StoreError::Conflict(_))
        ));
        let hello = agents::HelloInfo {
            protocol_version: "2".into(),
            worker_id: Some("w-1".into()),
            ..Default::default()
        };
        let first = Ts::now();
        assert!(agents::mark_online(&db, a.id, &hello, first).await.unwrap());
        agents::upsert_worker(&db, a.id, project, &hello, first)
            .await
            .unwrap();
        let second = first.plus_seconds(1);
        assert!(agents::mark_online(&db, a.id, &hello, second)
            .await
            .unwrap());
        agents::upsert_worker(&db, a.id, project, &hello, second)
            .await
            .unwrap();
        // The first connection's late clean-up must not undo the reconnect.
        agents::disconnected(&db, a.id, Some("w-1"), first, true)
            .await
            .unwrap();
        let now = agents::find(&db, a.id).await.unwrap().unwrap();
        assert_eq!(now.state, agents::Liveness::Online);
        let workers = agents::list_workers(&db, project, Some(agents::Liveness::Online), 10)
            .await
            .unwrap();
        assert_eq!(workers.len(), 1);
        agents::disconnected(&db, a.id, Some("w-1"), second, true)
            .await
            .unwrap();
        assert_eq!(
            agents::find(&db, a.id).await.unwrap().unwrap().state,
            agents::Liveness::Offline
        );

        // Offline and silent for longer than the prune window: soft-revoked.
        assert_eq!(
            agents::prune_stale(&db, second.plus_seconds(-60))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            agents::prune_stale(&db, second.plus_seconds(60))
                .await
                .unwrap(),
            1
        );
        assert!(agents::list(&db, project).await.unwrap().is_empty());
        assert!(agents::find_by_token_hashes(&db, &["hash-1".into()])
            .await
            .unwrap()
            .is_none());
    })
    .await;
}

#[tokio::test]
async fn ingest_projects_task_states_with_the_freshness_guard() {
    use z4j_brain::ingest::prepare::{prepare, EventRow};
    use z4j_brain::ingest::redact::Redactor;
    use z4j_brain::ingest::writer::IngestWriter;
    on_both(|db| async move {
        let project = with_project(&db).await;
        let agent = store::agents::mint(&db, project, "w1", "hash-1").await.unwrap();
        let (alerts, _alert_rx) = z4j_brain::notify::Alerts::channel();
        let (writer, handle) = IngestWriter::spawn(db.clone(), alerts, z4j_brain::fleet::live::Live::new(false));
        let redactor = Redactor::new(8192, &[]);
        let now = chrono::Utc::now().timestamp_micros();
        let event = |kind: &str, secs_ago: i64, data: &str| -> EventRow {
            let at = chrono::DateTime::from_timestamp_micros(now - secs_ago * 1_000_000)
                .unwrap()
                .to_rfc3339();
            let text = format!(
                r#"{{"id":"{}","kind":"{kind}","engine":"rq","task_id":"t-1","occurred_at":"{at}","data":{data}}}"#,
                uuid::Uuid::new_v4()
            );
            prepare(&z4j_protocol::parse(text.as_bytes()).unwrap(), &project, now, &redactor).unwrap()
        };
        let state = || {
            let db = db.clone();
            async move {
                store::reads::task(&db, project, "rq", "t-1")
                    .await
                    .unwrap()
                    .map(|t| (t.state, t.name, t.result.map(|r| r.0)))
            }
        };
        // Started first (out of order), then an older received: the older
        // event is stored but does not move the task back.
        let n = writer
            .write(project, agent.id, vec![event("task.started", 5, r#"{"worker":"w"}"#)])
            .await
            .unwrap();
        assert_eq!(n, 1);
        writer
            .write(project, agent.id, vec![event("task.received", 10, r#"{"task_name":"jobs.add"}"#)])
            .await
            .unwrap();
        assert_eq!(state().await.unwrap().0, "started");
        // A terminal event wins; a later non-terminal one cannot undo it.
        writer
            .write(project, agent.id, vec![event("task.succeeded", 3, r#"{"result":{"ok":true},"task_name":"jobs.add"}"#)])
            .await
            .unwrap();
        writer
            .write(project, agent.id, vec![event("task.started", 1, "{}")])
            .await
            .unwrap();
        let (st, name, result) = state().await.unwrap();
        assert_eq!((st.as_str(), name.as_str()), ("success", "jobs.add"));
        assert_eq!(result, Some(serde_json::json!({"ok": true})));
        // The same event again is not inserted twice.
        let again = event("task.succeeded", 3, r#"{"result":{"ok":true}}"#);
        assert_eq!(writer.write(project, agent.id, vec![again]).await.unwrap(), 0);
        assert_eq!(store::reads::count_events(&db, project).await.unwrap(), 4);

        // Many batches in flight at once are grouped into one transaction:
        // a task's events in separate batches still apply in order, and an
        // event submitted twice in the same group is inserted once.
        let lifecycle = |task: &str| -> Vec<EventRow> {
            ["task.received", "task.started", "task.succeeded"]
                .iter()
                .map(|kind| {
                    let text = format!(
                        r#"{{"kind":"{kind}","engine":"rq","task_id":"{task}","occurred_at":"{}","data":{{"task_name":"jobs.bulk"}}}}"#,
                        chrono::DateTime::from_timestamp_micros(now).unwrap().to_rfc3339()
                    );
                    prepare(&z4j_protocol::parse(text.as_bytes()).unwrap(), &project, now, &redactor).unwrap()
                })
                .collect()
        };
        let mut commits = Vec::new();
        for i in 0..50 {
            for row in lifecycle(&format!("bulk-{i}")) {
                commits.push(writer.submit(project, agent.id, vec![row.clone()]).await.unwrap());
                commits.push(writer.submit(project, agent.id, vec![row]).await.unwrap());
            }
        }
        let mut accepted = 0;
        for c in commits {
            accepted += c.committed().await.unwrap();
        }
        assert_eq!(accepted, 150, "each of the 150 distinct events inserted once");
        for i in 0..50 {
            let t = store::reads::task(&db, project, "rq", &format!("bulk-{i}")).await.unwrap().unwrap();
            assert_eq!(t.state, "success", "bulk-{i}");
        }
        drop(writer);
        handle.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn worker_lock_is_exclusive_across_sessions_on_postgres() {
    use z4j_brain::store::leader;
    on_both(|db| async move {
        store::migrate(&db).await.unwrap();
        let first = leader::try_lead(&db, "test_worker").await.unwrap();
        assert!(first.is_some());
        let second = leader::try_lead(&db, "test_worker").await.unwrap();
        // SQLite has one process: it always leads.
        assert_eq!(second.is_some(), matches!(db, Db::Sqlite(_)));
        if let Some(s) = second {
            s.release().await;
        }
        first.unwrap().release().await;
        let again = leader::try_lead(&db, "test_worker").await.unwrap();
        assert!(again.is_some(), "released locks can be taken again");
        again.unwrap().release().await;
    })
    .await;
}

#[tokio::test]
async fn retention_deletes_only_expired_status_samples() {
    use store::{agents, observed, retention};
    on_both(|db| async move {
        let project = with_project(&db).await;
        let a = agents::mint(&db, project, "sampled", "hash-s")
            .await
            .unwrap();
        let now = Ts::now();
        let payload = z4j_protocol::json::Object::new();
        // More than one batch of expired rows, and one fresh row.
        for i in 0..(retention::BATCH + 7) {
            observed::record_status(
                &db,
                a.id,
                project,
                None,
                now.plus_seconds(-90_000 - i),
                &payload,
            )
            .await
            .unwrap();
        }
        observed::record_status(&db, a.id, project, None, now, &payload)
            .await
            .unwrap();
        let deleted = retention::delete_status_history_before(&db, now.plus_seconds(-86_400))
            .await
            .unwrap();
        assert_eq!(deleted, (retention::BATCH + 7) as u64);
        let left = observed::recent_status(&db, a.id, 100).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].captured_at, now);
    })
    .await;
}

#[tokio::test]
async fn audit_retention_prunes_in_batches_up_to_the_cap_and_the_chain_still_verifies() {
    use z4j_brain::audit::{self, Entry};
    use z4j_brain::workers::audit_retention;
    on_both(|db| async move {
        store::migrate(&db).await.unwrap();
        let mut s = settings_for_tests();
        s.secret = Some("k".repeat(64));
        s.audit_retention_sweep_batch_size = 100;
        s.audit_retention_sweep_max_per_pass = 150;
        for i in 0..250 {
            audit::record(&db, &s, &Entry::new("test.row", "success").target("n", i))
                .await
                .unwrap();
        }
        let clean = |r: audit::Report| r.broken.is_none();
        assert!(clean(audit::verify(&db, &s).await.unwrap()));
        // Everything is "expired" for a cutoff in the future.
        let cutoff = Ts::now().plus_seconds(3600);
        assert_eq!(
            audit_retention::pass_before(&db, &s, cutoff).await.unwrap(),
            150,
            "the per-pass cap"
        );
        let r = audit::verify(&db, &s).await.unwrap();
        assert!(r.broken.is_none(), "{:?}", r.broken);
        assert_eq!(r.rows, 100);
        assert_eq!(
            audit_retention::pass_before(&db, &s, cutoff).await.unwrap(),
            100,
            "the rest next pass"
        );
        assert!(clean(audit::verify(&db, &s).await.unwrap()), "fully pruned");
        audit::record(&db, &s, &Entry::new("test.after", "success"))
            .await
            .unwrap();
        let r = audit::verify(&db, &s).await.unwrap();
        assert!(r.broken.is_none(), "{:?}", r.broken);
        assert_eq!(r.rows, 1);
    })
    .await;
}

#[tokio::test]
async fn an_audited_action_and_its_row_commit_together_or_not_at_all() {
    use z4j_brain::audit::{self, AuditError, Entry};
    on_both(|db| async move {
        store::migrate(&db).await.unwrap();
        let mut s = settings_for_tests();
        s.secret = Some("k".repeat(64));
        let new = |email: &'static str| users::NewUser {
            email,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            display_name: None,
            first_name: None,
            last_name: None,
            is_admin: false,
            timezone: "UTC",
        };
        let mut tx = audit::begin(&db).await.unwrap();
        users::create(&mut tx, &new("kept@example.com"))
            .await
            .unwrap();
        audit::commit(tx, &s, &Entry::new("user.create", "success"))
            .await
            .unwrap();
        assert!(users::find_by_email(&db, "kept@example.com")
            .await
            .unwrap()
            .is_some());

        // Dropped before the row: the action is rolled back.
        let mut tx = audit::begin(&db).await.unwrap();
        users::create(&mut tx, &new("dropped@example.com"))
            .await
            .unwrap();
        drop(tx);
        assert!(users::find_by_email(&db, "dropped@example.com")
            .await
            .unwrap()
            .is_none());

        // The row cannot be appended: the action does not land either.
        let bump = || async {
            z4j_brain::on_db!(&db, p => sqlx::query("UPDATE audit_chain_state SET row_count = row_count + 1")
                .execute(p)
                .await
                .map(|_| ()))?;
            Ok::<_, z4j_brain::store::StoreError>(())
        };
        bump().await.unwrap();
        let mut tx = audit::begin(&db).await.unwrap();
        users::create(&mut tx, &new("refused@example.com"))
            .await
            .unwrap();
        let err = audit::commit(tx, &s, &Entry::new("user.create", "success")).await;
        assert!(matches!(err, Err(AuditError::StateTampered)), "{err:?}");
        assert!(users::find_by_email(&db, "refused@example.com")
            .await
            .unwrap()
            .is_none());
    })
    .await;
}

/// One statement on the pool (SQLite: the write connection).
async fn exec(db: &Db, sql: &str) -> Result<(), StoreError> {
    z4j_brain::on_db!(db, p => sqlx::query(sql).execute(p).await.map(|_| ()))?;
    Ok(())
}

/// SQLite: a one-statement write queued behind a writer that commits back
/// to back (the ingest writer under load) goes in after the transaction in
/// progress, not after however many of them win SQLite's busy-handler race
/// (before the write queue: dozens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_queue_first_come_first_served() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let t = sqlite().await;
    exec(&t.db, "CREATE TABLE hog (n INTEGER)").await.unwrap();
    exec(&t.db, "CREATE TABLE probe (n INTEGER)").await.unwrap();
    let commits = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let hog = tokio::spawn({
        let (db, commits, stop) = (t.db.clone(), commits.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let mut tx = db.begin().await?;
                z4j_brain::on_handle!(store::Handle::Tx(&mut tx), c => sqlx::query("INSERT INTO hog VALUES (1)")
                    .execute(c)
                    .await
                    .map(|_| ()))?;
                // A group commit's worth of work, holding the write lock.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                tx.commit().await?;
                commits.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, StoreError>(())
        }
    });
    while commits.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let mut overtaken = Vec::new();
    for _ in 0..20 {
        let before = commits.load(Ordering::SeqCst);
        exec(&t.db, "INSERT INTO probe VALUES (1)").await.unwrap();
        overtaken.push(commits.load(Ordering::SeqCst) - before);
    }
    stop.store(true, Ordering::Relaxed);
    hog.await.unwrap().unwrap();
    // The transaction in progress commits first; one more may commit
    // before this task reads the counter again.
    assert!(
        overtaken.iter().all(|&n| n <= 2),
        "hog commits while one write waited: {overtaken:?}"
    );
    t.cleanup().await;
}

/// SQLite: the task holding the write connection in a transaction is
/// refused the writer at once (it would wait for itself); other tasks
/// queue behind the transaction; reads go on beside it on the query-only
/// pool, which refuses writes.
#[tokio::test]
async fn sqlite_writer_queue_refuses_its_holder_and_reads_go_beside_it() {
    let t = sqlite().await;
    let db = t.db.clone();
    exec(&db, "CREATE TABLE t (n INTEGER)").await.unwrap();
    let tx = db.begin().await.unwrap();
    let err = exec(&db, "INSERT INTO t VALUES (1)").await;
    assert!(matches!(err, Err(StoreError::WriterHeld)), "{err:?}");
    let other = tokio::spawn({
        let db = db.clone();
        async move { exec(&db, "INSERT INTO t VALUES (2)").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !other.is_finished(),
        "a write went past an open transaction"
    );
    let count = || async {
        let n: i64 = z4j_brain::on_read!(&db, p => sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(p)
            .await)?;
        Ok::<_, StoreError>(n)
    };
    assert_eq!(count().await.unwrap(), 0, "a read waited for the writer");
    tx.commit().await.unwrap();
    other.await.unwrap().unwrap();
    exec(&db, "INSERT INTO t VALUES (3)").await.unwrap();
    assert_eq!(count().await.unwrap(), 2);
    let refused: Result<(), StoreError> = async {
        z4j_brain::on_read!(&db, p => sqlx::query("INSERT INTO t VALUES (4)").execute(p).await.map(|_| ()))?;
        Ok(())
    }
    .await;
    let msg = format!("{refused:?}");
    assert!(msg.contains("readonly"), "{msg}");
    t.cleanup().await;
}

/// SQLite: `VACUUM INTO` (z4j backup) succeeds while another task writes.
/// On the query-only readers it fails here at the first copy ("attempt to
/// write a readonly database"; seen in CI as cli.backup-restore).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_copies_while_writes_go_on() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let t = sqlite().await;
    exec(&t.db, "CREATE TABLE w (n INTEGER)").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (db, stop) = (t.db.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                exec(&db, "INSERT INTO w VALUES (1)").await?;
            }
            Ok::<_, StoreError>(())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        let dest = dir.path().join(format!("copy-{i}.db"));
        store::backup::vacuum_into(&t.db, &dest)
            .await
            .unwrap_or_else(|e| panic!("copy {i}: {e}"));
        assert!(dest.exists());
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap().unwrap();
    t.cleanup().await;
}

/// A task's events written in one group (its upserts folded into one row
/// when the group starts it with `received`) leave the same row as the same
/// events written one group each (one upsert per event), whatever their
/// order, instants and fields; also when the row already exists when the
/// group comes (the fold is then refused and the events take the upserts).
#[tokio::test]
async fn coalesced_task_upserts_equal_one_by_one() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use serde_json::value::RawValue;
    use sqlx::Row as _;
    use store::ingest::{write_group, EventRow, Frame, TaskPatch, TaskState};
    on_both(|db| async move {
        let project = with_project(&db).await;
        let agent = store::agents::mint(&db, project, "w1", "hash-1").await.unwrap();
        let base = Ts::now();
        let mut rng = StdRng::seed_from_u64(0x2431);
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        let pick = |rng: &mut StdRng, options: &[Option<&str>]| -> Option<String> {
            options[rng.gen_range(0..options.len())].map(str::to_owned)
        };
        let write = |rows: Vec<EventRow>| {
            let db = db.clone();
            async move {
                if rows.is_empty() {
                    return;
                }
                let frame = Frame { project_id: project, agent_id: agent.id, rows: &rows };
                write_group(&db, &[frame]).await.unwrap();
            }
        };
        let row_of = |task: String| {
            let db = db.clone();
            async move {
                let cols = "name, queue, state, priority, args, kwargs, result, exception, traceback, \
                            retry_count, received_at, started_at, finished_at, runtime_ms, worker_name, \
                            parent_task_id, root_task_id, fingerprint, last_failed_at, updated_at";
                let sql = format!(
                    "SELECT {} FROM tasks WHERE task_id = $1",
                    cols.split(", ").map(|c| format!("CAST({c} AS TEXT)")).collect::<Vec<_>>().join(", ")
                );
                let read = async {
                    Ok::<_, StoreError>(z4j_brain::on_db!(&db, p => sqlx::query(&sql).bind(&task).fetch_one(p).await.map(|r| {
                        (0..20).map(|i| r.try_get::<Option<String>, _>(i).unwrap()).collect::<Vec<_>>()
                    }))?)
                };
                read.await.unwrap()
            }
        };
        let mut folded_inserts = 0;
        for case in 0..150 {
            let n = rng.gen_range(2..=6);
            let mut lifecycle = Vec::new();
            for i in 0..n {
                let state = if i == 0 && rng.gen_bool(0.6) {
                    TaskState::Received
                } else {
                    TaskState::ALL[rng.gen_range(0..TaskState::ALL.len())]
                };
                let patch = TaskPatch {
                    state,
                    name: pick(&mut rng, &[Some("unknown"), Some("jobs.a"), Some("jobs.b")]).unwrap(),
                    queue: pick(&mut rng, &[None, Some("q1"), Some("q2")]),
                    priority: pick(&mut rng, &[Some("normal"), Some("high")]).unwrap(),
                    args: pick(&mut rng, &[None, Some("[1]"), Some("[2]")]).map(|s| raw(&s)),
                    kwargs: pick(&mut rng, &[None, Some("{\"k\":1}")]).map(|s| raw(&s)),
                    result: pick(&mut rng, &[None, Some("{\"ok\":true}"), Some("3")]).map(|s| raw(&s)),
                    exception: pick(&mut rng, &[None, Some("ValueError: x")]),
                    traceback: pick(&mut rng, &[None, Some("tb")]),
                    retry_count: [None, Some(0), Some(2), Some(5)][rng.gen_range(0..4)],
                    runtime_ms: [None, Some(7), Some(90)][rng.gen_range(0..3)],
                    worker_name: pick(&mut rng, &[None, Some("w-1"), Some("w-2")]),
                    parent_task_id: pick(&mut rng, &[None, Some("p-1")]),
                    root_task_id: pick(&mut rng, &[None, Some("r-1"), Some("r-2")]),
                    fingerprint: pick(&mut rng, &[None, Some("f1"), Some("f2")]),
                };
                // Few instants, so ties and out-of-order events are common.
                lifecycle.push((base.plus_seconds(rng.gen_range(0..4)), patch));
            }
            let rows_for = |task: &str| -> Vec<EventRow> {
                lifecycle
                    .iter()
                    .map(|(at, patch)| EventRow {
                        id: uuid::Uuid::new_v4(),
                        engine: "rq".into(),
                        task_id: task.to_owned(),
                        kind: "task.test",
                        occurred_at: *at,
                        payload: raw("{}"),
                        task: Some(patch.clone()),
                        worker: None,
                        queue: None,
                    })
                    .collect()
            };
            // Half the cases have the row exist before the group.
            let before = if rng.gen_bool(0.5) { 0 } else { rng.gen_range(1..n) };
            let one_by_one = format!("one-{case}");
            for row in rows_for(&one_by_one) {
                write(vec![row]).await;
            }
            let grouped = format!("group-{case}");
            let mut rows = rows_for(&grouped);
            let rest = rows.split_off(before);
            for row in rows {
                write(vec![row]).await;
            }
            if before == 0 && lifecycle[0].1.state == TaskState::Received {
                folded_inserts += 1;
            }
            write(rest).await;
            assert_eq!(
                row_of(grouped).await,
                row_of(one_by_one).await,
                "case {case}: {before} events before the group, then {:?}",
                lifecycle.iter().map(|(at, p)| (at.to_rfc3339(), p.state)).collect::<Vec<_>>()
            );
        }
        assert!(folded_inserts > 30, "the folding path ran {folded_inserts} times");
    })
    .await;
}

/// SQLite (decision S7): the writer has its own page cache; commits do not
/// checkpoint at SQLite's default of 1 000 WAL pages, their net sits at
/// `WRITER_AUTOCHECKPOINT_PAGES`, and the passive checkpointer copies the
/// WAL into the database file beside the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_run_beside_the_writer_not_in_its_commits() {
    let t = sqlite().await;
    let Db::Sqlite(pools) = &t.db else {
        unreachable!("sqlite() opens SQLite")
    };
    let net: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(pools.writer().unwrap())
        .await
        .unwrap();
    assert_eq!(net, i64::from(store::WRITER_AUTOCHECKPOINT_PAGES));
    // The writer's page cache is its own size (negative: KiB).
    let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
        .fetch_one(pools.writer().unwrap())
        .await
        .unwrap();
    assert_eq!(cache, -i64::from(store::WRITER_CACHE_KIB));
    let dir = t._dir.as_ref().unwrap().path().to_path_buf();
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    exec(&t.db, "CREATE TABLE big (b BLOB)").await.unwrap();
    let before = size("z4j.db");
    let written = 2_400 * 4096;
    // 2 400 pages of rows in 24 commits: SQLite's default would have
    // checkpointed twice inside them.
    for _ in 0..24 {
        exec(
            &t.db,
            "INSERT INTO big SELECT randomblob(4000) FROM \
             (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             SELECT i FROM n)",
        )
        .await
        .unwrap();
    }
    assert!(size("z4j.db-wal") > written, "the rows are in the WAL");
    assert_eq!(size("z4j.db"), before, "a commit checkpointed");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let checkpointer = tokio::spawn(z4j_brain::workers::wal_checkpoint::passive(
        t.db.clone(),
        stopped,
    ));
    let started = std::time::Instant::now();
    while size("z4j.db") < written {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the checkpointer copied {} of {written} bytes within 5 s",
            size("z4j.db"),
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    checkpointer.await.unwrap();
    t.cleanup().await;
}
