//! The conformance suite against this crate's own `z4j` binary, on SQLite
//! and PostgreSQL. Arguments after `--` go to the suite, e.g.
//! `cargo test -p z4j-brain --test conformance -- --clause Z4J_BIND_PORT`.

use clap::Parser;

fn main() {
    let mut argv = vec![
        "z4j-conformance".to_owned(),
        "--bin".to_owned(),
        env!("CARGO_BIN_EXE_z4j").to_owned(),
    ];
    // cargo passes harness flags (e.g. --nocapture); keep only ours.
    let mut passthrough = std::env::args().skip(1).peekable();
    while let Some(a) = passthrough.next() {
        let ours = [
            "--database",
            "--clause",
            "--junit",
            "--json",
            "--timing-tolerance",
            "--concurrency",
            "--target",
            "--case",
            "--expectations",
        ];
        if ours.contains(&a.as_str()) {
            argv.push(a);
            if let Some(v) = passthrough.next() {
                argv.push(v);
            }
        } else if a == "--list" {
            argv.push(a);
        }
    }
    if let Ok(v) = std::env::var("Z4J_CONFORMANCE_ARGS") {
        argv.extend(v.split_whitespace().map(str::to_owned));
    }
    let args = z4j_conformance::Args::parse_from(argv);
    std::process::exit(z4j_conformance::main_with(args));
}
