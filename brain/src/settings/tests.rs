use super::*;
use std::os::unix::fs::PermissionsExt;

fn input(home: &Path, env: &[(&str, &str)]) -> LoadInput {
    let mut e: Vec<(String, String)> = vec![("Z4J_HOME".into(), home.display().to_string())];
    e.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    LoadInput {
        env: e,
        cwd: None,
        cli: Vec::new(),
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn defaults_are_the_documented_ones() {
    let dir = tempfile::tempdir().unwrap();
    let l = load(&input(dir.path(), &[])).unwrap();
    assert_eq!(l.settings.bind_port, 7700);
    assert_eq!(l.settings.bind_host, "0.0.0.0");
    assert_eq!(l.settings.password_min_length, 8);
    assert_eq!(l.settings.mfa_verification_ttl_seconds, 900);
    assert_eq!(l.settings.ws_max_frame_bytes, 1_048_576);
    assert_eq!(l.settings.registry_backend, "local", "SQLite forces local");
    assert!(matches!(
        l.database,
        DatabaseTarget::Sqlite {
            is_default: true,
            ..
        }
    ));
    assert_eq!(l.sources["Z4J_BIND_PORT"], Source::Default);
}

#[test]
fn precedence_secret_env_config_env_environment_cli() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("secret.env"),
        "Z4J_METRICS_AUTH_TOKEN=from-secret\n",
        0o600,
    );
    write(
        &dir.path().join("config.env"),
        "Z4J_BIND_PORT=7001\nZ4J_LOG_LEVEL=debug\nZ4J_ENVIRONMENT=staging\n",
        0o644,
    );
    let mut i = input(
        dir.path(),
        &[("Z4J_BIND_PORT", "7002"), ("Z4J_ENVIRONMENT", "env")],
    );
    i.cli.push(("Z4J_BIND_PORT", "7003".into()));
    let l = load(&i).unwrap();
    assert_eq!(l.settings.bind_port, 7003);
    assert_eq!(l.sources["Z4J_BIND_PORT"], Source::Cli);
    assert_eq!(l.settings.environment, "env");
    assert_eq!(l.settings.log_level, "DEBUG");
    assert_eq!(l.sources["Z4J_LOG_LEVEL"], Source::ConfigEnv);
    assert_eq!(
        l.settings.metrics_auth_token.as_deref(),
        Some("from-secret")
    );
    assert_eq!(l.sources["Z4J_METRICS_AUTH_TOKEN"], Source::SecretEnv);
}

#[test]
fn bad_values_name_the_variable_and_range_and_hide_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(&input(
        dir.path(),
        &[("Z4J_BIND_PORT", "70000"), ("Z4J_SECRET", "shortsecret")],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Z4J_BIND_PORT: 70000 is out of range; accepted: 1..65535"),
        "{e}"
    );
    assert!(e.contains("Z4J_SECRET"), "{e}");
    assert!(!e.contains("shortsecret"), "secret echoed: {e}");
}

#[test]
fn secret_files_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("secret.env"),
        "Z4J_SECRET=0123456789abcdef0123456789abcdef\n",
        0o644,
    );
    let e = load(&input(dir.path(), &[])).unwrap_err().to_string();
    assert!(e.contains("chmod 600"), "{e}");
}

#[test]
fn unknown_variables_warn_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let l = load(&input(
        dir.path(),
        &[("Z4J_BIND_PROT", "1"), ("Z4J_TOKEN", "agent-side")],
    ))
    .unwrap();
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("Z4J_BIND_PROT"));
    assert!(l.warnings[0].contains("did you mean Z4J_BIND_PORT?"));
}

#[test]
fn render_masks_secrets_and_names_sources() {
    let dir = tempfile::tempdir().unwrap();
    let l = load(&input(
        dir.path(),
        &[("Z4J_SECRET", "0123456789abcdef0123456789abcdef-x")],
    ))
    .unwrap();
    let shown = l.render(false);
    assert!(shown.contains("Z4J_SECRET=***    # environment"));
    assert!(!shown.contains("0123456789abcdef0123456789abcdef-x"));
    assert!(shown.contains("Z4J_BIND_PORT=7700    # default"));
    assert!(l
        .render(true)
        .contains("0123456789abcdef0123456789abcdef-x"));
    // Every catalogued variable is listed.
    assert_eq!(
        shown.lines().filter(|l| l.starts_with("Z4J_")).count(),
        CATALOG.len()
    );
}

#[test]
fn every_catalogued_default_parses() {
    let dir = tempfile::tempdir().unwrap();
    let l = load(&input(dir.path(), &[])).unwrap();
    let values = l.raw_values();
    for spec in CATALOG {
        assert!(values.contains_key(spec.env), "{}", spec.env);
        assert!(!spec.doc.is_empty());
    }
}

#[test]
fn debug_never_prints_a_secret() {
    let secret = "s3cret-value-that-must-not-leak-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let session = format!("{secret}-session");
    let loaded = load(&input(
        dir.path(),
        &[
            ("Z4J_SECRET", secret),
            ("Z4J_SESSION_SECRET", &session),
            ("Z4J_METRICS_AUTH_TOKEN", "token-that-must-not-leak"),
        ],
    ))
    .unwrap();
    let shown = format!("{:?}", loaded.settings);
    assert!(!shown.contains("must-not-leak"), "{shown}");
    assert!(shown.contains("secret: <redacted>"), "{shown}");
    assert!(shown.contains("bootstrap_admin_password: None"), "{shown}");
    assert!(
        shown.contains("bind_port: 7700"),
        "non-secrets are shown: {shown}"
    );
}

#[test]
fn embedded_scheduler_argv_python_and_pki_dir_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let on = |extra: &[(&str, &str)]| {
        let mut env = vec![("Z4J_EMBEDDED_SCHEDULER", "true")];
        env.extend_from_slice(extra);
        load(&input(dir.path(), &env))
    };
    let l = on(&[]).unwrap();
    assert_eq!(
        l.settings.embedded_scheduler_pki_dir.as_deref(),
        Some(dir.path().join("embedded-pki").to_str().unwrap()),
        "default: $Z4J_HOME/embedded-pki"
    );
    assert_eq!(l.settings.embedded_scheduler_python, "python3");
    for (var, value, needle) in [
        (
            "Z4J_EMBEDDED_SCHEDULER_ARGV",
            r#"["serve","--log-level=DEBUG"]"#,
            "--log-level=DEBUG",
        ),
        ("Z4J_EMBEDDED_SCHEDULER_ARGV", "[]", "must be [\"serve\"]"),
        ("Z4J_EMBEDDED_SCHEDULER_ARGV", "serve", "JSON"),
        ("Z4J_EMBEDDED_SCHEDULER_PKI_DIR", "/etc/z4j", "/etc"),
        ("Z4J_EMBEDDED_SCHEDULER_PKI_DIR", "/var/../usr/pki", "/usr"),
        ("Z4J_EMBEDDED_SCHEDULER_PKI_DIR", "/", "root"),
        ("Z4J_EMBEDDED_SCHEDULER_PYTHON", " ", "interpreter"),
    ] {
        let e = on(&[(var, value)]).unwrap_err().to_string();
        assert!(e.contains(var) && e.contains(needle), "{var}={value}: {e}");
    }
    // Off: the embedded settings are not judged.
    let off = load(&input(
        dir.path(),
        &[("Z4J_EMBEDDED_SCHEDULER_ARGV", r#"["serve","--x"]"#)],
    ));
    assert!(off.is_ok());
}

#[test]
fn the_child_inherits_only_the_listed_names() {
    let env: Vec<(String, String)> = [
        ("PATH", "/bin"),
        ("HOME", "/h"),
        ("LC_ALL", "C"),
        ("Z4J_SCHEDULER_LOG_LEVEL", "DEBUG"),
        ("Z4J_SECRET", "s"),
        ("Z4J_DATABASE_URL", "postgres://u:p@h/db"),
        ("GITHUB_TOKEN", "t"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let names: Vec<String> = ChildEnv::inherited(&env)
        .0
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(names, ["PATH", "HOME", "LC_ALL", "Z4J_SCHEDULER_LOG_LEVEL"]);
}
