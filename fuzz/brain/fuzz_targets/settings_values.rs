//! Settings from the fuzzer: any values for any of the documented variables
//! are either accepted or refused with errors that name a variable and
//! never echo a secret's value; an accepted configuration renders (as
//! `z4j config` shows it) without its secrets.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use z4j_brain::settings::{self, LoadError, LoadInput, CATALOG};

#[derive(Arbitrary, Debug)]
struct Input {
    values: Vec<(u16, String)>,
}

fuzz_target!(|input: Input| {
    if CATALOG.is_empty() {
        return;
    }
    let home = std::env::temp_dir().join("z4j-fuzz-settings-no-such-home");
    let mut env = vec![("Z4J_HOME".to_owned(), home.display().to_string())];
    for (i, value) in input.values.iter().take(16) {
        let spec = &CATALOG[usize::from(*i) % CATALOG.len()];
        env.push((spec.env.to_owned(), value.clone()));
    }
    // The last of a repeated name wins, as in a process environment.
    let value_of = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
    let secrets: Vec<&String> = CATALOG
        .iter()
        .filter(|s| s.secret)
        .filter_map(|s| value_of(s.env))
        .filter(|v| v.trim().len() >= 12)
        // A value also given to a variable that is shown is not a secret.
        .filter(|v| {
            !env.iter().any(|(k, other)| {
                !CATALOG.iter().any(|s| s.secret && s.env == k) && other.contains(v.trim())
            })
        })
        .collect();
    let loaded = settings::load(&LoadInput {
        env: env.clone(),
        cwd: None,
        cli: Vec::new(),
    });
    match loaded {
        Ok(l) => {
            let shown = l.render(false);
            for s in &secrets {
                assert!(!shown.contains(s.trim()), "a secret is shown: {shown}");
            }
        }
        Err(LoadError::Invalid(errors)) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(
                    e.variable.starts_with("Z4J_"),
                    "an error names no variable: {e}"
                );
                for s in &secrets {
                    assert!(!e.problem.contains(s.trim()), "{e} echoes a secret");
                }
            }
        }
        Err(LoadError::File(_)) => {}
    }
});
